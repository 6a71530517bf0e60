"""Training throughput: our trainer (`mosaic train`) vs a plain LoRA loop, same examples, same run.

Both contenders train LoRA r 16 (alpha 32) on all seven projections of the same base model with
AdamW, on the same examples in the same order: MOSAIC-mini train split (or --data), every
response of every prompt, formatted as `mosaic eval` scores them (chat template, completion =
response + end-of-turn token), cut to --seq-len tokens, --batch-size examples per optimizer step,
the step order of our trainer's seeded plan. The loss is the completion-only NLL for both.
With --ours-batch-sizes, ours also runs at other examples per step against the same plain run
(bigger steps amortise the per-step overhead that bounds a small model on a GPU); those runs see
other batches, so only a run at --batch-size is held to plain's losses.

- plain: the loop people write first. Each batch is padded to --seq-len (batch x seq-len slots,
  e.g. 16 x 512) with an attention mask, `model(input_ids, attention_mask, labels)` (HF's loss,
  full-vocabulary logits at every position), `loss.backward()`, `torch.optim.AdamW` (default
  implementation), base weights in bf16 on CUDA without autocast, fp32 on CPU. Same lr, cosine
  schedule and gradient clipping as ours, so the two loss curves must agree.
- ours: `baselines.trainer.train` itself (method mrt, K = all, the same batch): sequences packed
  into rows of --pack-length tokens with position ids restarting per sequence (no attention across
  sequences, no padding compute), logits only at completion positions, bf16 autocast and fused
  AdamW on CUDA; with --compile, each of its decoder layers torch.compiled.

Each contender runs in its own child process (so peak memory is its own: CUDA max allocated, or
peak RSS on CPU). tokens/s = real (non-pad) tokens of the timed steps / their wall time; the
first --warmup steps are not timed. The first and last losses must agree (same weights, same
examples, same token-weighted mean, same updates; fp32 on CPU to 1e-4 relative, 2e-2 in bf16)
or the script exits 1.

    .venv/bin/python benchmarks/train_throughput.py                           # default model, 16 x 512
    .venv/bin/python benchmarks/train_throughput.py --model /tmp/tiny --steps 6 --batch-size 4 --seq-len 128
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root, not benchmarks/


def _config(args: argparse.Namespace, out: str, role: str = "ours"):
    from baselines.config import TrainConfig

    batch = args.batch_size if role == "plain" or not args.ours_batch else args.ours_batch
    return TrainConfig(method="mrt", data=args.data, config=args.config, split="train", model=args.model, out=out,
                       max_steps=args.steps, batch_size=batch, grad_accum=1, max_length=args.seq_len,
                       pack_length=max(args.pack_length, args.seq_len), lr=1.2e-4, warmup_ratio=0.0,
                       lora_dropout=0.0, seed=args.seed, progress=False, device=args.device,
                       compile=args.compile and role == "ours").check()


def _peak_mb(device: str) -> float:
    import resource

    import torch

    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def run_ours(args: argparse.Namespace) -> dict:
    from baselines.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        card = train(_config(args, tmp)).card
    curve = card["loss_curve"]
    timed = curve[args.warmup:]
    t0 = curve[args.warmup - 1]["elapsed_s"] if args.warmup else 0.0
    device = "cuda" if card["runtime"]["device"].startswith("cuda") else "cpu"
    return {"tokens": sum(e["tokens"] for e in timed), "seconds": curve[-1]["elapsed_s"] - t0,
            "slots": None, "padding": card["throughput"]["padding_fraction"], "peak_mb": _peak_mb(device),
            "first_loss": curve[0]["loss"], "last_loss": curve[-1]["loss"], "device": device,
            "logits": card["runtime"]["logits"]}


def run_plain(args: argparse.Namespace) -> dict:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, get_scheduler

    from baselines.data import build, check_rows, load_rows, select
    from baselines.model import inspect_model
    from baselines.packing import step_plan
    from mosaic.formatting import detect_format

    cfg = _config(args, "unused", "plain")
    spec = inspect_model(cfg)
    rows, counts = check_rows(load_rows(cfg), cfg)
    ts = build(rows, select(rows, cfg), spec.tokenizer, detect_format(spec.tokenizer), cfg, counts)
    cuda = torch.cuda.is_available() and args.device != "cpu"
    device = "cuda" if cuda else "cpu"
    torch.manual_seed(cfg.seed)
    base = AutoModelForCausalLM.from_pretrained(spec.source, dtype=torch.bfloat16 if cuda else torch.float32)
    model = get_peft_model(base, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0,
                                            target_modules=cfg.targets, task_type="CAUSAL_LM")).to(device)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = get_scheduler(cfg.lr_scheduler, opt, num_warmup_steps=0, num_training_steps=cfg.max_steps)
    pad = spec.tokenizer.pad_token_id
    plan = step_plan(len(ts.examples), cfg.max_steps, cfg.batch_size, cfg.seed)
    losses, tokens, slots, t0 = [], 0, 0, time.perf_counter()
    for step, idx in enumerate(plan):
        if step == args.warmup:
            if cuda:
                torch.cuda.synchronize()
            t0, tokens, slots = time.perf_counter(), 0, 0
        ids = torch.full((len(idx), cfg.max_length), pad, dtype=torch.long)
        labels = torch.full_like(ids, -100)
        mask = torch.zeros_like(ids)
        for r, i in enumerate(idx):
            ex = ts.examples[i]
            seq = list(ex.prompt_ids) + list(ex.completion_ids)
            ids[r, :len(seq)] = torch.tensor(seq)
            labels[r, len(ex.prompt_ids):len(seq)] = torch.tensor(ex.completion_ids)
            mask[r, :len(seq)] = 1
            tokens += len(seq)
        slots += ids.numel()
        loss = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device)).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    if cuda:
        torch.cuda.synchronize()
    return {"tokens": tokens, "seconds": time.perf_counter() - t0, "slots": slots,
            "padding": 1 - tokens / slots, "peak_mb": _peak_mb(device), "first_loss": losses[0],
            "last_loss": losses[-1], "device": device}


def _child(args: argparse.Namespace, role: str, ours_batch: int | None = None) -> dict:
    flags = [f"--{k.replace('_', '-')}" + ("" if isinstance(v, bool) else f"={v}") for k, v in vars(args).items()
             if k not in ("role", "ours_batch", "ours_batch_sizes") and v is not False]
    cmd = [sys.executable, __file__, "--role", role] + flags + ([f"--ours-batch={ours_batch}"] if ours_batch else [])
    env = dict(os.environ, TQDM_DISABLE="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.exit(f"{role} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    from mosaic.benchmark import DEFAULT_DATA

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="model folder, Hub id, or the default SmolLM2-135M-Instruct")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="dataset folder (default MOSAIC-mini)")
    p.add_argument("--config", default="mosaic", help="data config")
    p.add_argument("--steps", type=int, default=20, help="optimizer steps per contender (default 20)")
    p.add_argument("--warmup", type=int, default=2, help="leading steps not timed (default 2)")
    p.add_argument("--batch-size", type=int, default=16, help="examples per optimizer step (default 16)")
    p.add_argument("--seq-len", type=int, default=512, help="tokens per example; the plain loop pads to it (512)")
    p.add_argument("--pack-length", type=int, default=2048, help="our packed row length (default 2048)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument("--compile", action="store_true",
                   help="ours with `mosaic train --compile` (torch.compile of each decoder layer); raise --warmup "
                        "past the compiling steps")
    p.add_argument("--ours-batch-sizes", default=None, metavar="N,N",
                   help="also run ours at these examples per step (e.g. 16,64; bigger steps are one of the levers): "
                        "each is timed against the same plain run at --batch-size; only runs at --batch-size make "
                        "the same updates as plain, so only theirs are loss-checked")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--role", choices=["both", "plain", "ours"], default="both", help=argparse.SUPPRESS)
    p.add_argument("--ours-batch", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if not 0 <= args.warmup < args.steps:
        p.error("need 0 <= --warmup < --steps")
    if args.role != "both":
        print(json.dumps((run_plain if args.role == "plain" else run_ours)(args)))
        return 0
    try:
        sizes = sorted({int(x) for x in args.ours_batch_sizes.split(",")}) if args.ours_batch_sizes else \
            [args.batch_size]
    except ValueError:
        p.error(f"--ours-batch-sizes {args.ours_batch_sizes!r}: give positive integers separated by commas")
    if min(sizes) < 1:
        p.error("--ours-batch-sizes: every size must be >= 1")
    plain = _child(args, "plain")
    results = [("plain", args.batch_size, plain)] + [("ours", b, _child(args, "ours", b)) for b in sizes]
    print(f"\ntraining throughput on {results[-1][2]['device']}: model {args.model}, LoRA r 16 on 7 projections, "
          f"{args.seq_len} tokens per example at most, {args.steps} steps ({args.warmup} untimed)"
          + (", ours compiled" if args.compile else "") + f"; ours' scored logits: {results[-1][2]['logits']}")
    print(f"{'contender':<10} {'batch':>5} {'tokens/s':>10} {'slot tok/s':>11} {'padding':>8} {'peak MB':>9} "
          f"{'loss@1':>9} {'loss@end':>9} {'vs plain':>8}")
    plain_rate = plain["tokens"] / plain["seconds"]
    for name, batch, r in results:
        slot = f"{r['slots'] / r['seconds']:.0f}" if r["slots"] else "-"
        rate = r["tokens"] / r["seconds"]
        print(f"{name:<10} {batch:>5} {rate:>10.0f} {slot:>11} {r['padding']:>8.1%} {r['peak_mb']:>9.0f} "
              f"{r['first_loss']:>9.4f} {r['last_loss']:>9.4f} {rate / plain_rate:>7.2f}x")
    best = max(results[1:], key=lambda x: x[2]["tokens"] / x[2]["seconds"])
    print(f"speed-up {best[2]['tokens'] / best[2]['seconds'] / plain_rate:.2f}x (ours at batch {best[1]} vs plain at "
          f"batch {args.batch_size}), peak memory {best[2]['peak_mb'] / plain['peak_mb']:.2f}x of plain")
    tol = 1e-4 if plain["device"] == "cpu" else 2e-2
    for _, batch, ours in results[1:]:
        if batch != args.batch_size:
            continue
        if plain["tokens"] != ours["tokens"]:
            print(f"FAIL: the contenders saw different tokens ({plain['tokens']} vs {ours['tokens']})")
            return 1
        for key in ("first_loss", "last_loss"):
            if abs(plain[key] - ours[key]) > tol * abs(plain[key]):
                print(f"FAIL: the {key.replace('_', ' ')}es differ beyond {tol} relative")
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
