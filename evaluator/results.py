"""The results file (schema version 1): what `mosaic eval` writes and the leaderboard reads.

Top level: schema_version, suite, created, model {id, revision, weights_hash, num_parameters,
dtype, device} (null when only generations were rescored), adapter (null, or path, repo ({id,
revision} for a Hub adapter, else null), hash, base_model, peft_type, r, training_card), data
{source, split, configs {name: {layout, rows, fingerprint}}}, config (every scoring option +
eval_config_hash), notes, metrics, generations_file, environment, timings_s.
metrics: "<config>/<metric>" -> {metric, config, value, n, n_clusters, ci95 [lo, hi] | null,
higher_is_better, version, skipped (rows the metric could not score, a count), per_domain {domain:
{value, n, n_clusters, ci95}}, extra?}.
"""

from __future__ import annotations

import json
import math
import os
import platform
from pathlib import Path
from typing import Any

from mosaic.errors import MosaicError

RESULTS_SCHEMA_VERSION = 1
_TOP = {"schema_version": int, "suite": str, "created": str, "data": dict, "config": dict, "metrics": dict,
        "environment": dict, "timings_s": dict}
_METRIC = {"metric": str, "config": str, "value": float, "n": int, "n_clusters": int, "higher_is_better": bool,
           "version": str, "per_domain": dict}


def environment(device: str) -> dict[str, Any]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("mosaic-bench", "torch", "transformers", "peft", "datasets", "sentence-transformers", "numpy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    env = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "device": device, "packages": versions}
    if device.startswith("cuda"):
        import torch

        env["device_name"] = torch.cuda.get_device_name(0)
    return env


def _is(value: Any, typ: type) -> bool:
    if typ in (int, float):
        return isinstance(value, int if typ is int else (int, float)) and not isinstance(value, bool)
    return isinstance(value, typ)


def is_count(value: Any) -> bool:
    """A whole number >= 0 (a JSON true is not one)."""
    return _is(value, int) and value >= 0


def _config_problems(data: dict) -> list[str]:
    if not isinstance(data.get("split"), str):
        return ["data.split must be str"]
    configs = data.get("configs")
    if not isinstance(configs, dict) or not configs:
        return ["data.configs must be a non-empty object of {config: {layout, rows, fingerprint}}"]
    problems = []
    for name, cfg in configs.items():
        if not isinstance(cfg, dict):
            problems.append(f"data.configs.{name} must be an object, got {type(cfg).__name__}")
            continue
        if not str(cfg.get("fingerprint", "")).startswith("sha256:"):
            problems.append(f"data.configs.{name}.fingerprint missing")
        if not isinstance(cfg.get("layout"), str):
            problems.append(f"data.configs.{name}.layout must be str")
        if not is_count(cfg.get("rows")):
            problems.append(f"data.configs.{name}.rows must be a count")
        if "rows_evaluated" in cfg and not is_count(cfg["rows_evaluated"]):
            problems.append(f"data.configs.{name}.rows_evaluated must be a count")
    return problems


def _metric_problems(key: str, m: Any) -> list[str]:
    if not isinstance(m, dict):
        return [f"metrics[{key!r}] must be an object, got {type(m).__name__}"]
    problems = [f"metrics[{key!r}].{field} must be {typ.__name__}" for field, typ in _METRIC.items()
                if not _is(m.get(field), typ)]
    if isinstance(m.get("value"), float) and not math.isfinite(m["value"]):
        problems.append(f"metrics[{key!r}].value is not finite")
    if m.get("skipped") is not None and not is_count(m["skipped"]):  # rows the metric could not score
        problems.append(f"metrics[{key!r}].skipped must be a count of rows or null")
    if isinstance(m.get("per_domain"), dict):
        problems += [f"metrics[{key!r}].per_domain[{d!r}] must be an object" for d, est in m["per_domain"].items()
                     if not isinstance(est, dict)]
    return problems


def validate_results(obj: Any) -> list[str]:
    """Problems with a results object (empty list = valid). Checks types and shape only, never raises."""
    if not isinstance(obj, dict):
        return ["results must be a JSON object"]
    problems = []
    for key, typ in _TOP.items():
        if key not in obj:
            problems.append(f"missing field {key!r}")
        elif not _is(obj[key], typ):  # bool is an int to Python, not to the schema
            problems.append(f"field {key!r} must be {typ.__name__}")
    if problems:
        return problems
    if obj["schema_version"] != RESULTS_SCHEMA_VERSION:
        problems.append(f"schema_version {obj['schema_version']} is not {RESULTS_SCHEMA_VERSION}")
    problems += _config_problems(obj["data"])
    for key, m in obj["metrics"].items():
        problems += _metric_problems(key, m)
    return problems


def check_output_path(path: str | Path, option: str) -> None:
    """Refuse, before any work, an output file path that cannot be written: a directory, a path
    ending in '/', or one whose nearest existing parent is a file or not writable."""
    text = str(path)
    if not text or text.endswith(("/", os.sep)) or Path(text).is_dir():
        raise MosaicError(f"{option} {text!r}: names a directory, not a file; give a file path such as "
                          f"{text.rstrip('/') or '.'}/results.json")
    parent = Path(text).absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise MosaicError(f"{option} {text!r}: cannot create its folder, {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise MosaicError(f"{option} {text!r}: {parent} is not writable")


def write_results(path: str | Path, results: dict) -> Path:
    problems = validate_results(results)
    if problems:
        raise AssertionError(f"internal error: results do not match their schema: {problems}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_results(path: str | Path) -> dict:
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise MosaicError(f"{path}: cannot read a results JSON ({exc})") from exc
    problems = validate_results(obj)
    if problems:
        raise MosaicError(f"{path}: not a valid results file: {'; '.join(problems)}")
    return obj
