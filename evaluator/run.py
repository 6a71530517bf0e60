"""One evaluation: load the split, run every applicable metric, write the results file."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np

from evaluator.config import EvalConfig
from evaluator.context import EvalContext
from evaluator.metrics import REGISTRY, Metric, get_metric
from evaluator.results import RESULTS_SCHEMA_VERSION, environment, write_results
from evaluator.stats import estimate
from evaluator.variance_diag import diagnose
from mosaic.errors import MosaicError


def _applies(metric: Metric, layout: str, rows: list[dict]) -> bool:
    if metric.applies_to == "responses":
        return layout == "record" and any(r["responses"] for r in rows)
    if metric.applies_to == "tests":
        return layout == "record" and any(r["tests"] is not None for r in rows)
    if metric.applies_to == "mcq":
        return layout == "mcq" and any(r["answer"] is not None for r in rows)
    if metric.applies_to == "population":
        return layout == "mcq" and any(r["population"] is not None for r in rows)
    raise ValueError(f"metric {metric.name}: unknown applies_to {metric.applies_to!r}")


def load_data(cfg: EvalConfig) -> tuple[dict[str, list[dict]], dict[str, str], dict[str, dict]]:
    """rows, layouts and card facts (fingerprint, rows) per config; errors for empty/unknown splits."""
    from mosaic.fingerprint import fingerprint
    from mosaic.hub import check_config_split, load_split, read_manifest
    from mosaic.schema import detect_layout

    manifest = read_manifest(cfg.data)
    names = cfg.configs or sorted(manifest)
    rows, layouts, facts = {}, {}, {}
    for name in names:
        check_config_split(manifest, cfg.data, name, cfg.split)
        ds = load_split(cfg.data, name, cfg.split)
        if len(ds) == 0:
            raise MosaicError(f"{cfg.data}: config {name!r} split {cfg.split!r} is empty: nothing to evaluate")
        rows[name] = ds.to_list()
        layouts[name] = manifest[name].get("layout") or detect_layout(ds.column_names)
        fp = fingerprint(rows[name])
        if manifest[name]["splits"][cfg.split].get("fingerprint") not in (None, fp):
            raise MosaicError(f"{cfg.data}: config {name!r} split {cfg.split!r} content differs from its card's "
                              "fingerprint; rebuild or re-export the folder")
        facts[name] = {"layout": layouts[name], "rows": len(ds), "fingerprint": fp}
        if cfg.max_items is not None and layouts[name] == "record":
            rows[name] = subsample_items(rows[name], cfg.max_items, cfg.seed)
            facts[name]["rows_evaluated"] = len(rows[name])
    return rows, layouts, facts


def subsample_items(rows: list[dict], max_items: int, seed: int) -> list[dict]:
    """Rows of a seeded subset of `max_items` items (by item_id), in their original order."""
    import hashlib

    items = sorted({r["item_id"] for r in rows}, key=lambda i: hashlib.sha256(f"{seed}\x00{i}".encode()).hexdigest())
    keep = set(items[:max_items])
    return [r for r in rows if r["item_id"] in keep]


def select_metrics(cfg: EvalConfig, layouts: dict[str, str], rows: dict[str, list[dict]]) -> list[tuple[str, Metric]]:
    asked = cfg.metrics
    metrics = [get_metric(n) for n in asked] if asked else list(REGISTRY.values())
    plan = []
    for metric in metrics:
        targets = [c for c in rows if _applies(metric, layouts[c], rows[c])]
        if asked and not targets:
            need = {"responses": "reference responses", "tests": "code tests", "mcq": "keyed multiple-choice rows",
                    "population": "population distributions"}[metric.applies_to]
            raise MosaicError(f"metric {metric.name!r} needs {need}, and no evaluated config has them "
                              f"(configs: {', '.join(rows)})")
        if metric.min_samples > cfg.n_samples:
            if asked:
                raise MosaicError(f"metric {metric.name!r} needs --n-samples >= {metric.min_samples}")
            continue
        if cfg.from_generations and "model" in metric.needs:
            if asked:
                raise MosaicError(f"metric {metric.name!r} needs the model; --from-generations recomputes only "
                                  "generation-based metrics")
            continue
        plan += [(c, metric) for c in targets]
    return plan


def evaluate(cfg: EvalConfig, progress: bool = True) -> dict | None:
    """Run the evaluation and write the results file; under `accelerate launch` every process
    scores its shard of items and the main process writes (the others return None)."""
    from evaluator import distributed
    from evaluator.models import load_model

    cfg = cfg.resolved()
    dist = distributed.current()
    rows, layouts, facts = load_data(cfg)
    plan = select_metrics(cfg, layouts, rows)
    order = {c: [r["id"] for r in rs] for c, rs in rows.items()}
    device = dist.device if dist.world > 1 and cfg.device == "auto" else cfg.device
    merged_generations = cfg.generations
    rank_file = f"{cfg.generations.removesuffix('.jsonl')}.rank{{}}-of-{dist.world}.jsonl"
    if dist.world > 1:
        rows = {c: distributed.shard_rows(rs, dist) for c, rs in rows.items()}
        cfg.generations = rank_file.format(dist.rank)
    ctx = EvalContext(cfg=cfg, rows=rows, layouts=layouts, progress=progress and dist.is_main,
                      load_model=lambda: load_model(cfg.model, cfg.adapter, device, revision=cfg.revision))
    gathered = [(config, metric, distributed.merge_scores(dist.gather(metric.per_prompt(ctx, config)),
                                                          order[config]))
                for config, metric in plan]
    if not dist.is_main:
        return None
    if dist.world > 1 and "generations" in ctx.notes and not cfg.from_generations:
        position = {rid: i for ids in order.values() for i, rid in enumerate(ids)}
        distributed.merge_generation_files([rank_file.format(r) for r in range(dist.world)], merged_generations,
                                           position)
        cfg.generations = merged_generations
    rng = np.random.default_rng(cfg.seed)
    metrics: dict[str, dict] = {}
    for config, metric, scores in gathered:
        if metric.details is not None:
            scores.extra = {**(scores.extra or {}), **metric.details(scores.values)}
        with ctx.timer("bootstrap"):
            overall = estimate(scores.values, scores.clusters, metric.aggregate, rng, cfg.bootstrap_resamples)
            per_domain = {}
            for domain in sorted(set(scores.domains)):
                idx = [i for i, d in enumerate(scores.domains) if d == domain]
                per_domain[domain] = estimate(scores.values[idx], [scores.clusters[i] for i in idx],
                                              metric.aggregate, rng, cfg.bootstrap_resamples).as_dict()
        metrics[f"{config}/{metric.name}"] = {
            **overall.as_dict(), "metric": metric.name, "config": config,
            "higher_is_better": metric.higher_is_better, "version": metric.version, "skipped": scores.skipped,
            "per_domain": per_domain, **({"extra": scores.extra} if scores.extra else {}),
        }
    lm = ctx._model
    results = {
        "schema_version": RESULTS_SCHEMA_VERSION,
        "suite": Path(cfg.data).name if Path(cfg.data).exists() else cfg.data,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "model": None if lm is None else {
            "id": lm.model_id, "revision": lm.revision, "weights_hash": lm.weights_hash,
            "num_parameters": lm.num_parameters, "dtype": lm.dtype, "device": lm.device},
        "adapter": None if lm is None else lm.adapter,
        "data": {"source": cfg.data, "split": cfg.split, "configs": facts},
        "config": {**cfg.scoring_dict(), "eval_config_hash": cfg.hash(), "model": cfg.model, "revision": cfg.revision,
                   "adapter": cfg.adapter, "backend": cfg.backend, "batch_size": cfg.batch_size, "scoring": cfg.scoring,
                   "gen_batch_size": cfg.gen_batch_size, "gen_cache": cfg.gen_cache,
                   "from_generations": cfg.from_generations},
        "notes": ctx.notes,
        "metrics": metrics,
        "diagnostics": {"variance": diagnose(metrics, cfg.cost_ratio)},
        "generations_file": cfg.generations if "generations" in ctx.notes else None,
        "processes": dist.world,
        "environment": environment(lm.device if lm else "cpu"),
        "timings_s": {k: round(v, 3) for k, v in ctx.timings.items()},
    }
    write_results(cfg.out, results)
    return results
