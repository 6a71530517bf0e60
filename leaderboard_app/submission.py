"""From a results file to a `Submission`: the evaluator's schema, the benchmark fingerprints, the metric
registry, and the DESIGN §11 duplicate key.

The leaderboard shows what the evaluator computed and nothing else, so a results file is accepted
only when every number in it can be shown as is: each metric is known to this evaluator's registry
at the same version and direction, each value and CI is finite, and the data it was computed on is
the benchmark's (same suite, split and config fingerprints).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from evaluator.metrics import REGISTRY
from evaluator.results import validate_results
from leaderboard_app.policy import MAX_NAME_CHARS, clean_text, parse_labels
from leaderboard_app.records import Labels, Submission, SubmissionRejected
from mosaic.errors import MosaicError

MAX_METRICS = 500
MAX_DOMAINS = 64


@dataclass(frozen=True)
class Benchmark:
    """A suite the leaderboard ranks: its name as results files carry it and its fingerprints."""

    suite: str
    source: str
    fingerprints: dict[str, dict[str, str]]  # config -> split -> "sha256:..."


def load_benchmark(source: str | Path) -> Benchmark:
    from mosaic.hub import read_manifest

    manifest = read_manifest(source)
    suite = Path(source).name if Path(source).exists() else str(source)  # as `mosaic eval` names it
    fingerprints: dict[str, dict[str, str]] = {}
    for config, entry in manifest.items():
        for split, facts in (entry.get("splits") or {}).items():
            if not facts.get("fingerprint"):
                raise MosaicError(f"benchmark {source}: config {config!r} split {split!r} has no fingerprint in its "
                                  "card; export it with `mosaic build` so results can be checked against it")
            fingerprints.setdefault(config, {})[split] = facts["fingerprint"]
    return Benchmark(suite, str(source), fingerprints)


def _sha(obj: Any) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _estimate_problems(where: str, est: Any) -> list[str]:
    if not isinstance(est, dict):
        return [f"{where} must be an object"]
    problems = []
    if not _finite(est.get("value")):
        problems.append(f"{where}.value must be a finite number")
    if not isinstance(est.get("n"), int) or isinstance(est.get("n"), bool) or est["n"] < 0:
        problems.append(f"{where}.n must be a count")
    ci = est.get("ci95")
    if ci is not None and not (isinstance(ci, list) and len(ci) == 2 and all(_finite(c) for c in ci)):
        problems.append(f"{where}.ci95 must be null or [low, high]")
    return problems


def _metric_problems(obj: dict) -> list[str]:
    metrics, configs = obj["metrics"], obj["data"]["configs"]
    if not metrics:
        return ["the results hold no metrics"]
    if len(metrics) > MAX_METRICS:
        return [f"{len(metrics)} metrics; the limit is {MAX_METRICS}"]
    problems = []
    for key, m in metrics.items():
        if key != f"{m['config']}/{m['metric']}":
            problems.append(f"metric key {key!r} does not match its config and metric fields")
        elif m["config"] not in configs:
            problems.append(f"metric {key!r}: config {m['config']!r} is not among the evaluated data configs")
        spec = REGISTRY.get(m["metric"])
        if spec is None:
            problems.append(f"metric {key!r}: {m['metric']!r} is not in this evaluator's metric registry")
        elif (m["version"], m["higher_is_better"]) != (spec.version, spec.higher_is_better):
            problems.append(f"metric {key!r}: version {m['version']} / higher_is_better {m['higher_is_better']} "
                            f"differ from the registry's {spec.version} / {spec.higher_is_better}")
        problems += _estimate_problems(f"metrics[{key!r}]", m)
        if len(m["per_domain"]) > MAX_DOMAINS:
            problems.append(f"metrics[{key!r}] has {len(m['per_domain'])} domains; the limit is {MAX_DOMAINS}")
            continue
        for domain, est in m["per_domain"].items():
            if clean_text(domain, "domain", MAX_NAME_CHARS) is None:
                problems.append(f"metrics[{key!r}] has an empty domain name")
            problems += _estimate_problems(f"metrics[{key!r}].per_domain[{domain!r}]", est)
    return problems


def _data_problems(obj: dict, benchmarks: dict[str, Benchmark]) -> list[str]:
    suite = obj["suite"]
    if suite not in benchmarks:
        return [f"suite {suite!r} is not ranked on this leaderboard (suites: {', '.join(sorted(benchmarks))})"]
    bench, data = benchmarks[suite], obj["data"]
    split, configs = data.get("split"), data.get("configs")
    if not isinstance(split, str) or not isinstance(configs, dict) or not configs:
        return ["data.split and data.configs must name the evaluated split and configs"]
    problems = []
    for name, facts in configs.items():
        expected = bench.fingerprints.get(name, {}).get(split)
        if expected is None:
            problems.append(f"data config {name!r} split {split!r} is not part of benchmark {suite!r}")
        elif facts.get("fingerprint") != expected:
            problems.append(f"data config {name!r} split {split!r}: fingerprint {facts.get('fingerprint')} does not "
                            f"match benchmark {suite!r} ({expected}); the results were computed on other data")
    return problems


def _model_problems(obj: dict) -> list[str]:
    model, adapter = obj.get("model"), obj.get("adapter")
    if model is None:
        return ["the results name no model (generation-only rescoring); submit the results of a run that "
                "loaded the model"]
    if not isinstance(model, dict) or not isinstance(model.get("id"), str):
        return ["model.id must be text"]
    problems = []
    for field in ("revision", "weights_hash"):
        if model.get(field) is not None and not isinstance(model[field], str):
            problems.append(f"model.{field} must be text or null")
    n = model.get("num_parameters")
    if n is not None and (not isinstance(n, int) or isinstance(n, bool) or n < 0):
        problems.append("model.num_parameters must be a count or null")
    if adapter is not None:
        if not isinstance(adapter, dict):
            problems.append("adapter must be an object or null")
        elif any(adapter.get(f) is not None and not isinstance(adapter[f], str) for f in ("hash", "base_model")):
            problems.append("adapter.hash and adapter.base_model must be text or null")
        elif adapter.get("training_card") is not None and not isinstance(adapter["training_card"], dict):
            problems.append("adapter.training_card must be an object or null")
    config_hash = obj["config"].get("eval_config_hash")
    if not isinstance(config_hash, str) or not config_hash.startswith("sha256:"):
        problems.append("config.eval_config_hash is missing")
    try:
        dt.datetime.fromisoformat(obj["created"])
    except ValueError:
        problems.append(f"created {obj['created'][:40]!r} is not an ISO date")
    return problems


def _labels(obj: dict, given: Labels) -> Labels:
    """The adapter's training card names how it was trained; the submitter's labels fill the gaps."""
    card = (obj.get("adapter") or {}).get("training_card") or {}
    from_card = parse_labels(card.get("method"), card.get("k", card.get("K")), card.get("selector"))
    return Labels(from_card.method or given.method, from_card.k or given.k, from_card.selector or given.selector)


def parse_results(raw: bytes, benchmarks: dict[str, Benchmark], labels: Labels | None = None,
                  max_bytes: int | None = None) -> Submission:
    """Validate a results file's bytes; SubmissionRejected says what is wrong, in one message."""
    if max_bytes is not None and len(raw) > max_bytes:
        raise SubmissionRejected(f"the results file is {len(raw):,} bytes; the upload limit is {max_bytes:,}")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise SubmissionRejected("the results file is not UTF-8 text") from None
    except ValueError as exc:
        raise SubmissionRejected(f"the results file is not valid JSON ({exc})") from None
    problems = validate_results(obj)
    if not problems:
        problems = _model_problems(obj) + _data_problems(obj, benchmarks) + _metric_problems(obj)
    if problems:
        more = f" (and {len(problems) - 6} more)" if len(problems) > 6 else ""
        raise SubmissionRejected("not accepted: " + "; ".join(problems[:6]) + more)
    model, adapter, data = obj["model"], obj.get("adapter") or {}, obj["data"]
    model_id = clean_text(model["id"], "model.id", MAX_NAME_CHARS)
    if model_id is None:
        raise SubmissionRejected("not accepted: model.id is empty")
    base_model = clean_text(adapter.get("base_model"), "adapter.base_model", MAX_NAME_CHARS) or model_id
    data_fingerprint = _sha({"split": data["split"],
                             "configs": {c: f["fingerprint"] for c, f in data["configs"].items()}})
    revision, weights = model.get("revision"), model.get("weights_hash")
    config_hash = obj["config"]["eval_config_hash"]
    dedup_key = _sha([model_id, revision or weights, adapter.get("hash"), data_fingerprint, config_hash])
    return Submission(
        suite=obj["suite"], split=data["split"], model_id=model_id, model_revision=revision, weights_hash=weights,
        adapter_hash=adapter.get("hash"), base_model=base_model, num_parameters=model.get("num_parameters"),
        labels=_labels(obj, labels or Labels()), created=obj["created"], data_fingerprint=data_fingerprint,
        eval_config_hash=config_hash, dedup_key=dedup_key, results_json=json.dumps(obj, ensure_ascii=False))
