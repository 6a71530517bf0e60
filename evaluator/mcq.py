"""Calibration on multiple-choice configs (DESIGN §7, §11).

Option probabilities: the next-token probability of each option letter at the first assistant
token (summing the "A" and " A" tokenisations when they differ), renormalised over the row's
options: p_j. Confidence = max_j p_j; the prediction is the argmax (lowest index on ties).
  accuracy = mean 1[argmax p = answer]
  ECE      = sum_b (|B_b| / N) |acc(B_b) - conf(B_b)|, B equal-width bins on [0, 1]
             (a confidence c falls in bin min(floor(c B), B - 1))
  Brier    = mean over questions of sum_j (p_j - y_j)^2, in [0, 2]
  JS       = Jensen-Shannon divergence (base 2, in [0, 1]) between the population distribution
             q and p; KL(q || p) in bits beside it.
"""

from __future__ import annotations

import string

import numpy as np

from evaluator.config import gen_batch_size
from evaluator.metrics import Scores
from mosaic.models import forward_keeping

PROMPT = ("Please answer the following multiple choice question. Start your answer with the capital letter "
          "corresponding to your choice:\n\n{question}\n\nAnswer choices:\n\n{choices}\n\nYour answer:")


def mcq_prompt(question: str, choices: list[str]) -> str:
    lines = "\n\n".join(f"{string.ascii_uppercase[i]}. {c}" for i, c in enumerate(choices))
    return PROMPT.format(question=question, choices=lines)


def letter_token_ids(tokenizer, n: int) -> list[list[int]]:
    """For each of the first n letters, the single-token ids of "X" and " X" (deduplicated)."""
    out = []
    for letter in string.ascii_uppercase[:n]:
        ids = set()
        for text in (letter, " " + letter):
            tok = tokenizer(text, add_special_tokens=False)["input_ids"]
            if len(tok) == 1:
                ids.add(tok[0])
        if not ids:
            raise ValueError(f"the tokenizer has no single token for option letter {letter!r}")
        out.append(sorted(ids))
    return out


def option_probabilities(ctx, config: str) -> dict[str, np.ndarray]:
    """row id -> renormalised option probabilities, one forward pass per question (batched)."""
    def compute():
        import torch
        from tqdm.auto import tqdm

        from mosaic.formatting import detect_format

        lm = ctx.model()
        tok, model = lm.tokenizer, lm.model
        fmt = detect_format(tok)
        rows = ctx.rows[config]
        out: dict[str, np.ndarray] = {}
        pad = tok.pad_token_id if tok.pad_token_id is not None else fmt.end_token_id
        passes = ctx.passes("calibration", gen_batch_size(ctx.cfg, lm.device), "questions", "--gen-batch-size")

        def probabilities(batch):
            encoded = []
            for r in batch:
                text = mcq_prompt(r["question"], r["choices"])
                ids = (fmt.prompt_ids(tok, text) if fmt.kind == "chat_template"
                       else tok(text + " ", add_special_tokens=True)["input_ids"])
                encoded.append(ids)
            width = max(map(len, encoded))
            ids_t = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, ids in enumerate(encoded):
                ids_t[i, width - len(ids):] = torch.tensor(ids)
                mask[i, width - len(ids):] = 1
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            with torch.inference_mode():  # the head at the last column only: batch x vocabulary logits
                logits = forward_keeping(model, 1, input_ids=ids_t.to(model.device),
                                         attention_mask=mask.to(model.device),
                                         position_ids=positions.to(model.device)).logits[:, -1].double()
            return torch.softmax(logits, dim=-1).cpu().numpy()

        with ctx.timer("calibration"), tqdm(total=len(rows), desc=f"{config}: option probabilities",
                                            unit="question", disable=not ctx.progress) as bar:
            for batch, probs in passes.chunks(rows, probabilities):
                for i, r in enumerate(batch):
                    letters = letter_token_ids(tok, len(r["choices"]))
                    p = np.array([probs[i, ids].sum() for ids in letters])
                    out[r["id"]] = p / p.sum()
                bar.update(len(batch))
        ctx.note_passes("calibration", passes)
        return out
    return ctx.memo(("option_probs", config), compute)


def ece(values: np.ndarray) -> float:
    """values columns: confidence, correct (0/1), bin count (constant)."""
    conf, correct, bins = values[:, 0], values[:, 1], int(values[0, 2])
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = idx == b
        if sel.any():
            total += sel.mean() * abs(correct[sel].mean() - conf[sel].mean())
    return float(total)


def brier(p: np.ndarray, answer: int) -> float:
    y = np.zeros_like(p)
    y[answer] = 1.0
    return float(((p - y) ** 2).sum())


def js_divergence(q: np.ndarray, p: np.ndarray) -> float:
    m = (q + p) / 2
    return float((_kl(q, m) + _kl(p, m)) / 2)


def _kl(a: np.ndarray, b: np.ndarray) -> float:
    nz = a > 0
    with np.errstate(divide="ignore"):
        return float((a[nz] * (np.log2(a[nz]) - np.log2(b[nz]))).sum())


def _scores(ctx, config: str, keep, per_row) -> Scores:
    probs = option_probabilities(ctx, config)
    rows = [r for r in ctx.rows[config] if keep(r)]
    values = np.array([per_row(r, probs[r["id"]]) for r in rows], dtype=np.float64)
    return Scores([r["id"] for r in rows], [r["id"] for r in rows], [r["subject"] for r in rows],
                  values.reshape(len(rows), -1) if rows else np.zeros((0, 1)),
                  skipped=len(ctx.rows[config]) - len(rows))


def _keyed(r) -> bool:
    return r["answer"] is not None


def accuracy(ctx, config: str) -> Scores:
    return _scores(ctx, config, _keyed, lambda r, p: [float(int(np.argmax(p)) == r["answer"])])


def expected_calibration_error(ctx, config: str) -> Scores:
    bins = ctx.cfg.ece_bins
    return _scores(ctx, config, _keyed, lambda r, p: [p.max(), float(int(np.argmax(p)) == r["answer"]), bins])


def brier_score(ctx, config: str) -> Scores:
    return _scores(ctx, config, _keyed, lambda r, p: [brier(p, r["answer"])])


def population_js(ctx, config: str) -> Scores:
    return _scores(ctx, config, lambda r: r["population"] is not None,
                   lambda r, p: [js_divergence(np.array(r["population"]), p)])


def population_kl(ctx, config: str) -> Scores:
    return _scores(ctx, config, lambda r: r["population"] is not None,
                   lambda r, p: [_kl(np.array(r["population"]), p)])
