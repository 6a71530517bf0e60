"""The K sweep of the paper (matched optimizer steps): train one adapter per K, evaluate each, one table.

For every K in --ks: `mosaic train` (K = 1: method srt, else mrt) with the same --selector, seed
and --max-steps, then `mosaic eval --adapter` on the test split; with --base the untrained base
model is evaluated too. Each stage runs as its own `mosaic` process and reads only the previous
stage's artefacts (adapter folder + training_card.json, results JSON), as a user would.

The table: reference loss (token-weighted NLL per scored token, nats), coverage@k and
diversity@k at the largest k the preset samples (each with its 95% cluster-bootstrap CI and n),
and the training throughput the card recorded (real tokens / wall s of the loop; peak CUDA
memory in MB when on a GPU). Everything is written under --out-dir: one adapter folder and one
results file per K, and `k_sweep.json` with the table's numbers.

--stage train|eval splits the sweep in two (e.g. when the evaluation needs files that arrive
later): `train` trains every K and records the training wall times in `train_times.json`; `eval`
evaluates the adapters already under --out-dir (each must hold its training_card.json) and prints
the table. The default, `all`, does both, one K after the other.

    .venv/bin/python benchmarks/k_sweep.py [--ks 1,2,4] [--selector rkon] [--max-steps 50] [--base]
        [--model M] [--data D] [--preset quick] [--out-dir runs/k-sweep]
        [--train-args "--batch-size 16"] [--eval-args "--max-items 0"]
GPU example (one H100, about 10 minutes with the default model):
    .venv/bin/python benchmarks/k_sweep.py --base --eval-args "--batch-size 64"
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root, not benchmarks/


def _mosaic(args: list[str]) -> float:
    """Run one `mosaic` command in a child process; wall seconds. Exits on failure."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "mosaic.cli", *args])
    if proc.returncode:
        sys.exit(f"k_sweep: `mosaic {shlex.join(args)}` failed with exit code {proc.returncode}")
    return time.perf_counter() - t0


def _largest_k(metrics: dict, name: str) -> str:
    ks = [int(key.split("@")[1]) for key in metrics if key.startswith(f"mosaic/{name}@")]
    if not ks:
        sys.exit(f"k_sweep: the results have no mosaic/{name}@k metric (is the `mosaic` config evaluated?)")
    return f"mosaic/{name}@{max(ks)}"


def _cell(metric: dict) -> str:
    ci = metric.get("ci95")
    return f"{metric['value']:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{metric['value']:.4f} [no CI]"


def row_of(label: str, k: int | None, results_path: Path, card_path: Path | None, times: dict) -> dict:
    res = json.loads(results_path.read_text())
    m = res["metrics"]
    cov, div = _largest_k(m, "coverage"), _largest_k(m, "diversity")
    row = {"run": label, "k": k, "results": str(results_path), "n": m["mosaic/ref_loss"]["n"],
           "ref_loss": m["mosaic/ref_loss"], "coverage_key": cov, "coverage": m[cov], "diversity_key": div,
           "diversity": m[div], "train_s": times.get("train"), "eval_s": times.get("eval")}
    if card_path is not None:
        card = json.loads(card_path.read_text())
        row.update(steps=card["optimisation"]["steps"], effective_batch=card["optimisation"]["effective_batch"],
                   train_tokens_per_s=card["throughput"]["tokens_per_s"],
                   peak_memory_mb=card["throughput"]["peak_memory_mb"], final_loss=card["loss_curve"][-1]["loss"])
    return row


def print_table(rows: list[dict]) -> None:
    cov, div = rows[0]["coverage_key"], rows[0]["diversity_key"]
    head = f"{'run':<10}{'steps':>6}{'train tok/s':>13}{'peak MB':>9}  {'ref_loss [95% CI]':<28}" \
           f"{cov + ' [95% CI]':<30}{div + ' [95% CI]':<30}{'n':>4}"
    print(head)
    print("-" * len(head))
    for r in rows:
        tps = f"{r['train_tokens_per_s']:.0f}" if r.get("train_tokens_per_s") else "-"
        peak = f"{r['peak_memory_mb']:.0f}" if r.get("peak_memory_mb") else "-"
        print(f"{r['run']:<10}{r.get('steps', '-')!s:>6}{tps:>13}{peak:>9}  {_cell(r['ref_loss']):<28}"
              f"{_cell(r['coverage']):<30}{_cell(r['diversity']):<30}{r['n']:>4}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ks", default="1,2,4", help="comma-separated K values (default 1,2,4)")
    ap.add_argument("--selector", default="rkon", help="response selector for every K (default rkon)")
    ap.add_argument("--max-steps", type=int, default=50, help="optimizer steps, the same for every K (default 50)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default=None, help="base model (default: mosaic's default small model)")
    ap.add_argument("--data", default=None, help="dataset folder or Hub id (default: the shipped MOSAIC-mini)")
    ap.add_argument("--preset", default="quick", help="evaluation preset (default quick)")
    ap.add_argument("--base", action="store_true", help="also evaluate the base model without an adapter")
    ap.add_argument("--out-dir", default="runs/k-sweep", help="adapters, results files and k_sweep.json")
    ap.add_argument("--train-args", default="", help="extra `mosaic train` flags, one quoted string")
    ap.add_argument("--eval-args", default="", help="extra `mosaic eval` flags, one quoted string")
    ap.add_argument("--stage", choices=["all", "train", "eval"], default="all",
                    help="all (default), train only, or eval only of adapters trained earlier into --out-dir")
    args = ap.parse_args(argv)

    ks = [int(k) for k in args.ks.split(",")]
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    common = [*(["--model", args.model] if args.model else []), *(["--data", args.data] if args.data else [])]
    evals = ["--preset", args.preset, "--seed", str(args.seed), *shlex.split(args.eval_args)]
    train_times_path = out / "train_times.json"
    train_times = json.loads(train_times_path.read_text()) if train_times_path.exists() else {}
    if args.stage == "eval":
        missing = [str(out / f"k{k}" / "training_card.json") for k in ks
                   if not (out / f"k{k}" / "training_card.json").exists()]
        if missing:
            sys.exit(f"k_sweep: --stage eval needs adapters trained by --stage train; missing {', '.join(missing)}")
    rows = []
    if args.base and args.stage != "train":
        path = out / "base.json"
        t = _mosaic(["eval", *common, *evals, "--out", str(path)])
        rows.append(row_of("base", None, path, None, {"eval": t}))
    for k in ks:
        adapter, path = out / f"k{k}", out / f"k{k}.json"
        method = "srt" if k == 1 else "mrt"
        if args.stage != "eval":
            train_times[str(k)] = _mosaic(["train", "--method", method, "--k", str(k), "--selector", args.selector,
                                           "--max-steps", str(args.max_steps), "--seed", str(args.seed), *common,
                                           "--out", str(adapter), "--overwrite", *shlex.split(args.train_args)])
            train_times_path.write_text(json.dumps(train_times, indent=2))
        if args.stage != "train":
            times = {"train": train_times.get(str(k)),
                     "eval": _mosaic(["eval", *common, "--adapter", str(adapter), *evals, "--out", str(path)])}
            rows.append(row_of(f"K={k}", k, path, adapter / "training_card.json", times))
    if args.stage == "train":
        print(f"trained K = {', '.join(map(str, ks))} into {out} (train wall s: {train_times}); "
              "evaluate them with --stage eval")
        return 0
    print(f"\nK sweep: selector {args.selector}, {args.max_steps} optimizer steps per K, seed {args.seed}, "
          f"preset {args.preset}")
    print_table(rows)
    (out / "k_sweep.json").write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out / 'k_sweep.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
