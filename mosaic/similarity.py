"""Similarity kernels for the diversity selectors (DKoN, GRADES).

A kernel is any callable `kernel(pool) -> (N, N)` array of non-negative similarities, where
`sim[j, c]` is how well candidate `c` covers response `j` (symmetric for the kernels here).
The default is the paper's embedding kernel, sim = (cos(e_i, e_j) + 1) / 2 on
all-MiniLM-L6-v2 embeddings (float32, values in [0, 1]). `token_jaccard` is a
task-aware alternative for code, where lexical overlap of identifiers tracks approach
better than sentence embeddings. The MiniLM model is loaded lazily, on first use.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from mosaic.errors import MosaicError
from mosaic.parallel import map_chunks, resolve_threads

if TYPE_CHECKING:
    from mosaic.selectors import Pool

Kernel = Callable[["Pool"], np.ndarray]

EMBEDDING_MODEL = "all-MiniLM-L6-v2"


def embed_texts(texts: Sequence[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
    """Unit-norm float32 MiniLM embeddings, shape (len(texts), 384); imports the model lazily."""
    from mosaic.embeddings import embed

    return embed(list(texts), batch_size=batch_size, progress=progress)


def cosine_kernel_from_embeddings(embeddings: np.ndarray, *, threads: int | None = 1, block: int = 128) -> np.ndarray:
    """sim = (cos + 1) / 2 in float32 for (N, d) or stacked (P, N, d) embeddings; exactly symmetric.

    Rows are normalised here (zero rows stay 0). A stacked call gives bitwise the same
    matrices as one call per prompt; `threads` > 1 (None: all cores) computes blocks of
    `block` prompts concurrently (`mosaic.parallel.map_chunks`), bitwise the same again.
    """
    e = np.asarray(embeddings, dtype=np.float32)
    if e.ndim not in (2, 3):
        raise MosaicError(f"embeddings must be (N, d) or (P, N, d), got shape {e.shape}")
    if e.ndim == 2 or resolve_threads(threads) == 1:
        return _cosine_kernel(e)
    out = np.empty((e.shape[0], e.shape[1], e.shape[1]), dtype=np.float32)

    def run(lo: int, hi: int) -> None:
        out[lo:hi] = _cosine_kernel(e[lo:hi])

    map_chunks(run, e.shape[0], block, threads)
    return out


_SUB = 32  # prompts per normalise-and-multiply pass: keeps a pass's embeddings in a core's L2 cache


def _cosine_kernel(e: np.ndarray) -> np.ndarray:
    if e.ndim == 3 and e.shape[0] > _SUB:  # per prompt the same arithmetic, so the same bits
        out = np.empty((e.shape[0], e.shape[1], e.shape[1]), dtype=np.float32)
        for lo in range(0, e.shape[0], _SUB):
            out[lo:lo + _SUB] = _cosine_kernel(e[lo:lo + _SUB])
        return out
    norms = np.sqrt(np.einsum("...i,...i->...", e, e))[..., None]
    e = e / np.where(norms > 0, norms, np.float32(1.0))
    cos = e @ np.swapaxes(e, -1, -2)
    sim = cos + np.swapaxes(cos, -1, -2)  # exact symmetry: BLAS need not give it
    sim *= np.float32(0.25)  # ((cos + cos^T) / 2 + 1) / 2
    sim += np.float32(0.5)
    return sim


def embedding_kernel(pool: Pool) -> np.ndarray:
    """The paper's kernel: (cos + 1) / 2 over the pool's embeddings (computed from texts if absent)."""
    emb = pool.embeddings
    if emb is None:
        if pool.texts is None:
            raise MosaicError("the embedding kernel needs texts or embeddings in the candidate pool")
        emb = embed_texts(pool.texts)
    return cosine_kernel_from_embeddings(emb)


_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\d+|[^\sA-Za-z0-9_]")


def token_jaccard_kernel(pool: Pool) -> np.ndarray:
    """Jaccard overlap |A∩B| / |A∪B| of token sets (identifiers, numbers, operators); 1 on the diagonal.

    Cheap and model-free; suited to code, where identical algorithms share identifiers.
    """
    if pool.texts is None:
        raise MosaicError("the token_jaccard kernel needs the candidate texts")
    sets = [frozenset(_TOKEN.findall(t)) for t in pool.texts]
    n = len(sets)
    sim = np.eye(n, dtype=np.float32)
    for i in range(n):
        for j in range(i + 1, n):
            union = len(sets[i] | sets[j])
            v = len(sets[i] & sets[j]) / union if union else 1.0
            sim[i, j] = sim[j, i] = v
    return sim


def rbf_kernel_1d(values: np.ndarray, bandwidth: float) -> np.ndarray:
    """exp(-(v_i - v_j)^2 / (2 h^2)) for scalar responses (used by the controlled simulation)."""
    v = np.asarray(values, dtype=np.float32)
    d = v[..., :, None] - v[..., None, :]
    d *= d
    d *= np.float32(-0.5 / (bandwidth * bandwidth))
    return np.exp(d, out=d)


KERNELS: dict[str, Kernel] = {"embedding": embedding_kernel, "token_jaccard": token_jaccard_kernel}


def get_kernel(name: str) -> Kernel:
    """Look a kernel up by name; unknown names raise MosaicError with a did-you-mean hint."""
    if name in KERNELS:
        return KERNELS[name]
    close = difflib.get_close_matches(name, list(KERNELS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise MosaicError(f"unknown similarity kernel {name!r}{hint} (known: {', '.join(sorted(KERNELS))})")


def check_similarity(sim: np.ndarray, n: int, where: str = "similarity") -> np.ndarray:
    """Validate a kernel's output: float32 (n, n), finite, non-negative (tolerance 1e-6)."""
    s = np.asarray(sim, dtype=np.float32)
    if s.shape != (n, n):
        raise MosaicError(f"{where}: kernel returned shape {s.shape}, expected ({n}, {n})")
    if not np.all(np.isfinite(s)):
        raise MosaicError(f"{where}: kernel returned non-finite similarities")
    if n and float(s.min()) < -1e-6:
        raise MosaicError(f"{where}: kernel returned a negative similarity ({float(s.min()):.3g}); "
                          "facility location needs sim >= 0")
    return s
