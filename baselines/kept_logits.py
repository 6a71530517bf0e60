"""Logits at the scored positions only, whatever `logits_to_keep` forms the installed transformers takes.

The model runs with `logits_to_keep=1` (its head on one column); a forward hook on its decoder
catches the last hidden state (batch, length, hidden), the scored positions are gathered with the
flat row-major index `Batch.flat` built on the host (no host sync), and the output head is applied
to those rows alone: (N, vocabulary), in the order of `Batch.targets`. The first call checks that
decoder + head reproduce the model's own logits at the last column; a model that changes its
logits after the head (soft-capping, scaling) fails the check and the caller falls back to the
model's own `logits_to_keep` (baselines.packing.logits_keep_mode) for the rest of the run.
"""

from __future__ import annotations

from typing import Any

from mosaic.models import base_model, forward_keeping


class KeptLogits:
    def __init__(self, model: Any) -> None:
        base = base_model(model)
        self.decoder, self.head = base.get_decoder(), base.get_output_embeddings()
        self.ok: bool | None = None  # None until the first call has checked the head

    @property
    def usable(self) -> bool:
        return self.ok is not False and self.decoder is not None and self.head is not None

    def __call__(self, model: Any, batch: Any) -> Any:
        """(N, V) logits at `batch`'s scored positions through `model` (the same model or its wrapper:
        DDP, accelerate), or None when this model's head cannot be reproduced (then `usable` is False)."""
        import torch

        caught: dict[str, Any] = {}
        handle = self.decoder.register_forward_hook(lambda _m, _a, out: caught.__setitem__("hidden", out[0]))
        inputs = {"input_ids": batch.input_ids, "position_ids": batch.position_ids, "use_cache": False}
        try:
            out = forward_keeping(model, 1, **inputs)
        finally:
            handle.remove()
        hidden = caught.get("hidden")
        if self.ok is None:
            with torch.no_grad():
                mine = None if hidden is None else self.head(hidden[:, -1]).float()
                theirs = out.logits[:, -1].float()
                self.ok = mine is not None and mine.shape == theirs.shape and bool(
                    torch.allclose(mine, theirs, rtol=1e-3, atol=1e-3 * float(theirs.abs().max()) + 1e-5))
        if not self.ok:
            return None
        return self.head(hidden.reshape(-1, hidden.shape[-1]).index_select(0, batch.flat))
