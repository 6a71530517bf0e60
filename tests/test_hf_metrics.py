"""The `evaluate` modules in evaluator/hf_metrics, loaded with `evaluate.load(<local path>)`, give the
same numbers as MOSAIC's own functions on the same inputs (and hand-computed values where easy).

`evaluate.load` copies each script into HF_MODULES_CACHE and imports it from there; the fixture
points every evaluate cache at a temporary folder and isolates the `evaluate_modules` package, so
the tests neither read nor write the user's cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

evaluate = pytest.importorskip("evaluate")

from evaluator import hf_metrics  # noqa: E402
from evaluator.coverage import coverage_value, diversity_value  # noqa: E402
from evaluator.mcq import _kl, brier, ece, js_divergence  # noqa: E402
from evaluator.passk import pass_at_k  # noqa: E402
from evaluator.stats import mean_of_first  # noqa: E402

DYNAMIC = "evaluate_modules"


@pytest.fixture(scope="module")
def load(tmp_path_factory):
    """evaluate.load(hf_metrics.path(name)) with all evaluate caches under a temporary HF_HOME."""
    home = tmp_path_factory.mktemp("hf_home")
    saved_path = list(sys.path)
    saved_modules = {k: sys.modules.pop(k) for k in list(sys.modules) if k.split(".")[0] == DYNAMIC}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HOME", str(home))
        for name, sub in (("HF_MODULES_CACHE", "modules"), ("HF_METRICS_CACHE", "metrics"),
                          ("HF_EVALUATE_CACHE", "evaluate")):
            mp.setenv(name, str(home / sub))
            mp.setattr(evaluate.config, name, home / sub)

        def _load(name: str):
            module = evaluate.load(hf_metrics.path(name))
            # the script was copied into (and imported from) the temporary cache, not the user's
            assert sys.modules[type(module).__module__].__file__.startswith(str(home / "modules"))
            return module

        yield _load
    for k in [k for k in sys.modules if k.split(".")[0] == DYNAMIC]:
        del sys.modules[k]
    sys.modules.update(saved_modules)
    sys.path[:] = saved_path


def _embed_like_cli(texts):
    from mosaic.embeddings import embed

    ordered = sorted(set(texts))
    return dict(zip(ordered, embed(ordered)))


GENS = [["The cat sat on the mat.", "A dog barked at the mailman.", "Rain fell over the quiet town."],
        ["Add the two numbers and print the sum.", "Read a and b, then output a + b.", "Paris is in France."]]
REFS = [["A cat is sitting on a mat.", "It rained all day in the village."],
        ["Print the sum of the two integers.", "Compute a plus b.", "The capital of Italy is Rome."]]


def test_coverage_equals_shared_function(load):
    cov = load("mosaic_coverage")
    out = cov.compute(predictions=GENS, references=REFS)
    emb = _embed_like_cli([t for g in GENS + REFS for t in g])
    expected = [coverage_value(np.stack([emb[t] for t in r]), np.stack([emb[t] for t in g]))
                for g, r in zip(GENS, REFS)]
    assert out["per_prompt"] == expected
    assert out["coverage"] == mean_of_first(np.array(expected).reshape(-1, 1))
    assert out["coverage"] == pytest.approx(float(np.mean(expected)))

    # k: only the first k generations count
    out1 = cov.compute(predictions=GENS, references=REFS, k=1)
    emb = _embed_like_cli([t for g in GENS for t in g[:1]] + [t for r in REFS for t in r])
    assert out1["per_prompt"] == [coverage_value(np.stack([emb[t] for t in r]), np.stack([emb[g[0]]]))
                                  for g, r in zip(GENS, REFS)]
    assert out1["coverage"] <= out["coverage"]

    # references among the generations: every max similarity is 1
    same = cov.compute(predictions=[REFS[0] + ["something else"]], references=[REFS[0]])
    assert same["coverage"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="no references"):
        cov.compute(predictions=[["a"]], references=[[]])


def test_diversity_equals_shared_function(load):
    div = load("mosaic_diversity")
    out = div.compute(predictions=GENS)
    emb = _embed_like_cli([t for g in GENS for t in g])
    expected = [diversity_value(np.stack([emb[t] for t in g])) for g in GENS]
    assert out["per_prompt"] == expected
    assert out["diversity"] == mean_of_first(np.array(expected).reshape(-1, 1))

    out2 = div.compute(predictions=GENS, k=2)
    emb = _embed_like_cli([t for g in GENS for t in g[:2]])
    assert out2["per_prompt"] == [diversity_value(np.stack([emb[t] for t in g[:2]])) for g in GENS]

    # identical generations: no diversity (up to float32 rounding of the embeddings)
    same = div.compute(predictions=[["exactly the same answer"] * 4, ["x y z", "x y z"]])
    assert same["per_prompt"] == pytest.approx([0.0, 0.0], abs=1e-5)
    with pytest.raises(ValueError, match="at least 2 generations"):
        div.compute(predictions=[["only one"]])


# question table: option probabilities (unnormalised where noted), answer, population
TABLE = [
    ([0.7, 0.2, 0.1, 0.0], 0, None),            # correct, confidence 0.7 (bin 7)
    ([0.5, 0.5], 1, None),                       # tie -> option 0 -> wrong, confidence 0.5 (bin 5)
    ([2.0, 1.0, 1.0], None, [0.5, 0.25, 0.25]),  # unkeyed, renormalised to [0.5, 0.25, 0.25]
    ([0.05, 0.95], 1, [0.3, 0.7]),               # correct, confidence 0.95 (bin 9)
]


def test_calibration_fixed_table(load):
    cal = load("mosaic_calibration")
    preds = [p for p, _, _ in TABLE]
    answers = [a for _, a, _ in TABLE]
    out = cal.compute(predictions=preds[:2], references=answers[:2])
    # hand-computed: ECE = 0.5 |1 - 0.7| + 0.5 |0 - 0.5|; Brier = mean(0.09+0.04+0.01, 0.25+0.25)
    assert out["accuracy"] == 0.5
    assert out["ece"] == pytest.approx(0.4)
    assert out["brier"] == pytest.approx(0.32)
    assert out["n"] == 2 and out["ece_bins"] == 10 and "js" not in out

    pops = [q for _, _, q in TABLE]
    for bins in (10, 15):
        out = cal.compute(predictions=preds, references=answers, populations=pops, ece_bins=bins)
        probs = [np.asarray(p, dtype=np.float64) / np.sum(p) for p in preds]
        keyed = [(p, a) for p, a in zip(probs, answers) if a is not None]
        correct = [float(int(np.argmax(p)) == a) for p, a in keyed]
        assert out["n"] == 3 and out["ece_bins"] == bins
        assert out["accuracy"] == mean_of_first(np.array(correct).reshape(-1, 1)) == pytest.approx(2 / 3)
        assert out["ece"] == ece(np.array([[p.max(), c, bins] for (p, _), c in zip(keyed, correct)]))
        assert out["brier"] == mean_of_first(np.array([brier(p, a) for p, a in keyed]).reshape(-1, 1))
        pairs = [(np.array(q), p) for q, p in zip(pops, probs) if q is not None]
        assert out["n_population"] == 2
        assert out["js"] == mean_of_first(np.array([js_divergence(q, p) for q, p in pairs]).reshape(-1, 1))
        assert out["kl"] == mean_of_first(np.array([_kl(q, p) for q, p in pairs]).reshape(-1, 1))
    # the third question's population equals its renormalised prediction: it adds 0 divergence
    assert js_divergence(np.array([0.5, 0.25, 0.25]), probs[2]) == 0.0
    # ECE with 10 bins by hand: bins 7 (conf 0.7, acc 1), 5 (0.5, 0), 9 (0.95, 1), each 1/3 of N
    out = cal.compute(predictions=preds, references=answers)
    assert out["ece"] == pytest.approx((0.3 + 0.5 + 0.05) / 3)

    with pytest.raises(ValueError, match="out of range"):
        cal.compute(predictions=[[0.6, 0.4]], references=[2])
    with pytest.raises(ValueError, match="non-negative"):
        cal.compute(predictions=[[0.0, 0.0]], references=[0])
    # huge weights: their sum overflows float64, their proportions do not (tie -> option 0, confidence 0.5)
    out = cal.compute(predictions=[[1e308, 1e308]], references=[0])
    assert (out["accuracy"], out["ece"], out["brier"]) == (1.0, 0.5, 0.5)


def test_coverage_and_diversity_refuse_k_above_the_generations(load):
    """As the CLI does (min_samples): a coverage@10 of 3 generations would silently be coverage@3."""
    gens, refs = [["a cat", "a dog", "a bird"]], [["a cat sat"]]
    with pytest.raises(ValueError, match="3 generations, fewer than k=10"):
        load("mosaic_coverage").compute(predictions=gens, references=refs, k=10)
    with pytest.raises(ValueError, match="3 generations, fewer than k=4"):
        load("mosaic_diversity").compute(predictions=gens, k=4)


def test_passk_one_correct_one_wrong(load):
    passk = load("mosaic_passk")
    good = "```python\nn = int(input())\nprint(n * 2)\n```"
    bad = "print(int(input()) + 1)"
    predictions = [[good, bad], [bad, bad, bad], [good]]
    references = [{"input": ["2\n", "5\n"], "output": ["4\n", "10\n"]}] * 3
    out = passk.compute(predictions=predictions, references=references, k=[1, 2], time_scale=1.0, workers=2)
    assert [p["n"] for p in out["per_problem"]] == [2, 3, 1]
    assert [p["c"] for p in out["per_problem"]] == [1, 0, 1]
    assert out["per_problem"][0]["statuses"] == {"passed": 1, "wrong_answer": 1}
    # pass@1 = mean(1/2, 0, 1); pass@2 over the problems with n >= 2 only: mean(1, 0)
    assert out["pass@1"] == (pass_at_k(2, 1, 1) + pass_at_k(3, 0, 1) + pass_at_k(1, 1, 1)) / 3 == pytest.approx(0.5)
    assert out["pass@2"] == (pass_at_k(2, 1, 2) + pass_at_k(3, 0, 2)) / 2 == 0.5
    assert out["left_out_n_lt_k"] == {"pass@1": 0, "pass@2": 1}
    assert out["problems_without_completions"] == 0
    assert out["isolation"] in {"bwrap+uid+rlimits", "bwrap+rlimits", "uid+rlimits", "rlimits"}
    assert out["isolation_degraded"] == (not out["isolation"].startswith("bwrap"))
    assert out["time_scale"] == 1.0
    with pytest.raises(ValueError, match="at least one test"):
        passk.compute(predictions=[[good]], references=[{"input": [], "output": []}], time_scale=1.0)


def test_fresh_session_plain_load(tmp_path):
    """A new interpreter with only the package installed loads every module by its absolute path."""
    code = (
        "import json, sys, evaluate\n"
        "base = sys.argv[1]\n"
        "names = ['mosaic_coverage', 'mosaic_diversity', 'mosaic_calibration', 'mosaic_passk']\n"
        "mods = {n: evaluate.load(base + '/' + n) for n in names}\n"
        "out = mods['mosaic_calibration'].compute(predictions=[[0.7, 0.3], [0.4, 0.6]], references=[0, 0])\n"
        "print(json.dumps({'classes': [type(m).__name__ for m in mods.values()], 'cal': out}))\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}
    for name in ("HF_MODULES_CACHE", "HF_METRICS_CACHE", "HF_EVALUATE_CACHE"):
        env.pop(name, None)
    base = os.path.dirname(hf_metrics.path("mosaic_coverage"))
    proc = subprocess.run([sys.executable, "-c", code, base], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["classes"] == ["MosaicCoverage", "MosaicDiversity", "MosaicCalibration", "MosaicPassK"]
    assert result["cal"]["accuracy"] == 0.5 and result["cal"]["brier"] == pytest.approx((0.18 + 0.72) / 2)
    assert (tmp_path / "hf" / "modules" / DYNAMIC).is_dir()
