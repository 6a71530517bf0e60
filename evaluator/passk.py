"""Pass@k of generated code: unbiased estimator, sandboxed scoring of samples, report.

For a problem with n samples of which c pass every test (public + private + generated), the
unbiased estimator (Chen et al. 2021) in its numerically stable product form is

    pass@k = 1 - C(n - c, k) / C(n, k) = 1 - prod_{i = n - c + 1}^{n} (1 - k / i),   (1 if n - c < k)

Problems with n < k are left out of that k's aggregate and counted. The aggregate is the mean
over problems, with a percentile bootstrap CI (1,000 resamples of `item_id` clusters, seed
recorded). Beside the headline ("all" tests) the report breaks down "public" tests only and
"public_private" (the paper's choice).
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from mosaic.errors import MosaicError

KS = (1, 2, 4, 8, 16)
VIEWS = {"all": {"public", "private", "generated"}, "public": {"public"}, "public_private": {"public", "private"}}
_SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for c passing out of n samples (needs 0 <= c <= n and 1 <= k <= n)."""
    if not (0 <= c <= n and 1 <= k <= n):
        raise ValueError(f"pass@k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    prod = 1.0
    for i in range(n - c + 1, n + 1):
        prod *= 1.0 - k / i
    return 1.0 - prod


def cluster_bootstrap(values: Sequence[float], clusters: Sequence[str], resamples: int = 1000,
                      seed: int = 0) -> tuple[float | None, float | None]:
    """95% percentile CI of the mean of `values` over item clusters (evaluator.stats.estimate);
    (None, None) with fewer than two clusters."""
    import numpy as np

    from evaluator.stats import estimate, mean_of_first

    if not len(values):
        return None, None
    est = estimate(np.asarray(values, dtype=float), list(clusters), mean_of_first, np.random.default_rng(seed),
                   resamples)
    return est.ci95 if est.ci95 else (None, None)


@dataclass
class PassKOptions:
    language: str = "python"            # language of unfenced code
    time_scale: float | None = None     # None: this machine's one-off time-limit calibration (cached)
    recalibrate: bool = False           # measure the time scale again instead of using the cached one
    default_time_s: float = 2.0         # for rows without tests.time_limit_s
    default_memory_mb: float = 256.0
    bootstrap: int = 1000
    seed: int = 0
    use_bwrap: bool = True
    require_isolation: bool = False
    exact_integers: bool = False
    progress: Callable[[int, int], None] | None = None


@dataclass
class PassKReport:
    ks: list[int]
    problems: list[dict]
    samples: list[dict]
    aggregate: dict
    isolation: dict
    time_scale: dict
    counts: dict
    timing: dict
    settings: dict = field(default_factory=dict)

    def headline(self) -> dict[str, float | None]:
        return {name: v["value"] for name, v in self.aggregate["all"].items()}

    def to_dict(self) -> dict:
        return {"metric": "pass@k", **asdict(self)}


def _tests_of(row: Mapping, index: int):
    from evaluator.jobs import Test, ordered

    tests = row.get("tests") or {}
    inputs, outputs = tests.get("input") or [], tests.get("output") or []
    kinds = tests.get("kind") or ["public"] * len(inputs)
    where = f"row {index} (id {row.get('id')!r})"
    if not inputs:
        return None
    if not (len(inputs) == len(outputs) == len(kinds)):
        raise MosaicError(f"{where}: field tests: input/output/kind lengths differ "
                          f"({len(inputs)}/{len(outputs)}/{len(kinds)})")
    for name in ("input_file", "output_file"):
        value = tests.get(name)
        if value and (not _SAFE_NAME.fullmatch(value) or value in (".", "..")):
            raise MosaicError(f"{where}: field tests.{name}: {value!r} is not a plain file name")
    return ordered([Test(str(i).encode("utf-8"), str(o), str(k)) for i, o, k in zip(inputs, outputs, kinds)])


def _check_samples(samples: Sequence[Mapping], ids: Mapping[str, int], source: str | None = None) -> list[dict]:
    out, seen = [], {}
    for pos, s in enumerate(samples):
        index = s.get("index", pos) if isinstance(s, Mapping) else pos
        where = f"{source}:{index + 1}" if source else f"sample {index}"
        if not isinstance(s, Mapping):
            raise MosaicError(f"{where}: expected an object with 'id' and 'completion'")
        if not isinstance(s.get("id"), str):
            raise MosaicError(f"{where}: field 'id' must be a string (a dataset row id)")
        if s["id"] not in ids:
            raise MosaicError(f"{where}: field 'id': {s['id']!r} is not a row of the dataset")
        if not isinstance(s.get("completion"), str):
            raise MosaicError(f"{where}: field 'completion' must be a string")
        if s.get("sample_index") is not None:  # a repeated sample would count twice in n and c
            first = seen.setdefault((s["id"], s["sample_index"]), index)
            if first != index:
                lines = f"{source}: lines {first + 1} and {index + 1}" if source else f"samples {first} and {index}"
                raise MosaicError(f"{lines}: row {s['id']!r} has sample_index {s['sample_index']} twice; each "
                                  "(id, sample_index) may occur once")
        out.append({"id": s["id"], "index": index, "completion": s["completion"],
                    **({"sample_index": s["sample_index"]} if "sample_index" in s else {})})
    return out


def score_samples(rows: Sequence[Mapping], samples: Sequence[Mapping], ks: Sequence[int] = KS,
                  workers: int | None = None, options: PassKOptions | None = None, sandbox=None,
                  source: str | None = None) -> PassKReport:
    """Run every sample against its row's tests in the sandbox and estimate pass@k.

    `rows`: dataset rows (common schema; rows without tests are skipped and counted);
    `samples`: {"id": row id, "completion": model output[, "index"]}, several per id allowed;
    `sandbox`: an open `evaluator.sandbox.Sandbox` to reuse (else one is opened and closed);
    `source`: the samples file they were read from (errors then name it and the line, `index` + 1).
    An (id, sample_index) pair that occurs twice is an error."""
    from evaluator.extract import extract_code
    from evaluator.jobs import Job, JobResult
    from evaluator.sandbox import Limits, Sandbox
    from evaluator.timescale import time_scale

    opts = options or PassKOptions()
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise MosaicError(f"k values must be positive integers, got {ks}")
    ids = {}
    for i, row in enumerate(rows):
        ids.setdefault(row.get("id"), i)
    checked = _check_samples(samples, ids, source)
    started = time.perf_counter()
    own = sandbox is None
    sandbox = sandbox or Sandbox(workers, use_bwrap=opts.use_bwrap, require_isolation=opts.require_isolation)
    try:
        cal = time_scale(sandbox, override=opts.time_scale, refresh=opts.recalibrate)
        tests_by_row, limits_by_row = {}, {}
        for rid in {s["id"] for s in checked}:
            row = rows[ids[rid]]
            tests_by_row[rid] = _tests_of(row, ids[rid])
            t = row.get("tests") or {}
            limits_by_row[rid] = Limits(time_s=float(t.get("time_limit_s") or opts.default_time_s) * cal.factor,
                                        memory_mb=int(t.get("memory_limit_mb") or opts.default_memory_mb))
        jobs, job_of, extracted = [], {}, []
        for s in checked:
            ex = extract_code(s["completion"], opts.language)
            extracted.append(ex)
            if ex.code is None or tests_by_row[s["id"]] is None:
                continue
            key = (s["id"], ex.language, ex.code)
            if key not in job_of:
                t = (rows[ids[s["id"]]].get("tests") or {})
                job_of[key] = len(jobs)
                jobs.append(Job(ex.language, ex.code, tests_by_row[s["id"]], limits_by_row[s["id"]],
                                t.get("input_file") or None, t.get("output_file") or None,
                                exact_integers=opts.exact_integers))
        results = sandbox.run(jobs, progress=opts.progress)
        elapsed = time.perf_counter() - started
    finally:
        if own:
            sandbox.close()

    sample_rows, per_row = [], defaultdict(list)
    for s, ex in zip(checked, extracted):
        if tests_by_row[s["id"]] is None:
            continue
        if ex.code is None:
            res = JobResult("no_code", ex.reason, ex.language or opts.language)
        else:
            res = results[job_of[(s["id"], ex.language, ex.code)]]
        entry = {"id": s["id"], "index": s["index"], "passed": res.passed, "status": res.status,
                 "reason": res.reason, "language": res.language,
                 "passed_public": res.passed_kinds(VIEWS["public"]),
                 "passed_public_private": res.passed_kinds(VIEWS["public_private"]),
                 "tests_run": res.tests_run, "max_cpu_s": res.max_cpu_s}
        if "sample_index" in s:
            entry["sample_index"] = s["sample_index"]
        sample_rows.append(entry)
        per_row[s["id"]].append(entry)

    problems = []
    for rid in sorted(per_row, key=lambda r: ids[r]):
        row, entries, tests = rows[ids[rid]], per_row[rid], tests_by_row[rid]
        kinds = Counter(t.kind for t in tests)
        n = len(entries)
        c = {"all": sum(e["passed"] for e in entries), "public": sum(e["passed_public"] for e in entries),
             "public_private": sum(e["passed_public_private"] for e in entries)}
        has = {"all": True, "public": kinds["public"] > 0, "public_private": kinds["public"] + kinds["private"] > 0}
        problems.append({
            "id": rid, "item_id": row.get("item_id") or rid, "n": n, "c": c["all"],
            "c_public": c["public"], "c_public_private": c["public_private"],
            "pass@k": {f"pass@{k}": pass_at_k(n, c["all"], k) if n >= k else None for k in ks},
            "views": {v: {f"pass@{k}": pass_at_k(n, c[v], k) if n >= k and has[v] else None for k in ks}
                      for v in VIEWS},
            "applicable": has, "tests": dict(kinds), "time_limit_s": round(limits_by_row[rid].time_s, 4),
            "memory_limit_mb": limits_by_row[rid].memory_mb,
            "statuses": dict(Counter(e["status"] for e in entries)),
        })

    aggregate = {}
    for view in VIEWS:
        aggregate[view] = {}
        for k in ks:
            vals = [(p["views"][view][f"pass@{k}"], p["item_id"]) for p in problems
                    if p["views"][view][f"pass@{k}"] is not None]
            applicable = [p for p in problems if p["applicable"][view]]
            value = sum(v for v, _ in vals) / len(vals) if vals else None
            lo, hi = cluster_bootstrap([v for v, _ in vals], [c for _, c in vals], opts.bootstrap, opts.seed)
            aggregate[view][f"pass@{k}"] = {"value": value, "ci_low": lo, "ci_high": hi, "n_problems": len(vals),
                                            "left_out_n_lt_k": len(applicable) - len(vals)}
    executions = sum(r.tests_run for r in results)
    counts = {"rows": len(rows), "samples": len(checked), "scored_samples": len(sample_rows),
              "problems": len(problems), "unique_programs": len(jobs),
              "samples_for_rows_without_tests": len(checked) - len(sample_rows),
              "rows_with_tests_without_samples": sum(1 for r in rows if r.get("id") not in per_row
                                                     and ((r.get("tests") or {}).get("input") or [])),
              "statuses": dict(Counter(e["status"] for e in sample_rows))}
    timing = {"elapsed_s": round(elapsed, 3), "executions": executions, "workers": sandbox.workers,
              "executions_per_s": round(executions / elapsed, 2) if elapsed > 0 else None}
    settings = {"language": opts.language, "default_time_s": opts.default_time_s,
                "default_memory_mb": opts.default_memory_mb, "exact_integers": opts.exact_integers,
                "float_tolerance": 1e-6, "bootstrap": {"resamples": opts.bootstrap, "seed": opts.seed,
                                                       "unit": "item_id", "interval": "95% percentile"}}
    return PassKReport(ks, problems, sample_rows, aggregate, sandbox.isolation.to_dict(), cal.to_dict(),
                       counts, timing, settings)
