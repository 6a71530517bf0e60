"""GRADES selection speed: mosaic's batched lazy greedy vs the paper's naive loop, same picks.

10,000 prompts, N = 64 candidates each, K = 16, gamma = 0.75, 384-d embeddings (the size of
all-MiniLM-L6-v2) drawn around a few modes per prompt, Gaussian scores. Both sides start from
embeddings + scores and build the similarity with the same kernel function,
(cos + 1) / 2 (`mosaic.similarity.cosine_kernel_from_embeddings`); the peer calls it per
prompt, as the paper's per-prompt function does, then runs the paper's greedy loop (restated
below from its public code, src/selection.py `_grades_select`). Every prompt's picks are
compared.

Ours is the library's fused path, `mosaic.selectors.grades_from_embeddings`: quality weights
from the scores, then per block of 256 prompts the same kernel (normalise + float32 matmul)
immediately followed by the batched lazy greedy on that block, so the (P, N, N) similarity
never exists whole. Blocks run on `--threads` threads (default: all cores) from a thread pool
(`mosaic.parallel`), BLAS capped at one thread per worker meanwhile, so one thread's matrix
product overlaps another's greedy steps; picks are bitwise those of one thread. Because the
two stages are fused, ours has one time: it appears in the "end to end" rows (weights, kernel
and greedy); its kernel and greedy rows show a separate timing of the two stages
(`cosine_kernel_from_embeddings`, then `greedy_facility_location`, same picks checked), for
comparison with the peer's split. With more than one thread ours is also timed on one
thread, so the table shows what threading buys; CPU-time rows count every thread. The peer
stays single-threaded, as the paper's code is.

    .venv/bin/python benchmarks/selection.py [--prompts 10000] [--n 64] [--k 16] [--gamma 0.75] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np

from mosaic.greedy import greedy_facility_location
from mosaic.selectors import grades_from_embeddings, quality_weights_batch
from mosaic.similarity import cosine_kernel_from_embeddings

CHUNK = 1000  # prompts generated (and, on our side, processed) at a time: 1000 x 64 x 384 floats


# ---- the peer: the paper's public code, restated (normalize_scores + _grades_select) ----------
def normalize_scores(scores: list[float]) -> np.ndarray:
    raw = np.asarray(scores, dtype=np.float32)
    if raw.size == 0:
        return raw
    lo = float(raw.min())
    hi = float(raw.max())
    if hi - lo < 1e-8:
        return np.ones_like(raw)
    return (raw - lo) / (hi - lo + 1e-8)


def paper_grades_select(sim: np.ndarray, scores: list[float] | None, k: int, alpha: float) -> list[int]:
    # the paper's function starts from embeddings: sim = (cosine_similarity(e) + 1) / 2; here the
    # caller passes that matrix, built by the kernel both sides share, so its time is shown apart
    n = sim.shape[0]
    if n <= k:
        return list(range(n))
    base_weights = np.ones(n, dtype=np.float32)
    candidate_weights = np.ones(n, dtype=np.float32)
    if scores is not None:
        normalized = normalize_scores(scores)
        candidate_weights = np.power(np.clip(normalized, 1e-4, 1.0), alpha)
        base_weights = np.maximum(candidate_weights, 1e-4)
    selected: list[int] = []
    current_coverage = np.zeros(n, dtype=np.float32)
    for _ in range(k):
        best_index = -1
        best_gain = -1.0
        for candidate in range(n):
            if candidate in selected:
                continue
            candidate_cover = candidate_weights[candidate] * sim[:, candidate]
            gain = float(np.sum(base_weights * np.maximum(current_coverage, candidate_cover)))
            if gain > best_gain:
                best_gain = gain
                best_index = candidate
        if best_index < 0:
            break
        selected.append(best_index)
        current_coverage = np.maximum(current_coverage, candidate_weights[best_index] * sim[:, best_index])
    return sorted(selected)


# ---- inputs -------------------------------------------------------------------------------------
def make_chunk(seed: int, index: int, prompts: int, n: int, dim: int = 384) -> tuple[np.ndarray, np.ndarray]:
    """Embeddings (prompts, n, dim) around 2-8 modes per prompt, and scores (prompts, n)."""
    rng = np.random.default_rng([seed, index])
    modes = rng.integers(2, 9, size=prompts)
    centers = rng.standard_normal((prompts, 8, dim)).astype(np.float32)
    which = (rng.random((prompts, n)) * modes[:, None]).astype(np.int64)
    emb = np.take_along_axis(centers, which[..., None], axis=1) + 0.7 * rng.standard_normal((prompts, n, dim),
                                                                                           dtype=np.float32)
    return emb, rng.standard_normal((prompts, n))


def chunks(total: int):
    for i, lo in enumerate(range(0, total, CHUNK)):
        yield i, min(CHUNK, total - lo)


def run_ours(args, threads: int) -> tuple[dict, np.ndarray]:
    """Timings {total: the fused path; kernel, select: the two stages timed apart} as (wall s, CPU s),
    and the fused path's picks, on `threads` threads; input generation is not timed."""
    picks, acc = [], {"total": [0.0, 0.0], "kernel": [0.0, 0.0], "select": [0.0, 0.0]}

    def add(key, t0, c0):
        acc[key][0] += time.perf_counter() - t0
        acc[key][1] += time.process_time() - c0

    for i, size in chunks(args.prompts):
        emb, scores = make_chunk(args.seed, i, size, args.n)
        t0, c0 = time.perf_counter(), time.process_time()
        picks.append(grades_from_embeddings(emb, scores, args.k, gamma=args.gamma, threads=threads))
        add("total", t0, c0)
        t0, c0 = time.perf_counter(), time.process_time()  # the two stages apart, for the split rows
        sims = cosine_kernel_from_embeddings(emb, threads=threads)
        add("kernel", t0, c0)
        t0, c0 = time.perf_counter(), time.process_time()
        w, b = quality_weights_batch(scores, args.gamma)
        split = greedy_facility_location(sims, w, b, args.k, symmetric=True, threads=threads).selected()
        add("select", t0, c0)
        assert np.array_equal(split, picks[-1]), "the fused and the two-stage paths pick differently"
    return acc, np.concatenate(picks)


def run_peer(args) -> tuple[dict, np.ndarray]:
    """The paper's per-prompt function; its similarity step is timed apart from its greedy loop."""
    picks, acc = [], {"kernel": [0.0, 0.0], "select": [0.0, 0.0]}
    for i, size in chunks(args.prompts):
        emb, scores = make_chunk(args.seed, i, size, args.n)
        for p in range(size):
            t0, c0 = time.perf_counter(), time.process_time()
            sim = cosine_kernel_from_embeddings(emb[p])
            t1, c1 = time.perf_counter(), time.process_time()
            picks.append(paper_grades_select(sim, scores[p].tolist(), args.k, args.gamma))
            t2, c2 = time.perf_counter(), time.process_time()
            acc["kernel"][0] += t1 - t0
            acc["kernel"][1] += c1 - c0
            acc["select"][0] += t2 - t1
            acc["select"][1] += c2 - c1
        print(f"  peer: {len(picks):>6} prompts, {acc['select'][0]:7.1f}s", file=sys.stderr, flush=True)
    acc["total"] = [acc["kernel"][0] + acc["select"][0], acc["kernel"][1] + acc["select"][1]]
    return acc, np.asarray(picks, dtype=np.int64)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=10_000)
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--gamma", type=float, default=0.75)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of ours (median reported)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="threads for ours (default: all cores, here %(default)s); the peer uses one")
    args = ap.parse_args(argv)

    def median_run(threads):
        runs = [run_ours(args, threads) for _ in range(args.repeats)]
        return sorted(runs, key=lambda r: r[0]["total"][0])[len(runs) // 2], runs

    (ours_t, ours), runs = median_run(args.threads)
    cols = {"peer: paper loop": None, f"mosaic, {args.threads} thr": ours_t}
    if args.threads > 1:
        (one_t, one), _ = median_run(1)
        assert np.array_equal(one, ours), "threaded picks differ from single-threaded picks"
        cols = {"peer: paper loop": None, "mosaic, 1 thr": one_t, f"mosaic, {args.threads} thr": ours_t}
    peer_t, peer = run_peer(args)
    cols["peer: paper loop"] = peer_t
    same = int(np.sum(np.all(ours == peer, axis=1)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    try:
        from threadpoolctl import threadpool_info
        blas = ", ".join(f"{i['internal_api']} {i['num_threads']} threads" for i in threadpool_info()
                         if i["user_api"] == "blas")
    except ImportError:
        blas = "threadpoolctl not installed: BLAS threads not capped"

    print(f"GRADES selection: {args.prompts} prompts, N={args.n}, K={args.k}, gamma={args.gamma}, "
          f"384-d embeddings, seed {args.seed}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__} ({blas}), "
          f"load average {load:.1f} at the end")
    cap = " (BLAS capped at 1 per worker)" if args.threads > 1 else ""
    print(f"threads: mosaic {args.threads}{cap}, peer 1")
    print(f"{'':<40}" + "".join(f"{c:>18}" for c in cols) + f"{'speed-up':>10}")

    def row(label, value):
        vals = [value(t) for t in cols.values()]
        print(f"{label:<40}" + "".join(f"{v:>18.3f}" for v in vals) + f"{vals[0] / vals[-1]:>9.1f}x")

    for name, part in (("greedy selection (split)", "select"), ("similarity kernel (split)", "kernel"),
                       ("end to end (ours: fused)", "total")):
        for unit, i in (("wall", 0), ("CPU", 1)):
            row(f"{name}, {unit} [s]", lambda t, p=part, i=i: t[p][i])
    per = 1e3 / args.prompts
    print(f"{'greedy selection per prompt [ms]':<40}"
          + "".join(f"{t['select'][0] * per:>18.4f}" for t in cols.values()))
    print(f"{'identical picks':<40}{f'{same}/{args.prompts}':>18}")
    print(f"(mosaic: the median of {args.repeats} runs by end-to-end wall time, {args.threads} threads: "
          + ", ".join(f"{r[0]['total'][0]:.3f}" for r in runs) + " s; the peer ran once)")
    return 0 if same == args.prompts else 1

if __name__ == "__main__":
    sys.exit(main())
