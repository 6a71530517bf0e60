"""Greedy maximisation of a quality-weighted facility location, vectorised across prompts.

    F(S) = sum_j b_j * max_{c in S} w_c * sim[j, c],     F(empty) = 0

The picks are exactly those of the paper's naive loop (public code, `_grades_select`): at
each step it computes, in float32, T_c = sum(b * maximum(cov, w_c * sim[:, c])) for every
unselected c and keeps the first c with the largest T_c (strict `>`, so the lowest index
wins ties). We compute the same float32 values with the same numpy reductions (pairwise
summation over a contiguous last axis, bitwise equal to the 1-D `np.sum`), so ties and
near-ties resolve identically given the same `sim`. Our cosine kernel is symmetrised,
((cos + cos^T)/2 + 1)/2, where the paper computes (e @ e^T + 1)/2; the two differ by up to one
float32 ulp, which flips an exact tie in well under 1 % of pools (a review measured 3 of 400
random DKoN pools).

Speed comes from two things. (1) Prompts of equal pool size are processed together as one
(P, N, N) tensor. (2) Lazy greedy: by submodularity the increment T_c - F(S) can only
shrink as S grows, so an old increment is an upper bound. Each step evaluates only the
`probe` candidates with the largest bounds; if no other candidate's bound (plus a slack
covering float32 rounding) reaches the best evaluated total, the pick is certain; the rare
prompts where it is not are evaluated in full. The slack only adds work, never changes a
pick.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mosaic.errors import MosaicError
from mosaic.parallel import map_chunks
from mosaic.similarity import cosine_kernel_from_embeddings

_U32 = 2.0**-24  # unit roundoff of float32


@dataclass(frozen=True)
class GreedyResult:
    """Greedy picks for P prompts: `order` (P, k) int64 in pick order; `totals` (P, k) float32 = F(S_t)."""

    order: np.ndarray
    totals: np.ndarray

    @property
    def gains(self) -> np.ndarray:
        """Marginal gains F(S_t) - F(S_{t-1}), float64, shape (P, k)."""
        t = self.totals.astype(np.float64)
        return np.diff(t, axis=-1, prepend=0.0)

    def selected(self) -> np.ndarray:
        """Picked indices sorted ascending per prompt, shape (P, k) (or (k,) for one prompt)."""
        return np.sort(self.order, axis=-1)


def _totals(b: np.ndarray, cov: np.ndarray, cand: np.ndarray, *, inplace: bool = False) -> np.ndarray:
    """float32 T[p, m] = sum_j b[p, j] * max(cov[p, j], cand[p, m, j]) (the paper's per-candidate sum).

    Same elementwise float32 operations and the same contiguous last-axis reduction as the
    paper's `np.sum(b * np.maximum(cov, w_c * sim[:, c]))`, hence bitwise the same values.
    """
    tmp = np.maximum(cand, cov[:, None, :], out=cand if inplace else None)
    tmp *= b[:, None, :]
    return tmp.sum(axis=-1)


def _lazy_step(ws, b, cov, f_cur, bound, slack, probe):
    """One lazy-greedy step for every row: (pick, its float32 total); updates `bound` in place.

    Evaluate the `probe` candidates with the largest bounds. A row is done when its best
    evaluated total beats every other bound (+ slack) strictly; the other rows are evaluated
    in full. Among equal totals the lowest index wins, as in the paper's loop."""
    p_count, n = bound.shape  # n > probe here
    rows = np.arange(p_count)
    part = np.argpartition(-bound, probe, axis=1)
    cand = np.sort(part[:, :probe], axis=1)  # ascending index: argmax's first hit is the lowest index
    t = _totals(b, cov, ws[rows[:, None], cand], inplace=True)
    bound[rows[:, None], cand] = t - f_cur[:, None]
    best = np.argmax(t, axis=1)
    pick, t_pick = cand[rows, best], t[rows, best]
    rest = bound[rows, part[:, probe]]  # the largest bound left out (argpartition puts it at `probe`)
    full = np.flatnonzero(~(f_cur + rest + slack < t_pick))
    if full.size:
        t = _totals(b[full], cov[full], ws[full], inplace=True)  # ws[full] is a copy
        chosen = np.isneginf(bound[full])  # already selected
        t[chosen] = -np.inf
        best = np.argmax(t, axis=1)
        pick[full], t_pick[full] = best, t[np.arange(full.size), best]
        bound[full] = t - f_cur[full, None]  # -inf where selected
    return pick, t_pick


def _run_block(ws: np.ndarray, b: np.ndarray, k: int, probe: int) -> tuple[np.ndarray, np.ndarray]:
    p_count, n, _ = ws.shape
    rows = np.arange(p_count)
    cov = np.zeros((p_count, n), dtype=np.float32)
    f_cur = np.zeros(p_count, dtype=np.float64)
    order = np.empty((p_count, k), dtype=np.int64)
    totals = np.empty((p_count, k), dtype=np.float32)
    # A float32 pairwise sum of non-negative terms is off by at most (log2 n + 2) u * (its value);
    # every total is F(S + c) <= F(S) + F({c}) <= f_cur + t_single, and the test involves four
    # such sums: 8x covers them with a factor 2 to spare.
    slack_scale = 8.0 * (np.ceil(np.log2(max(n, 2))) + 2.0) * _U32
    bound = t_single = None
    for step in range(k):
        if step == 0:  # every candidate once, in full; bounds on T_c - F(S) (float64, -inf once selected)
            t = _totals(b, cov, ws)
            pick = np.argmax(t, axis=1)
            t_pick = t[rows, pick]
            bound = t.astype(np.float64)
            t_single = t_pick.astype(np.float64)
        elif n - step > probe:
            pick, t_pick = _lazy_step(ws, b, cov, f_cur, bound, slack_scale * (f_cur + t_single), probe)
        else:  # few left: evaluate them all
            t = _totals(b, cov, ws)
            t[np.isneginf(bound)] = -np.inf
            pick = np.argmax(t, axis=1)
            t_pick = t[rows, pick]
        order[:, step] = pick
        totals[:, step] = t_pick
        np.maximum(cov, ws[rows, pick], out=cov)
        f_cur = t_pick.astype(np.float64)
        bound[rows, pick] = -np.inf
    return order, totals


def greedy_facility_location(sim: np.ndarray, w: np.ndarray, b: np.ndarray, k: int, *,
                             probe: int = 4, block: int = 128, symmetric: bool = False,
                             threads: int | None = 1) -> GreedyResult:
    """Greedy max of F(S) = sum_j b_j max_{c in S} w_c sim[j, c] with |S| = k.

    sim: (N, N) or (P, N, N) non-negative float32 (sim[j, c]: how well c covers j);
    w, b: (N,) or (P, N) float32 candidate and coverage weights. Returns picks in greedy order.
    `symmetric=True` promises sim == sim^T exactly (true of this package's kernels) and skips
    a transposed copy; a wrong promise changes picks for asymmetric kernels.
    Prompts are processed in blocks of `block`; `threads` > 1 (None: all cores) runs blocks
    concurrently (`mosaic.parallel.map_chunks`) with bitwise the same picks as `threads=1`.
    """
    sim = np.asarray(sim, dtype=np.float32)
    single = sim.ndim == 2
    if single:
        sim, w, b = sim[None], np.asarray(w)[None], np.asarray(b)[None]
    w = np.asarray(w, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if sim.ndim != 3 or sim.shape[1] != sim.shape[2]:
        raise MosaicError(f"similarity must be (N, N) or (P, N, N), got shape {sim.shape}")
    p_count, n, _ = sim.shape
    if w.shape != (p_count, n) or b.shape != (p_count, n):
        raise MosaicError(f"weights must have shape {(p_count, n)}, got w {w.shape}, b {b.shape}")
    if not 0 <= k <= n:
        raise MosaicError(f"cannot pick k={k} of a pool of {n} candidates")

    def weighted(lo: int, hi: int) -> np.ndarray:
        # ws[p, c, j] = w[p, c] * sim[p, j, c], contiguous in j (the paper's `w_c * sim[:, c]`)
        cols = sim[lo:hi] if symmetric else sim[lo:hi].transpose(0, 2, 1)
        return np.multiply(w[lo:hi, :, None], cols, order="C")

    result = _blocks(weighted, b, k, probe, block, threads)
    return GreedyResult(order=result.order[0], totals=result.totals[0]) if single else result


def greedy_from_embeddings(embeddings: np.ndarray, w: np.ndarray, b: np.ndarray, k: int, *, probe: int = 4,
                           block: int = 128, threads: int | None = 1) -> GreedyResult:
    """`greedy_facility_location` on the (cos + 1) / 2 kernel of (P, N, d) embeddings, fused per block.

    Bitwise the result of `greedy_facility_location(cosine_kernel_from_embeddings(embeddings),
    w, b, k, symmetric=True)`, but each block of `block` prompts builds its kernel and runs its
    greedy in one task: the (P, N, N) similarity never exists whole, and with `threads` > 1 one
    thread's BLAS product overlaps another's greedy steps.
    """
    e = np.asarray(embeddings, dtype=np.float32)
    if e.ndim != 3:
        raise MosaicError(f"embeddings must be (P, N, d), got shape {e.shape}")
    p_count, n, _ = e.shape
    w = np.asarray(w, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    if w.shape != (p_count, n) or b.shape != (p_count, n):
        raise MosaicError(f"weights must have shape {(p_count, n)}, got w {w.shape}, b {b.shape}")
    if not 0 <= k <= n:
        raise MosaicError(f"cannot pick k={k} of a pool of {n} candidates")

    def weighted(lo: int, hi: int) -> np.ndarray:
        ws = cosine_kernel_from_embeddings(e[lo:hi])  # exactly symmetric: sim[p, j, c] == sim[p, c, j]
        ws *= w[lo:hi, :, None]
        return ws

    return _blocks(weighted, b, k, probe, block, threads)


def _blocks(weighted, b: np.ndarray, k: int, probe: int, block: int, threads: int | None) -> GreedyResult:
    """Run `_run_block` on every block [lo, hi) of prompts, `weighted(lo, hi)` giving its ws tensor."""
    p_count = b.shape[0]
    order = np.empty((p_count, k), dtype=np.int64)
    totals = np.empty((p_count, k), dtype=np.float32)
    if k:
        def run(lo: int, hi: int) -> None:
            order[lo:hi], totals[lo:hi] = _run_block(weighted(lo, hi), b[lo:hi], k, max(1, probe))

        map_chunks(run, p_count, block, threads)
    return GreedyResult(order=order, totals=totals)
