"""Whether the numbers of a schema-valid results file are possible, metric by metric.

The leaderboard shows the evaluator's numbers as they are, so it refuses those that `mosaic eval`
cannot have written: a metric outside the registry (or at another version or direction), on a
config whose layout it does not apply to, a value or CI bound outside the metric's declared
`value_range`, a CI with low > high or over fewer than 2 item clusters (the evaluator writes none
then), counts that are negative, not whole or larger than the config's rows, and domains the
benchmark does not declare. A value outside its own CI is possible for a percentile bootstrap (the
2.5th and 97.5th percentiles of a skewed resample distribution, or of a non-linear aggregate such
as ECE or the clamped Vx, may both lie on one side of the full-sample value), so that is only a
warning.
"""

from __future__ import annotations

import math
from typing import Any

from evaluator.metrics import LAYOUTS, RANGE_SLACK, REGISTRY, Metric
from evaluator.results import is_count
from leaderboard_app.policy import MAX_NAME_CHARS, clean_text

MAX_METRICS = 500
MAX_DOMAINS = 64
_CI_TOLERANCE = 1e-9  # relative: a value equal to a CI bound up to float rounding is inside it


def finite(x: Any) -> bool:
    """A JSON number that is a finite float (an integer too large for a float is not)."""
    if not isinstance(x, (int, float)) or isinstance(x, bool):
        return False
    try:
        return math.isfinite(x)
    except OverflowError:
        return False


def range_text(spec: Metric) -> str:
    lo, hi = spec.value_range
    return f"[{lo:g}, {'inf' if math.isinf(hi) else f'{hi:g}'}]"


def _in_range(x: float, spec: Metric) -> bool:
    lo, hi = spec.value_range
    return lo - RANGE_SLACK <= x <= hi + RANGE_SLACK


def estimate_problems(where: str, est: Any, spec: Metric | None, rows: int | None,
                      warnings: list[str]) -> list[str]:
    """One {value, n, n_clusters, ci95} (a metric's overall value or one domain's)."""
    if not isinstance(est, dict):
        return [f"{where} must be an object"]
    problems = []
    value, n, clusters, ci = est.get("value"), est.get("n"), est.get("n_clusters"), est.get("ci95")
    if not finite(value):
        problems.append(f"{where}.value must be a finite number")
    elif spec is not None and not _in_range(value, spec):
        problems.append(f"{where}.value {value:g} is outside {spec.name}'s range {range_text(spec)}")
    if not is_count(n):
        problems.append(f"{where}.n must be a whole number >= 0")
    elif rows is not None and n > rows:
        problems.append(f"{where}.n {n} is more than the config's {rows} evaluated rows")
    if not is_count(clusters):
        problems.append(f"{where}.n_clusters must be a whole number >= 0")
    elif is_count(n) and (clusters > n or (n > 0) != (clusters > 0)):
        problems.append(f"{where}.n_clusters {clusters} is impossible for n {n} rows")
    if ci is None:
        return problems
    if not (isinstance(ci, list) and len(ci) == 2 and all(finite(c) for c in ci)):
        return problems + [f"{where}.ci95 must be null or [low, high]"]
    low, high = ci
    if low > high:
        problems.append(f"{where}.ci95 [{low:g}, {high:g}] has low > high")
    if spec is not None and not (_in_range(low, spec) and _in_range(high, spec)):
        problems.append(f"{where}.ci95 [{low:g}, {high:g}] reaches outside {spec.name}'s range {range_text(spec)}")
    if is_count(clusters) and clusters < 2:
        problems.append(f"{where}.ci95 is given, but a bootstrap over {clusters} item cluster(s) has no interval")
    if not problems and finite(value):
        slack = _CI_TOLERANCE * max(1.0, abs(value))
        if not low - slack <= value <= high + slack:
            warnings.append(f"{where}: value {value:.6g} lies outside its 95% CI [{low:.6g}, {high:.6g}] "
                            "(possible for a percentile bootstrap of a skewed statistic; shown as written)")
    return problems


def metric_problems(obj: dict, domains: dict[str, frozenset[str]], warnings: list[str]) -> list[str]:
    """Every metric of a results file whose data configs passed the benchmark checks; `domains` maps a
    config to the domains the benchmark declares for the evaluated split (configs without a
    declaration are not checked)."""
    metrics, configs = obj["metrics"], obj["data"]["configs"]
    if not metrics:
        return ["the results hold no metrics"]
    if len(metrics) > MAX_METRICS:
        return [f"{len(metrics)} metrics; the limit is {MAX_METRICS}"]
    problems = []
    for key, m in metrics.items():
        where = f"metrics[{key!r}]"
        if key != f"{m['config']}/{m['metric']}":
            problems.append(f"metric key {key!r} does not match its config and metric fields")
            continue
        facts = configs.get(m["config"])
        if facts is None:
            problems.append(f"metric {key!r}: config {m['config']!r} is not among the evaluated data configs")
            continue
        spec = REGISTRY.get(m["metric"])
        if spec is None:
            problems.append(f"metric {key!r}: {m['metric']!r} is not in this evaluator's metric registry")
            continue
        if (m["version"], m["higher_is_better"]) != (spec.version, spec.higher_is_better):
            problems.append(f"metric {key!r}: version {m['version']} / higher_is_better {m['higher_is_better']} "
                            f"differ from the registry's {spec.version} / {spec.higher_is_better}")
        if LAYOUTS[spec.applies_to] != facts["layout"]:
            problems.append(f"metric {key!r}: {spec.name} applies to {spec.applies_to} ({LAYOUTS[spec.applies_to]} "
                            f"layout), but config {m['config']!r} has layout {facts['layout']!r}")
        rows = facts.get("rows_evaluated", facts["rows"])
        skipped = m.get("skipped")
        if is_count(skipped) and is_count(m["n"]) and m["n"] + skipped > rows:
            problems.append(f"{where}: n {m['n']} + skipped {skipped} is more than the config's {rows} "
                            "evaluated rows")
        problems += estimate_problems(where, m, spec, rows, warnings)
        per_domain = m["per_domain"]
        if len(per_domain) > MAX_DOMAINS:
            problems.append(f"{where} has {len(per_domain)} domains; the limit is {MAX_DOMAINS}")
            continue
        declared = domains.get(m["config"])
        for domain, est in per_domain.items():
            if clean_text(domain, f"{where} domain name", MAX_NAME_CHARS) is None:
                problems.append(f"{where} has an empty domain name")
            elif declared is not None and domain not in declared:
                problems.append(f"{where}.per_domain has domain {domain[:40]!r}, which config {m['config']!r} "
                                f"does not have (domains: {', '.join(sorted(declared))})")
            problems += estimate_problems(f"{where}.per_domain[{domain[:40]!r}]", est, spec, rows, warnings)
    return problems
