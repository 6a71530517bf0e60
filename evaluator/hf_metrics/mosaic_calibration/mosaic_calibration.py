"""MOSAIC multiple-choice calibration as a Hugging Face `evaluate` metric (DESIGN §7, §11).

Each prediction is a question's option probabilities, renormalised here over its options: p_j.
Confidence = max_j p_j; the predicted option is the argmax (lowest index on ties).

    accuracy = mean 1[argmax p = answer]
    ECE      = sum_b (|B_b| / N) |acc(B_b) - conf(B_b)|, equal-width bins on [0, 1]
    Brier    = mean over questions of sum_j (p_j - y_j)^2, in [0, 2]
    JS       = Jensen-Shannon divergence (base 2, in [0, 1]) between a population distribution q
               over the options and p, averaged over questions; KL(q || p) in bits beside it.

The formulas are `evaluator.mcq.ece`, `brier`, `js_divergence` and `_kl`, and the aggregates are
those of `mosaic eval`, so the numbers match the CLI's on the same option probabilities.

Load with `evaluate.load("/abs/path/to/evaluator/hf_metrics/mosaic_calibration")`.
"""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

from evaluator.mcq import _kl, brier, ece, js_divergence
from evaluator.stats import mean_of_first

_DESCRIPTION = """
Calibration of multiple-choice answers (MOSAIC bench). From each question's option probabilities
(renormalised over the options) it reports accuracy (argmax = answer), expected calibration error
over equal-width confidence bins (confidence = the top probability), the multi-class Brier score,
and, where a population distribution over the options is given, its Jensen-Shannon divergence
(base 2) from the model's distribution and KL(population || model) in bits.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): for each question, a non-negative score per option
        (probabilities, or any non-negative weights); renormalised to sum to 1.
    references (`list` of `int` or `None`): the index of each question's correct option, or None for an
        unkeyed question (left out of accuracy, ECE and Brier; it can still carry a population).
    ece_bins (`int`, *optional*, defaults to 10): number of equal-width confidence bins.
    populations (`list` of (`list` of `float` or `None`), *optional*): for each question, a population
        distribution over its options (summing to 1 within 1e-6; used as given, as `mosaic eval` does),
        or None; JS and KL are averaged over the questions that have one.
Returns:
    accuracy, ece, brier (`float`, None without keyed questions), n (`int`: keyed questions),
    ece_bins (`int`); with populations also js, kl (`float`) and n_population (`int`).
Examples:
    >>> cal = evaluate.load("evaluator/hf_metrics/mosaic_calibration")
    >>> cal.compute(predictions=[[0.7, 0.2, 0.1, 0.0], [0.5, 0.5]], references=[0, 1])["accuracy"]
    0.5
"""


def _distribution(values, where: str) -> np.ndarray:
    p = np.asarray(values, dtype=np.float64)
    if p.ndim != 1 or len(p) < 2:
        raise ValueError(f"{where}: expected at least two option probabilities, got {values!r}")
    if not np.isfinite(p).all() or (p < 0).any() or not p.max() > 0:
        raise ValueError(f"{where}: option probabilities must be finite, non-negative and not all zero: {values!r}")
    with np.errstate(over="ignore"):  # huge weights (1e308 + 1e308): the sum overflows; scale first then
        total = p.sum()
    if not np.isfinite(total):
        p = p / p.max()
    return p / p.sum()  # otherwise exactly as `mosaic eval` renormalises


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MosaicCalibration(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.Sequence(datasets.Value("float64")),
                "references": datasets.Value("int64"),
            }),
        )

    def _compute(self, predictions, references, ece_bins=10, populations=None):
        if isinstance(ece_bins, bool) or not isinstance(ece_bins, int) or ece_bins < 1:
            raise ValueError(f"ece_bins must be a positive integer, got {ece_bins!r}")
        probs = [_distribution(p, f"prediction {i}") for i, p in enumerate(predictions)]
        keyed = []
        for i, (p, answer) in enumerate(zip(probs, references)):
            if answer is None:
                continue
            if not 0 <= answer < len(p):
                raise ValueError(f"reference {i}: answer index {answer} out of range for {len(p)} options")
            keyed.append((p, int(answer)))
        out: dict = {"n": len(keyed), "ece_bins": ece_bins}
        if keyed:
            # per-question values exactly as evaluator.mcq builds them for `mosaic eval`
            correct = [float(int(np.argmax(p)) == a) for p, a in keyed]
            out["accuracy"] = mean_of_first(np.array(correct).reshape(-1, 1))
            out["ece"] = ece(np.array([[p.max(), c, ece_bins] for (p, _), c in zip(keyed, correct)],
                                      dtype=np.float64))
            out["brier"] = mean_of_first(np.array([brier(p, a) for p, a in keyed]).reshape(-1, 1))
        else:
            out.update(accuracy=None, ece=None, brier=None)
        if populations is not None:
            if len(populations) != len(probs):
                raise ValueError(f"populations: {len(populations)} given for {len(probs)} predictions")
            pairs = []
            for i, (q, p) in enumerate(zip(populations, probs)):
                if q is None:
                    continue
                q = np.asarray(q, dtype=np.float64)
                if q.ndim != 1 or not np.isfinite(q).all() or (q < 0).any() or abs(q.sum() - 1.0) > 1e-6:
                    raise ValueError(f"population {i}: expected a probability distribution over the options "
                                     f"(non-negative, summing to 1), got {populations[i]!r}")
                if len(q) != len(p):
                    raise ValueError(f"population {i}: {len(q)} options, prediction has {len(p)}")
                pairs.append((q, p))
            out["n_population"] = len(pairs)
            out["js"] = mean_of_first(np.array([js_divergence(q, p) for q, p in pairs]).reshape(-1, 1)) \
                if pairs else None
            out["kl"] = mean_of_first(np.array([_kl(q, p) for q, p in pairs]).reshape(-1, 1)) if pairs else None
        return out
