"""Which examples go into which optimizer step, micro-batch and row, and the tensors for one micro-batch.

Packing: sequences are placed into rows of at most `capacity` tokens (as few rows as first-fit
decreasing needs, filled to even lengths) and their position ids restart at 0 at every sequence
start. With no 2D attention mask and no KV cache, transformers reads the restarts as sequence
boundaries (a block-diagonal causal mask for sdpa and eager attention, varlen for flash
attention), so no token attends to another sequence (tests compare per-sequence losses packed
vs alone). Without packing each sequence is its own row, padded on the right; a step's examples
are sorted by length before they are cut into micro-batches, so a micro-batch holds similar
lengths. Padding continues the last sequence's positions and is never scored; causal attention
keeps real tokens from seeing it.

Only positions whose next token is scored (the completion and its end-of-turn token) are kept
for the LM head, so no vocabulary projection is spent on prompt tokens. The trainer gathers them
from the decoder's output itself (`flat`, baselines.kept_logits); for models whose head it cannot
reproduce, `logits_keep_mode()` picks the form this transformers takes as `logits_to_keep`:
- "positions": a (rows, M) integer tensor of each row's kept positions, short rows filled up with
  their last one; the model gathers them without a host sync, and `Batch.kept` drops the
  fill-ups with an index built on the host (the few filled-up rows cost M - kept head columns);
- "mask": the boolean (rows, length) mask; transformers returns the kept positions flattened, but
  boolean indexing makes the host wait for the GPU to learn their count;
- "columns" (older transformers, 1D index only): the columns where any row keeps a position are
  projected and the kept positions picked out afterwards.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


def step_plan(n: int, steps: int, per_step: int, seed: int) -> list[list[int]]:
    """Example indices for each optimizer step: consecutive seeded permutations of range(n) (one per
    epoch), cut into steps of `per_step`. Every process computes the same plan."""
    rng = np.random.default_rng(seed)
    stream: list[int] = []
    while len(stream) < steps * per_step:
        stream += rng.permutation(n).tolist()
    return [stream[s * per_step:(s + 1) * per_step] for s in range(steps)]


def micro_batches(step: Sequence[int], lengths: Sequence[int], rank: int, world: int, batch_size: int,
                  grad_accum: int) -> list[list[int]]:
    """This process's `grad_accum` micro-batches of one step: its contiguous share of the step, sorted
    by length (longest first, ties by position) and cut into chunks of `batch_size`."""
    share = list(step[rank * batch_size * grad_accum:(rank + 1) * batch_size * grad_accum])
    share.sort(key=lambda i: -lengths[i])
    return [share[m * batch_size:(m + 1) * batch_size] for m in range(grad_accum)]


def pack_rows(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Sequence indices per row, each row's total length <= capacity, rows of even length.

    First-fit decreasing finds how many rows are needed; the sequences are then dealt longest
    first to the currently shortest row (LPT), which evens the rows out so that padding them to
    the longest wastes little. Where that would overflow a row, the first-fit rows are kept."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    rows: list[list[int]] = []
    room: list[int] = []
    for i in order:
        if lengths[i] > capacity:
            raise ValueError(f"sequence of {lengths[i]} tokens does not fit a row of {capacity}")
        for r, free in enumerate(room):
            if lengths[i] <= free:
                rows[r].append(i)
                room[r] -= lengths[i]
                break
        else:
            rows.append([i])
            room.append(capacity - lengths[i])
    even: list[list[int]] = [[] for _ in rows]
    load = [0] * len(rows)
    for i in order:
        r = min(range(len(rows)), key=lambda j: (load[j], j))
        even[r].append(i)
        load[r] += lengths[i]
    return even if max(load) <= capacity else rows


@dataclass
class Batch:
    """One micro-batch. `targets[t]` is the token scored at the t-th kept position (row-major order,
    the order of the logits that `logits_to_keep=keep` returns); `seq_index[t]` is its sequence."""

    input_ids: Any  # (R, L) long
    position_ids: Any  # (R, L) long
    keep: Any  # (R, L) bool
    targets: Any  # (N,) long
    seq_index: Any  # (N,) long
    n_seqs: int
    tokens: int  # real (non-pad) tokens
    slots: int  # R * L
    positions: Any = None  # (R, M) long: each row's kept positions, filled up with its last one
    valid: Any = None  # (N,) long: the real entries of `positions`, flattened row-major
    flat: Any = None  # (N,) long: the kept positions in the flattened (R * L) batch, row-major

    def to(self, device: Any) -> Batch:
        """On `device`; to CUDA through pinned memory without blocking (a copy from pageable memory would
        wait for every kernel already queued)."""
        import torch

        cuda = torch.device(device).type == "cuda"

        def move(t: Any) -> Any:
            return t.pin_memory().to(device, non_blocking=True) if cuda else t.to(device)

        return Batch(move(self.input_ids), move(self.position_ids), move(self.keep), move(self.targets),
                     move(self.seq_index), self.n_seqs, self.tokens, self.slots, move(self.positions),
                     move(self.valid), move(self.flat))

    def model_inputs(self, mode: str | None = None) -> dict[str, Any]:
        """Keyword arguments for the model's forward; `mode` (KEEP_MODES) None = what this transformers takes."""
        mode = mode or logits_keep_mode()
        keep = {"positions": self.positions, "mask": self.keep}.get(mode)
        if keep is None:
            keep = self.keep.any(0).nonzero().squeeze(1)
        return {"input_ids": self.input_ids, "position_ids": self.position_ids, "logits_to_keep": keep,
                "use_cache": False}

    def kept(self, logits: Any, mode: str | None = None) -> Any:
        """(N, V) logits at the kept positions, row-major, from the same `mode`'s `model_inputs`."""
        mode = mode or logits_keep_mode()
        if mode == "positions":
            return logits.reshape(-1, logits.shape[-1]).index_select(0, self.valid)
        if mode == "mask":
            return logits
        return logits[self.keep[:, self.keep.any(0)]]


KEEP_MODES = ("positions", "mask", "columns")


@functools.cache
def logits_keep_mode() -> str:
    """Which `logits_to_keep` form this transformers takes (KEEP_MODES, best first), by trying its slicer."""
    import torch
    import transformers.modeling_utils as mu

    slicer = getattr(mu, "slice_logits_to_keep", None)
    if slicer is None:
        return "columns"
    hidden = torch.arange(6.0).view(2, 3, 1)
    try:
        got = slicer(hidden, torch.tensor([[2, 0], [1, 1]]))
    except (IndexError, RuntimeError, TypeError):
        return "mask"
    return "positions" if got.tolist() == [[[2.0], [0.0]], [[4.0], [4.0]]] else "mask"


def collate(seqs: Sequence[tuple[Sequence[int], Sequence[int]]], *, packing: bool, capacity: int,
            pad_id: int) -> Batch:
    """Tensors for sequences given as (prompt ids, completion ids); only completion tokens are scored."""
    import torch

    lengths = [len(p) + len(c) for p, c in seqs]
    if any(len(p) < 1 for p, _ in seqs):
        raise ValueError("every sequence needs at least one prompt token")
    rows = pack_rows(lengths, capacity) if packing else [[i] for i in sorted(range(len(seqs)),
                                                                              key=lambda i: -lengths[i])]
    width = max(sum(lengths[i] for i in row) for row in rows)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)
    pos = np.zeros((len(rows), width), dtype=np.int64)
    keep = np.zeros((len(rows), width), dtype=bool)
    tgt = np.zeros((len(rows), width), dtype=np.int64)
    seg = np.zeros((len(rows), width), dtype=np.int64)
    for r, row in enumerate(rows):
        at = 0
        for i in row:
            prompt, completion = seqs[i]
            n, p = lengths[i], len(prompt)
            ids[r, at:at + n] = list(prompt) + list(completion)
            pos[r, at:at + n] = np.arange(n)
            keep[r, at + p - 1:at + n - 1] = True
            tgt[r, at + p - 1:at + n - 1] = completion
            seg[r, at:at + n] = i
            at += n
        pos[r, at:] = np.arange(at, width) - (at - lengths[row[-1]])  # padding continues the last sequence
    counts = keep.sum(1)
    kept_at = np.zeros((len(rows), max(int(counts.max()), 1)), dtype=np.int64)
    for r in range(len(rows)):
        where = np.flatnonzero(keep[r])
        kept_at[r, :len(where)] = where
        kept_at[r, len(where):] = where[-1] if len(where) else 0
    valid = (np.arange(kept_at.shape[1])[None, :] < counts[:, None]).reshape(-1).nonzero()[0]
    return Batch(torch.from_numpy(ids), torch.from_numpy(pos), torch.from_numpy(keep), torch.from_numpy(tgt[keep]),
                 torch.from_numpy(seg[keep]), len(seqs), sum(lengths), int(ids.size), torch.from_numpy(kept_at),
                 torch.from_numpy(valid.astype(np.int64)), torch.from_numpy(np.flatnonzero(keep).astype(np.int64)))
