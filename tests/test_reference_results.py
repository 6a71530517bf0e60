"""The shipped reference results (leaderboard_app/reference_results: the K sweep run on one H100)
are valid leaderboard submissions, agree with the sweep's table and training cards, and their
saved generations re-score on this CPU machine to the numbers the GPU run wrote."""

from __future__ import annotations

import json

import pytest

from evaluator.config import EvalConfig
from evaluator.run import evaluate
from leaderboard_app.cli import _preload
from leaderboard_app.service import REFERENCE_RESULTS, Leaderboard
from mosaic.benchmark import DEFAULT_DATA
from mosaic.errors import MosaicError

RUNS = {"base": None, "k1": 1, "k2": 2, "k4": 4}


def _results(name: str) -> dict:
    return json.loads((REFERENCE_RESULTS / f"{name}.json").read_text())


def test_reference_results_preload_as_valid_submissions(tmp_path, capsys):
    lb = Leaderboard.open(tmp_path / "lb.db", [str(DEFAULT_DATA)])
    first = dict(lb.preload(REFERENCE_RESULTS))
    assert sorted(first) == [f"{n}.json" for n in sorted(RUNS)]
    assert all(o.ok for o in first.values()), {n: o.message for n, o in first.items()}
    subs = [r.submission for r in lb.rows("mosaic-mini")]
    rows = {s.model_id if s.adapter_hash is None else s.labels.k: s for s in subs}
    assert set(rows) == {"smollm2-135m-instruct", 1, 2, 4}
    assert [rows[k].labels.method for k in (1, 2, 4)] == ["srt", "mrt", "mrt"]
    assert {rows[k].labels.selector.lower() for k in (1, 2, 4)} == {"rkon"}
    again = lb.preload(REFERENCE_RESULTS)  # a restart of the app preloads again: nothing doubles
    assert all(not o.ok and o.extra.get("duplicate") for _, o in again)
    assert len(lb.rows("mosaic-mini")) == 4
    _preload(lb, [str(REFERENCE_RESULTS)])
    assert "0 added, 4 already on the board" in capsys.readouterr().out


def test_preload_refusals_are_loud(tmp_path, capsys):
    lb = Leaderboard.open(tmp_path / "lb.db", [str(DEFAULT_DATA)])
    folder = tmp_path / "mine"
    folder.mkdir()
    bad = _results("k1")
    bad["data"]["configs"]["mosaic"]["fingerprint"] = "sha256:" + "0" * 64
    (folder / "tampered.json").write_text(json.dumps(bad))
    _preload(lb, [str(folder)])
    captured = capsys.readouterr()
    assert "0 added, 0 already on the board" in captured.out
    assert "tampered.json: refused:" in captured.err and "fingerprint" in captured.err
    with pytest.raises(MosaicError, match="not a folder holding results JSON"):
        lb.preload(tmp_path / "missing")


def test_k_sweep_table_and_cards_are_the_results_files():
    sweep = json.loads((REFERENCE_RESULTS / "k_sweep" / "k_sweep.json").read_text())
    assert sweep["args"]["ks"] == "1,2,4" and sweep["args"]["selector"] == "rkon"
    rows = {r["run"]: r for r in sweep["rows"]}
    assert set(rows) == {"base", "K=1", "K=2", "K=4"}
    for name, k in RUNS.items():
        res, row = _results(name), rows["base" if k is None else f"K={k}"]
        assert res["model"]["device"] == "cuda" and res["environment"]["device_name"].startswith("NVIDIA H100")
        for key in ("ref_loss", "coverage", "diversity"):
            metric = "mosaic/ref_loss" if key == "ref_loss" else row[f"{key}_key"]
            assert row[key]["value"] == res["metrics"][metric]["value"]
        if k is not None:
            card = json.loads((REFERENCE_RESULTS / "k_sweep" / f"{name}.training_card.json").read_text())
            assert res["adapter"]["training_card"] == card
            assert card["k"] == k and card["optimisation"]["steps"] == sweep["args"]["max_steps"]
            assert row["train_tokens_per_s"] == card["throughput"]["tokens_per_s"]


def test_gpu_generations_rescore_on_cpu_to_the_gpu_numbers(tmp_path):
    """Coverage and diversity recomputed here from the H100 run's generations file (MiniLM on CPU)
    equal the values the GPU run wrote, to float32 rounding."""
    gpu = _results("k4")
    metrics = ["coverage@8", "diversity@8", "item_coverage@2"]
    cfg = EvalConfig(from_generations=str(REFERENCE_RESULTS / "k4.generations.jsonl"), configs=["mosaic"],
                     max_items=0, n_samples=8, metrics=metrics, bootstrap_resamples=50,
                     out=str(tmp_path / "cpu.json"))
    cpu = evaluate(cfg, progress=False)
    for name in metrics:
        key = f"mosaic/{name}"
        assert cpu["metrics"][key]["n"] == gpu["metrics"][key]["n"] == 64
        assert cpu["metrics"][key]["value"] == pytest.approx(gpu["metrics"][key]["value"], abs=1e-6)
