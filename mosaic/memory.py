"""Forward passes that take fewer rows when the accelerator runs out of memory.

A default that suits a small model (256 sequences per generation batch on CUDA) can exceed a
large model's memory: the KV cache grows as rows x tokens x layers x width. Rather than losing
the run at its first big batch, a pass that raises torch's out-of-memory error (CUDA's, or
another accelerator's: `torch.OutOfMemoryError`) is run again with ceil(n / 2) of its n rows,
down to one; the smaller size then holds for every later pass of the same `Passes` (one per
stage of a run: the batches that follow are as large), is announced on stderr and is recorded by
the caller. At one row, the error names the option that governs the pass. A CPU allocation
failure is a different error (RuntimeError) and stays fatal.

Callers use it where the split does not change a result (scoring: sums over tokens are
batch-size invariant) or where the split is seeded deterministically (generation: a planned
batch is re-seeded and decoded again, whole, in the smaller passes).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from mosaic.errors import MosaicError, first_line


class Passes:
    """`rows` per forward pass, halved (rounding up) on each out-of-memory error.

    what: the rows' name in messages ("sequences", "references"); option: the flag that sets the
    starting size (named in the messages so the user can start below the failing size); advice:
    what else shrinks a pass, said when one row does not fit; release: called after a failed pass,
    before the retry, to let go of memory the caller holds for the failed size (a cache shaped for it,
    a partial step's gradients); start_note: appended to the "start there with OPTION N" hint."""

    def __init__(self, rows: int, what: str, option: str, advice: str = "",
                 release: Callable[[], None] | None = None, start_note: str = "") -> None:
        if rows < 1:
            raise ValueError(f"{option} must be >= 1, got {rows}")
        self.rows, self.what, self.option, self.release, self.start_note = rows, what, option, release, start_note
        self.advice = f" ({advice})" if advice else ""
        self.halvings: list[int] = []  # the sizes that ran out of memory, in order

    def run(self, fn: Callable[[int], Any], available: int | None = None, what: str | None = None) -> Any:
        """fn(n), n = min(rows, available): called again with ceil(n / 2) rows while it runs out of memory.
        `what` names the rows of this pass when they are not `self.what` (a prompt pass among reference passes)."""
        import torch

        while True:
            n = self.rows if available is None else max(1, min(self.rows, available))
            try:
                return fn(n)
            except torch.OutOfMemoryError as exc:
                if n == 1:
                    raise MosaicError(f"out of GPU memory with 1 of the {what or self.what} per pass "
                                      f"({first_line(exc)}): one does not fit beside the model on this device"
                                      f"{self.advice}") from exc
                reason = first_line(exc)
            # outside the handler: the failed pass's frames (and tensors) are released with the exception
            self._halve(n, reason, what or self.what)

    def chunks(self, items: Sequence, fn: Callable[[Sequence], Any],
               what: str | None = None) -> Iterator[tuple[Sequence, Any]]:
        """(part, fn(part)) over consecutive parts of `items`, `rows` at a time (fewer after a halving)."""
        lo = 0
        while lo < len(items):
            part, out = self.run(lambda n, lo=lo: (items[lo:lo + n], fn(items[lo:lo + n])), len(items) - lo, what)
            yield part, out
            lo += len(part)

    def record(self) -> dict[str, Any]:
        """{rows_per_pass, out_of_memory_at}: what ran, for the results notes ({} when nothing was halved)."""
        return {"rows_per_pass": self.rows, "out_of_memory_at": list(self.halvings)} if self.halvings else {}

    def _halve(self, failed: int, reason: str, what: str) -> None:
        import torch

        self.halvings.append(failed)
        self.rows = min(self.rows, max(1, (failed + 1) // 2))  # never up: an inner pass may have halved already
        if self.release is not None:
            self.release()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        print(f"mosaic: out of GPU memory with {failed} {what} per pass ({reason}); going on with at most "
              f"{self.rows} (start there with {self.option} {self.rows}{self.start_note})", file=sys.stderr)

