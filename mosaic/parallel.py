"""Run independent row chunks of a batched numpy computation on a few threads, in order.

The batched kernels (`cosine_kernel_from_embeddings`, `greedy_facility_location`) spend their
time in numpy calls that release the GIL, and their rows (prompts) are independent, so a
thread pool over fixed row chunks scales with cores. Each chunk is computed by exactly the
same code whatever the thread count, so results are bitwise those of `threads=1`.

BLAS oversubscription: while a pool runs, BLAS's own threads are capped at 1 (with
threadpoolctl, when installed; it is not a declared dependency) so `threads` workers do not
each start a BLAS pool on the same cores. The cap is process-wide for the pool's duration.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from mosaic.errors import MosaicError

T = TypeVar("T")


def resolve_threads(threads: int | None) -> int:
    """`None` -> os.cpu_count(); otherwise a positive int."""
    if threads is None:
        return max(1, os.cpu_count() or 1)
    if int(threads) < 1:
        raise MosaicError(f"threads must be >= 1 or None (all cores), got {threads}")
    return int(threads)


@functools.lru_cache(maxsize=1)
def _controller():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - optional
        return None
    return ThreadpoolController()  # scans the loaded libraries once (numpy's BLAS is loaded by now)


def _blas_single_threaded():
    ctl = _controller()
    return contextlib.nullcontext() if ctl is None else ctl.limit(limits=1, user_api="blas")


def map_chunks(fn: Callable[[int, int], T], rows: int, chunk: int, threads: int | None = 1) -> list[T]:
    """[fn(lo, hi) for each chunk [lo, hi) of range(rows)], run on `threads` threads, in row order."""
    bounds = [(lo, min(lo + chunk, rows)) for lo in range(0, rows, max(1, chunk))]
    workers = min(resolve_threads(threads), len(bounds))
    if workers <= 1:
        return [fn(lo, hi) for lo, hi in bounds]
    with _blas_single_threaded(), ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda b: fn(*b), bounds))
