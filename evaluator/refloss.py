"""Reference loss (DESIGN §7, §11): NLL of each prompt's references under the model.

The scoring pass runs once per config and is shared by both loss metrics and the variance
diagnostics. Rows without references are skipped and counted.
"""

from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from evaluator.metrics import Scores
from evaluator.scoring import ScoredResponse, score_all, score_pairs_batched

DEFAULT_BATCH = {"shared-prompt": 8, "batched": 64}  # references per pass when --batch-size is not given


def reference_nll(ctx, config: str) -> dict[str, list[ScoredResponse]]:
    """row id -> scored references, computed once per config and memoised on the context."""
    def compute():
        from mosaic.formatting import detect_format

        lm = ctx.model()
        fmt = detect_format(lm.tokenizer)
        ctx.notes["prompt_format"] = fmt.kind
        strategy = ctx.cfg.scoring
        if strategy == "auto":
            strategy = "batched" if str(lm.device).startswith("cuda") else "shared-prompt"
        batch = ctx.cfg.batch_size or DEFAULT_BATCH[strategy]
        passes = ctx.passes("reference_loss", batch, "references", "--batch-size")
        rows = [r for r in ctx.rows[config] if r["responses"]]
        encoded = []
        for row in rows:
            prompt_ids = fmt.prompt_ids(lm.tokenizer, row["prompt"])
            encoded.append((prompt_ids, [fmt.response_ids(lm.tokenizer, row["prompt"], r["text"])
                                         for r in row["responses"]]))
        out: dict[str, list[ScoredResponse]] = {}
        with ctx.timer("reference_loss"):
            if strategy == "shared-prompt":
                with tqdm(total=len(rows), desc=f"{config}: reference loss", unit="prompt",
                          disable=not ctx.progress) as bar:
                    scored = score_all(lm.model, encoded, batch, on_prompt=bar.update, passes=passes)
                out = {row["id"]: refs for row, refs in zip(rows, scored)}
            else:
                pairs = [(p, r) for p, refs in encoded for r in refs]
                with tqdm(total=len(pairs), desc=f"{config}: reference loss", unit="reference",
                          disable=not ctx.progress) as bar:
                    flat = iter(score_pairs_batched(lm.model, pairs, batch, on_batch=bar.update, passes=passes))
                out = {row["id"]: [next(flat) for _ in refs] for row, (_, refs) in zip(rows, encoded)}
        ctx.notes.setdefault("reference_loss_scoring", {})[config] = {"path": strategy, "batch_size": batch}
        ctx.note_passes("reference_loss", passes)
        ctx.notes.setdefault("reference_loss_tokens", {})[config] = \
            sum(len(p) + sum(len(r) for r in refs) for p, refs in encoded)
        return out
    return ctx.memo(("ref_nll", config), compute)


def _scores(ctx, config: str, per_row) -> Scores:
    scored = reference_nll(ctx, config)
    rows = [r for r in ctx.rows[config] if r["id"] in scored]
    values = np.array([per_row(scored[r["id"]]) for r in rows], dtype=np.float64).reshape(len(rows), 2)
    return Scores(ids=[r["id"] for r in rows], clusters=[r["item_id"] for r in rows],
                  domains=[r["domain"] for r in rows], values=values,
                  skipped=len(ctx.rows[config]) - len(rows))


def token_weighted(ctx, config: str) -> Scores:
    """Per prompt: [sum of token NLL over its references, scored tokens]; aggregate = ratio of sums."""
    return _scores(ctx, config, lambda refs: [sum(r.total for r in refs), sum(r.n_tokens for r in refs)])


def response_mean(ctx, config: str) -> Scores:
    """Per prompt: [sum of per-reference mean NLL, references]; aggregate = ratio of sums."""
    return _scores(ctx, config, lambda refs: [sum(r.mean for r in refs), len(refs)])
