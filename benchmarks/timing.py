"""Wall-clock timing shared by the benchmark scripts."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def timed_rounds(fns: list[Callable[[], T]], device: str, repeats: int,
                 log: Callable[[int, float], None] | None = None) -> list[tuple[T, float]]:
    """(last result, best wall seconds) per function, timed round-robin: round r runs every function
    once, so a host whose speed drifts during the run slows every contender alike rather than the
    ones that happened to run late. `log(i, seconds)` after each timing."""
    import torch

    best, results = [float("inf")] * len(fns), [None] * len(fns)
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            results[i] = fn()
            if device == "cuda":
                torch.cuda.synchronize()
            secs = time.perf_counter() - t0
            best[i] = min(best[i], secs)
            if log is not None:
                log(i, secs)
    return list(zip(results, best))
