"""Per-token negative log-likelihood of references given their prompt, with the prompt shared.

Each prompt is encoded ONCE; its KV cache rows are repeated for its references, so a prompt with
R references costs one prompt pass instead of R (`score_group`, `score_all`; the prompts' common
prefix, e.g. a chat template's system turn, is encoded once per run). The NLL of response token
t_i is -log p(t_i | prompt, t_<i) in nats; the first response token is scored from the prompt's
last position. Every sum over tokens is taken in float64 and padding is masked, so the result
does not depend on the batch size or grouping beyond float32 rounding (references are batched
longest first, to pad little, and returned in input order). Each token's log-normaliser is
max + log(sum(exp(logit - max))), the exponentials summed in float32 and the rest in float64:
within about 1e-6 nats of a float64 log-softmax, at a quarter of its cost over a large
vocabulary. `score_pairs_batched` is the GPU path (whole sequences, no cache sharing).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mosaic.memory import Passes
from mosaic.models import cache_keyword, forward_keeping, output_cache


@dataclass
class ScoredResponse:
    """NLLs (nats) of one reference's scored tokens."""

    nll: np.ndarray  # float64, one per scored token

    @property
    def n_tokens(self) -> int:
        return int(self.nll.size)

    @property
    def total(self) -> float:
        return float(self.nll.sum())

    @property
    def mean(self) -> float:
        return self.total / self.n_tokens


@dataclass
class SharedPrefix:
    """The KV cache of token ids that every prompt of a run starts with (e.g. a chat template's
    system turn), encoded once and continued by each prompt's own tokens."""

    ids: list[int]
    cache: object


def shared_prefix(model, prompts: Sequence[Sequence[int]]) -> SharedPrefix | None:
    """Encode the longest common prefix of `prompts` once; None when it is under 2 tokens. It stops
    one token short of the shortest prompt, so every prompt still has a token to run."""
    import os

    import torch

    if not prompts:
        return None
    ids = list(os.path.commonprefix([list(p) for p in prompts]))[:min(len(p) for p in prompts) - 1]
    if len(ids) < 2:
        return None
    with torch.inference_mode():
        out = forward_keeping(model, 1, input_ids=torch.tensor([ids], device=next(model.parameters()).device),
                              use_cache=True)
    return SharedPrefix(ids, output_cache(out))


def score_all(model, encoded: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]], batch_size: int = 8,
              on_prompt=None, group: int | None = None, passes: Passes | None = None) -> list[list[ScoredResponse]]:
    """Token NLLs of every (prompt ids, references) in order (see `score_group`), `group` prompts at a
    time (default `batch_size`: the prompt pass then has as many rows as a reference pass), the
    prompts' common prefix encoded once (`shared_prefix`); `on_prompt()` after each prompt. Prompt
    and reference passes share one `passes`: rows halved on running out of GPU memory (a group of
    the default size follows it, and a failed prompt pass reruns its group with half the prompts; an
    explicit `group` is kept as given)."""
    prefix = shared_prefix(model, [p for p, _ in encoded])
    passes = passes or Passes(batch_size, "references", "--batch-size")

    def run(part):
        return score_group(model, part, batch_size, prefix=prefix, passes=passes)

    parts = (passes.chunks(encoded, run, "prompts") if group is None else
             ((encoded[lo:lo + group], run(encoded[lo:lo + group])) for lo in range(0, len(encoded), group)))
    out: list[list[ScoredResponse]] = []
    for part, scored in parts:
        out += scored
        if on_prompt is not None:
            for _ in part:
                on_prompt()
    return out


def score_prompt_references(model, prompt_ids: Sequence[int], references: Sequence[Sequence[int]],
                            batch_size: int = 8, prefix: SharedPrefix | None = None) -> list[ScoredResponse]:
    """Token NLLs of each reference (token ids incl. the end-of-turn token) after `prompt_ids`."""
    return score_group(model, [(prompt_ids, references)], batch_size, prefix=prefix)[0]


def score_group(model, group: Sequence[tuple[Sequence[int], Sequence[Sequence[int]]]], batch_size: int = 8,
                prefix: SharedPrefix | None = None, passes: Passes | None = None) -> list[list[ScoredResponse]]:
    """Token NLLs of the references of a few prompts, each prompt encoded once.

    One pass encodes the prompts (right-padded, pads masked), continuing `prefix`'s cache (a copy)
    when every prompt extends it; the first reference token is scored from its prompt's last
    position. The references of all the group's prompts are then sorted longest first and scored
    `batch_size` at a time, each row continuing its own prompt's cache rows (keys at the prompt's
    pad positions are masked; positions continue the prompt's real length), so no prompt token
    is computed twice and references of similar length from different prompts share a pass.

    Where the model splits into a decoder and a linear output head that reproduce its own logits
    (checked once per model, `_split_head`), the head runs at scored positions only, one
    vocabulary block at a time (no logits at pads, no full logit matrix); otherwise the model's
    logits are used. Sums over tokens are float64; the result does not depend on the batch size
    or the grouping beyond float32 rounding (about 1e-6 nats per token), so a reference pass that
    runs out of CUDA memory is simply run again in halves (`passes`, default `batch_size` rows)."""
    import torch

    device = next(model.parameters()).device
    key = cache_keyword(model)
    prompts = [list(p) for p, _ in group]
    refs = [(g, j, list(r)) for g, (_, rs) in enumerate(group) for j, r in enumerate(rs)]  # (prompt, slot, ids)
    if any(not p for p in prompts) or any(not r for _, _, r in refs):
        raise ValueError("every prompt and reference needs at least one token")
    split = _split_head(model, prompts[0])
    n = len(prompts)
    lens = [len(p) for p in prompts]
    width_p = max(lens)
    start = len(prefix.ids) if prefix is not None and all(
        len(p) > len(prefix.ids) and p[:len(prefix.ids)] == prefix.ids for p in prompts) else 0
    results: list[list[ScoredResponse | None]] = [[None] * len(rs) for _, rs in group]
    with torch.inference_mode():
        ids = torch.zeros((n, width_p - start), dtype=torch.long)
        mask = torch.zeros((n, width_p), dtype=torch.long)
        mask[:, :start] = 1
        for g, p in enumerate(prompts):
            ids[g, :len(p) - start] = torch.tensor(p[start:])
            mask[g, :len(p)] = 1
        step = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "use_cache": True,
                "position_ids": torch.arange(start, width_p, device=device).expand(n, -1)}
        if start:
            cache = copy.deepcopy(prefix.cache)
            cache.batch_repeat_interleave(n)
            step[key] = cache
        last_col = torch.tensor([length - 1 - start for length in lens], device=device)
        rows = torch.arange(n, device=device)
        if split is None:  # logits for the columns from the shortest prompt's last position on
            keep = width_p - min(lens) + 1
            out = forward_keeping(model, keep, **step)
            last = out.logits[:, -keep:][rows, last_col - (width_p - start - keep)]
        else:
            out = split.decoder(**step)
            last = split.logits(out.last_hidden_state[rows, last_col])
        first = torch.log_softmax(last.double(), dim=-1)  # (n, V): the first reference token's distribution
        cache = output_cache(out)
        order = sorted(range(len(refs)), key=lambda i: (-len(refs[i][2]), i))  # longest first

        def rest_nll(idx: Sequence[int]) -> np.ndarray:
            """NLLs of the references `idx` after their first token, one pass continuing their prompts' rows."""
            chunk = [(g, r) for g, _, r in (refs[i] for i in idx)]
            width = max(len(r) for _, r in chunk) - 1
            if width == 0:
                return np.zeros(0)
            inputs = torch.zeros((len(chunk), width), dtype=torch.long)
            mask = torch.zeros((len(chunk), width_p + width), dtype=torch.long)
            positions = torch.zeros((len(chunk), width), dtype=torch.long)
            for b, (g, r) in enumerate(chunk):
                inputs[b, :len(r) - 1] = torch.tensor(r[:-1])
                mask[b, :lens[g]] = 1
                mask[b, width_p:width_p + len(r) - 1] = 1
                positions[b] = torch.arange(lens[g], lens[g] + width)
            batch_cache = copy.deepcopy(cache)
            batch_cache.batch_select_indices(torch.tensor([g for g, _ in chunk], device=device))
            step = {"input_ids": inputs.to(device), "attention_mask": mask.to(device),
                    "position_ids": positions.to(device), key: batch_cache, "use_cache": True}
            return _span_nll(model, split, step, width, [(b, 0, len(r) - 1) for b, (_, r) in enumerate(chunk)],
                             [t for _, r in chunk for t in r[1:]])

        for idx, rest in (passes or Passes(batch_size, "references", "--batch-size")).chunks(order, rest_nll):
            firsts = [-first[refs[i][0], refs[i][2][0]].item() for i in idx]
            offset = 0
            for b, i in enumerate(idx):
                g, j, r = refs[i]
                results[g][j] = ScoredResponse(np.concatenate([[firsts[b]], rest[offset:offset + len(r) - 1]]))
                offset += len(r) - 1
    return results


@dataclass
class _SplitHead:
    """A causal LM as decoder (final hidden states) + linear output head (weight V x d, optional bias)."""

    decoder: object
    weight: object
    bias: object = None
    cols: int = 2048  # vocabulary rows of the head per matmul: 2048 x d weights and T x 2048 logits stay in cache

    def logits(self, hidden, lo: int = 0, hi: int | None = None):
        out = hidden @ self.weight[lo:hi].T
        return out if self.bias is None else out + self.bias[lo:hi]

    def nll(self, hidden, targets):
        """-log softmax(head(hidden))[target] per row, float64, one vocabulary block at a time.

        Per block c: m_c = max logit, s_c = sum exp(logit - m_c) (float32, as `_token_nll`); then
        log-normaliser = M + log(sum_c s_c exp(m_c - M)), M = max_c m_c, in float64. The whole
        T x V logit matrix never exists: each block's weights are read from memory once."""
        import torch

        tops, sums = [], []
        picked = torch.zeros(targets.shape[0], dtype=torch.float64, device=hidden.device)
        for lo in range(0, self.weight.shape[0], self.cols):
            block = self.logits(hidden, lo, lo + self.cols).float()
            top = block.amax(dim=1, keepdim=True)
            sums.append((block - top).exp_().sum(dim=1).double())
            tops.append(top.squeeze(1).double())
            inside = (targets >= lo) & (targets < lo + block.shape[1])
            local = (targets - lo).clamp(0, block.shape[1] - 1)  # no host sync: every row gathers, `inside` keeps
            picked += torch.where(inside, block.gather(1, local[:, None]).squeeze(1).double(), 0.0)
        tops_t, sums_t = torch.stack(tops, dim=1), torch.stack(sums, dim=1)
        peak = tops_t.amax(dim=1, keepdim=True)
        return peak.squeeze(1) + (sums_t * (tops_t - peak).exp()).sum(dim=1).log() - picked


_SPLIT_CHECKED: dict = {}  # id(model) -> (weakref to the model, _SplitHead or None)


def _split_head(model, probe_ids: Sequence[int]):
    """The model's decoder + output head, or None where they do not reproduce its logits.

    Checked once per model on `probe_ids`: the head applied to the decoder's last hidden state
    must match the model's own last-position logits (relative 1e-4 in float32, 1e-2 in half
    precision). Models whose logits are more than a linear map of the final hidden state
    (soft-capping, logit scaling) fail it and keep the plain path."""
    import weakref

    import torch

    key = id(model)
    hit = _SPLIT_CHECKED.get(key)
    if hit is not None and hit[0]() is model:
        return hit[1]
    split = None
    try:
        decoder, head = model.get_decoder(), model.get_output_embeddings()
    except (AttributeError, NotImplementedError):
        decoder = head = None
    if isinstance(head, torch.nn.Linear) and decoder is not None:
        candidate = _SplitHead(decoder, head.weight, head.bias)
        device = next(model.parameters()).device
        with torch.inference_mode():
            ids = torch.tensor([list(probe_ids)], device=device)
            want = forward_keeping(model, 1, input_ids=ids).logits[0, -1].float()
            got = candidate.logits(decoder(input_ids=ids).last_hidden_state[0, -1]).float()
        tol = 1e-4 if head.weight.dtype == torch.float32 else 1e-2
        if torch.allclose(got, want, rtol=tol, atol=tol * float(want.abs().max())):
            split = candidate
    for stale in [k for k, (ref, _) in _SPLIT_CHECKED.items() if ref() is None]:
        del _SPLIT_CHECKED[stale]
    _SPLIT_CHECKED[key] = (weakref.ref(model), split)
    return split


def score_pairs_batched(model, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], batch_size: int = 64,
                        on_batch=None, passes: Passes | None = None) -> list[ScoredResponse]:
    """Token NLLs of each (prompt ids, reference ids) pair, many prompts per forward pass.

    The GPU path: a forward is cheap there and a launch is not, so `batch_size` whole sequences
    (prompt + reference, longest first across ALL prompts) share one pass instead of one prompt's
    references. Sequences are left-padded, so every row ends at the last column; positions count
    real tokens only (pads are masked keys), and logits are computed at the scored positions only:
    through the split head (`_split_head`, blockwise over the vocabulary) where the model has one,
    else by asking the model for the last max(reference length) + 1 columns (`logits_to_keep`),
    the span that holds every scored token's prediction. The prompt is recomputed per reference
    (no cache sharing), which costs prompt FLOPs but not launches. Same quantity as
    `score_prompt_references`, input order kept; `on_batch(n_pairs)` is called after each pass.
    A pass that runs out of CUDA memory is run again in halves (`passes`, default one of
    `batch_size` rows), which changes no result."""
    import torch

    device = next(model.parameters()).device
    seqs = [(list(p), list(r)) for p, r in pairs]
    if any(not p or not r for p, r in seqs):
        raise ValueError("every pair needs a non-empty prompt and reference")
    order = sorted(range(len(seqs)), key=lambda i: (-(len(seqs[i][0]) + len(seqs[i][1])), i))
    results: list[ScoredResponse | None] = [None] * len(seqs)
    split = _split_head(model, seqs[0][0]) if seqs else None
    passes = passes or Passes(batch_size, "references", "--batch-size")
    with torch.inference_mode():
        for idx, nll in passes.chunks(order, lambda idx: _pairs_pass(model, split, seqs, idx, device)):
            offset = 0
            for i in idx:
                n = len(seqs[i][1])
                results[i] = ScoredResponse(nll[offset:offset + n])
                offset += n
            if on_batch is not None:
                on_batch(len(idx))
    return results


def _pairs_pass(model, split, seqs: list, idx: Sequence[int], device) -> np.ndarray:
    """One left-padded pass over the sequences `idx` of `score_pairs_batched`: their references' NLLs, in order."""
    import torch

    full = [seqs[i][0] + seqs[i][1] for i in idx]
    width = max(len(f) for f in full)
    keep = max(len(seqs[i][1]) for i in idx) + 1
    ids = torch.zeros((len(idx), width), dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for b, f in enumerate(full):
        ids[b, width - len(f):] = torch.tensor(f)
        mask[b, width - len(f):] = 1
    positions = (mask.cumsum(1) - 1).clamp_(min=0)
    step = dict(input_ids=ids.to(device), attention_mask=mask.to(device), position_ids=positions.to(device))
    spans = [(b, keep - 1 - len(seqs[i][1]), keep - 1) for b, i in enumerate(idx)]  # columns predicting refs
    return _span_nll(model, split, step, keep, spans, [t for i in idx for t in seqs[i][1]])


def _span_nll(model, split, step: dict, keep: int, spans, targets) -> np.ndarray:
    """One forward over `step`; NLL (float64, numpy) of `targets` predicted at the columns
    lo:hi of row b for each (b, lo, hi) in `spans`, counted within the last `keep` columns (the
    forward computes logits there only, or hidden states fed to the split head)."""
    import torch

    if split is None:
        last = forward_keeping(model, keep, **step).logits[:, -keep:]
    else:
        last = split.decoder(**step).last_hidden_state[:, -keep:]
    rows = torch.cat([last[b, lo:hi] for b, lo, hi in spans])
    targets_t = torch.tensor(targets, device=rows.device)
    return (_token_nll(rows, targets_t) if split is None else split.nll(rows, targets_t)).cpu().numpy()


def _token_nll(logits, targets):
    """-log softmax(logits)[target] per row, float64: max + log(sum(exp(logits - max))) - logit[target],
    the exponentials summed in float32 (pairwise), everything after in float64. Half-precision
    logits are widened to float32 first (exactly)."""
    logits = logits.float()
    top = logits.amax(dim=-1, keepdim=True)
    norm = (logits - top).exp_().sum(dim=-1)
    return top.squeeze(-1).double() + norm.double().log() - logits.gather(1, targets[:, None]).squeeze(1).double()


def score_full_sequence(model, prompt_ids: Sequence[int], response_ids: Sequence[int]) -> ScoredResponse:
    """The same quantity computed the plain way (prompt + response in one pass); a reference
    implementation for tests and for models whose cache cannot be repeated."""
    import torch
    import torch.nn.functional as F

    device = next(model.parameters()).device
    ids = torch.tensor([list(prompt_ids) + list(response_ids)], device=device)
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0].double()
    n = len(prompt_ids)
    nll = F.cross_entropy(logits[n - 1:-1], ids[0, n:], reduction="none")
    return ScoredResponse(nll.cpu().numpy())
