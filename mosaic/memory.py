"""Forward passes that take fewer rows when the accelerator runs out of memory.

A default that suits a small model (256 sequences per generation batch on CUDA) can exceed a
large model's memory: the KV cache grows as rows x tokens x layers x width. Rather than losing
the run at its first big batch, a pass that raises `torch.cuda.OutOfMemoryError` is run again
with half as many rows, down to one; the smaller size then holds for the rest of the run (the
batches that follow are as large), is announced on stderr and is recorded by the caller. At one
row, the error names the option that governs the pass. Only CUDA's out-of-memory error is
caught: a CPU allocation failure is a different error and stays fatal.

Callers use it where the split does not change a result (scoring: sums over tokens are
batch-size invariant) or where the split is seeded deterministically (generation: a planned
batch is re-seeded and decoded again, whole, in the smaller passes).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mosaic.errors import MosaicError


class Passes:
    """`rows` per forward pass, halved on each CUDA out-of-memory error.

    what: the rows' name in messages ("sequences", "references"); option: the flag that sets the
    starting size (named in the messages so the user can start below the failing size); advice:
    what else shrinks a pass, said when one row does not fit."""

    def __init__(self, rows: int, what: str, option: str, advice: str = "") -> None:
        if rows < 1:
            raise ValueError(f"{option} must be >= 1, got {rows}")
        self.rows, self.what, self.option = rows, what, option
        self.advice = f" ({advice})" if advice else ""
        self.halvings: list[int] = []  # the sizes that ran out of memory, in order

    def run(self, fn: Callable[[int], Any], available: int | None = None) -> Any:
        """fn(n), n = min(rows, available): called again with ceil(n / 2) rows while it runs out of CUDA memory."""
        import torch

        while True:
            n = self.rows if available is None else max(1, min(self.rows, available))
            try:
                return fn(n)
            except torch.cuda.OutOfMemoryError as exc:
                if n == 1:
                    raise MosaicError(f"out of GPU memory with 1 of the {self.what} per pass ({_first_line(exc)}): "
                                      f"one does not fit beside the model on this device{self.advice}") from exc
                reason = _first_line(exc)
            # outside the handler: the failed pass's frames (and tensors) are released with the exception
            self._halve(n, reason)

    def chunks(self, items: Sequence, fn: Callable[[Sequence], Any]) -> Iterator[tuple[Sequence, Any]]:
        """(part, fn(part)) over consecutive parts of `items`, `rows` at a time (fewer after a halving)."""
        lo = 0
        while lo < len(items):
            part, out = self.run(lambda n, lo=lo: (items[lo:lo + n], fn(items[lo:lo + n])), len(items) - lo)
            yield part, out
            lo += len(part)

    def record(self) -> dict[str, Any]:
        """{rows_per_pass, out_of_memory_at}: what ran, for the results notes ({} when nothing was halved)."""
        return {"rows_per_pass": self.rows, "out_of_memory_at": list(self.halvings)} if self.halvings else {}

    def _halve(self, failed: int, reason: str) -> None:
        import torch

        self.halvings.append(failed)
        self.rows = max(1, (failed + 1) // 2)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        print(f"mosaic: out of GPU memory with {failed} {self.what} per pass ({reason}); going on with "
              f"{self.rows} (start there with {self.option} {self.rows})", file=sys.stderr)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
