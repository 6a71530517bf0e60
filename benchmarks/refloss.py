"""Reference-loss scoring speed: ours vs lm-evaluation-harness's HFLM vs a plain loop, same tokens.

Inputs: the first --prompts prompts of one split of a MOSAIC dataset folder (default the
shipped MOSAIC-mini, else --data), each with all its references. A pair is (prompt, reference):
context = `PromptFormat.prompt_text` (chat template applied), continuation = the reference
text followed by the end-of-turn token text; the scored tokens are `PromptFormat.response_ids`.

Contenders, all on the same weights, dtype, device and thread count, run in one process:
- ours: `evaluator.scoring.score_all` (what `mosaic eval` runs on CPU: the prompts' common
  prefix, e.g. the chat template's system turn, is encoded once; each prompt is encoded once, a
  batch of prompts per pass, and its KV cache shared by its references, which are scored a batch
  per pass sorted by length across those prompts; the output head runs at scored positions only,
  one vocabulary block at a time), for each --batch-sizes value; and
  `evaluator.scoring.score_pairs_batched` (whole prompt + reference sequences from many prompts,
  longest first, left-padded, logits at the scored columns only: `mosaic eval --scoring batched`,
  the default on CUDA), for each --batched-sizes value;
- lm_eval: `HFLM(pretrained=<model folder>, batch_size=N)`, timed on `HFLM._loglikelihood_tokens`
  with the pairs pre-tokenised to exactly our ids. That is the method `HFLM.loglikelihood`
  delegates to after tokenising; the public call is not timed because its `_encode_pair`
  moves the context's trailing "\\n" (the template ends "assistant\\n") into the continuation
  and would score one more token per pair. The script checks that lm_eval's own tokenisation
  of the same texts gives the same full sequence (only the split differs);
- plain loop: one forward over prompt + reference per pair, batch 1
  (`evaluator.scoring.score_full_sequence`).

Checks: the plain loop's summed NLL per pair is the reference. Ours, and lm_eval re-run once
untimed with `softmax_dtype=float64`, must agree with it or the script exits 1: per pair within
1e-4 + 1e-6 x scored tokens nats in float32 (two fp32 forward paths drift about 1e-6 nats per
token: up to 2.2e-4 on a 675-token MOSAIC-mini pair, the same before and after the scoring
changes; on an H100, 1.9e-6 to 2.5e-6 per token between batched and batch-1 passes, hence
1e-4 + 5e-6 x scored tokens for float32 on CUDA), 0.05 x scored tokens in bf16, or a flat
--tol. The count over a flat 1e-4 is printed.
lm_eval's timed runs use its default float32 log-softmax; their difference is printed, not
checked. tokens/s = sum over pairs of (prompt tokens + scored reference tokens), i.e. the tokens
the plain loop feeds the model, divided by the best wall time of --repeats runs, contenders
taking turns in each round (tokenisation excluded for everyone; a warm-up on the first 2 prompts
is excluded). On CUDA the model runs in bf16 with synchronisation around every timing.

    .venv/bin/python benchmarks/refloss.py [--device cpu|cuda] [--prompts 16] [--batch-sizes 8]
        [--batched-sizes 16] [--lm-eval-batch-sizes 1,8] [--data FOLDER] [--split test] [--repeats 1] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path[0] = str(Path(__file__).resolve().parents[1])  # the repo root: mosaic, evaluator, benchmarks import

from benchmarks.timing import timed_rounds  # noqa: E402


def load_prompts(data: str, split: str, n: int, tok, fmt) -> list[tuple[str, list[int], list[str], list[list[int]]]]:
    """[(prompt text, prompt ids, continuation texts, scored ids per reference)] for the first n prompts."""
    from mosaic.hub import load_split

    eot = tok.convert_ids_to_tokens(fmt.end_token_id)
    rows = [r for r in load_split(data, "mosaic", split) if r["responses"]][:n]
    return [(fmt.prompt_text(tok, r["prompt"]), fmt.prompt_ids(tok, r["prompt"]),
             [x["text"] + eot for x in r["responses"]],
             [fmt.response_ids(tok, r["prompt"], x["text"]) for x in r["responses"]]) for r in rows]


def run_ours(model, prompts, batch_size: int) -> list[float]:
    from evaluator.scoring import score_all

    scored = score_all(model, [(p, refs) for _, p, _, refs in prompts], batch_size)
    return [s.total for refs in scored for s in refs]


def run_ours_batched(model, prompts, batch_size: int) -> list[float]:
    """Every (prompt, reference) pair in prompt order, `batch_size` whole sequences per pass."""
    from evaluator.scoring import score_pairs_batched

    return [s.total for s in score_pairs_batched(model, pairs_of(prompts), batch_size)]


def pairs_of(prompts) -> list[tuple[list[int], list[int]]]:
    return [(p, r) for _, p, _, refs in prompts for r in refs]


def run_plain(model, prompts) -> list[float]:
    from evaluator.scoring import score_full_sequence

    return [score_full_sequence(model, p, r).total for _, p, _, refs in prompts for r in refs]


def run_lm_eval(lm, prompts) -> list[float]:
    reqs = [((text, cont), p, r) for text, p, conts, refs in prompts for cont, r in zip(conts, refs)]
    return [-ll for ll, _ in lm._loglikelihood_tokens(reqs, disable_tqdm=True)]


def check_lm_eval_tokens(lm, prompts) -> str:
    """lm_eval's own `_encode_pair` on our texts must give the same full sequence as ours."""
    moved = 0
    for text, p, conts, refs in prompts:
        for cont, r in zip(conts, refs):
            ctx_enc, cont_enc = lm._encode_pair(text, cont)
            if ctx_enc + cont_enc != p + r:
                sys.exit(f"FAIL: lm_eval tokenises a pair differently from ours: {text[-40:]!r} + {cont[:40]!r}")
            moved += len(cont_enc) - len(r)
    return f"lm_eval's _encode_pair gives the same full sequence for every pair; its split puts {moved} " \
           f"more token(s) in the continuation (the context's trailing newline), so it is timed on our split"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    ap.add_argument("--model", default="default", help="model folder (default: the converted SmolLM2-135M)")
    ap.add_argument("--data", default=None, help="dataset folder (default: the shipped MOSAIC-mini)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--prompts", type=int, default=16)
    ap.add_argument("--batch-sizes", default="8", help="our batch sizes (references per forward)")
    ap.add_argument("--batched-sizes", default="16",
                    help="batch sizes of our cross-prompt batched path (sequences per forward; '' to skip)")
    ap.add_argument("--lm-eval-batch-sizes", default="1,8")
    ap.add_argument("--repeats", type=int, default=1, help="timed runs per contender; the best counts")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--tol", type=float, default=None,
                    help="flat max |NLL sum diff| per pair (default 1e-4 + 1e-6 x scored tokens in float32, "
                         "0.05 x scored tokens otherwise)")
    ap.add_argument("--no-plain", action="store_true", help="skip the plain loop (NLLs then checked vs lm_eval)")
    args = ap.parse_args(argv)

    import torch

    from evaluator.models import load_model
    from mosaic.benchmark import DEFAULT_DATA
    from mosaic.formatting import detect_format

    if args.threads:
        torch.set_num_threads(args.threads)
    data = args.data or str(DEFAULT_DATA)
    if not Path(data).exists():
        sys.exit(f"{data}: no dataset folder; build one and pass --data, e.g. .venv/bin/mosaic build mosaic "
                 "--from-jsonl builders/mosaic_mini/items --split-fractions train=0.625,validation=0.125,test=0.25 "
                 "--on-error skip --out /tmp/bench-mini")
    dtype = args.dtype or ("bfloat16" if args.device == "cuda" else "float32")
    lm = load_model(args.model, device=args.device, dtype=dtype)
    tok, model = lm.tokenizer, lm.model
    fmt = detect_format(tok)
    prompts = load_prompts(data, args.split, args.prompts, tok, fmt)
    pairs = pairs_of(prompts)
    tokens = sum(len(p) + len(r) for p, r in pairs)
    scored = [len(r) for _, r in pairs]

    from lm_eval import __version__ as lm_eval_version
    from lm_eval.models.huggingface import HFLM

    peer = HFLM(pretrained=lm.path, batch_size=1, device=args.device, dtype=dtype)
    token_note = check_lm_eval_tokens(peer, prompts)

    def with_batch(bs):
        peer.batch_size_per_gpu = bs
        return run_lm_eval(peer, prompts)

    ours_bs = sorted({int(x) for x in args.batch_sizes.split(",")})
    peer_bs = sorted({int(x) for x in args.lm_eval_batch_sizes.split(",")})
    contenders = [(f"ours: score_all (shared prompt), batch {bs}", lambda bs=bs: run_ours(model, prompts, bs))
                  for bs in ours_bs]
    batched_bs = sorted({int(x) for x in args.batched_sizes.split(",") if x.strip()})
    contenders += [(f"ours: score_pairs_batched, batch {bs}", lambda bs=bs: run_ours_batched(model, prompts, bs))
                   for bs in batched_bs]
    contenders += [(f"lm_eval {lm_eval_version} HFLM loglikelihood, batch {bs}", lambda bs=bs: with_batch(bs))
                   for bs in peer_bs]
    if not args.no_plain:
        contenders.append(("plain loop: one forward per pair, batch 1", lambda: run_plain(model, prompts)))

    warm = prompts[:2]
    run_ours(model, warm, ours_bs[-1])
    if batched_bs:
        run_ours_batched(model, warm, batched_bs[-1])
    run_plain(model, warm)
    peer.batch_size_per_gpu = peer_bs[-1]
    run_lm_eval(peer, warm)

    load_before = os.getloadavg()[0]
    timings = timed_rounds([fn for _, fn in contenders], args.device, args.repeats,
                           log=lambda i, secs: print(f"  {contenders[i][0]}: {secs:.2f} s", flush=True))
    results = [(name, nll, secs) for (name, _), (nll, secs) in zip(contenders, timings)]
    load_after = os.getloadavg()[0]
    peer.softmax_dtype, peer.batch_size_per_gpu = torch.float64, peer_bs[-1]
    check = run_lm_eval(peer, prompts)  # untimed: lm_eval's own forward, log-softmax in float64

    ref_name, ref = ("plain loop", results[-1][1]) if not args.no_plain else ("lm_eval float64 check", check)
    tol_per_token = 5e-6 if args.device == "cuda" else 1e-6
    tol = [args.tol if args.tol is not None else (1e-4 + tol_per_token * n if dtype == "float32" else 0.05 * n)
           for n in scored]
    lm_eval_secs = min(s for name, _, s in results if name.startswith("lm_eval"))
    print(f"\nmodel {lm.model_id} ({lm.num_parameters / 1e6:.1f}M params) from {lm.path}; dtype {dtype}; "
          f"device {args.device}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{os.cpu_count()} cores; lm_eval {lm_eval_version}")
    print(f"data {data} split {args.split}: {len(prompts)} prompts, {len(pairs)} pairs, {sum(scored)} scored tokens, "
          f"{tokens} tokens counted (prompt + scored reference tokens per pair); best of {args.repeats} run(s); "
          f"load average {load_before:.2f} -> {load_after:.2f}")
    print(token_note)
    header = f"{'contender':<48} {'seconds':>8} {'tokens/s':>9} {'vs lm_eval':>10} {'max |dNLL|':>11} " \
             f"{'/token':>8} {'>1e-4':>6}  checked"
    print(header)
    print("-" * len(header))
    failed = []
    for name, nll, secs in results + [("lm_eval, log-softmax in float64 (untimed)", check, None)]:
        diffs = [abs(a - b) for a, b in zip(nll, ref)]
        checked = not name.startswith("lm_eval ")
        if checked and (len(nll) != len(ref) or any(d > t for d, t in zip(diffs, tol))):
            failed.append(name)
        timing = f"{secs:>8.2f} {tokens / secs:>9.1f} {lm_eval_secs / secs:>9.2f}x" if secs \
            else f"{'-':>8} {'-':>9} {'-':>10}"
        per_token = max(d / n for d, n in zip(diffs, scored))
        print(f"{name:<48} {timing} {max(diffs):>11.2e} {per_token:>8.1e} {sum(d > 1e-4 for d in diffs):>6}  "
              f"{'yes' if checked else 'no (fp32 log-softmax)'}")
    print(f"max |dNLL|: max over pairs of |summed NLL (nats) - the {ref_name}'s|; /token: the same divided by "
          f"the pair's scored tokens; >1e-4: pairs over a flat 1e-4 of {len(pairs)}; tolerance "
          + (f"{args.tol} per pair" if args.tol is not None else
             f"1e-4 + {tol_per_token:g} x scored tokens per pair"
             if dtype == "float32" else "0.05 x scored tokens per pair"))
    best_ours = min(s for name, _, s in results if name.startswith("ours"))
    print(f"speed-up, our best over lm_eval's best: {lm_eval_secs / best_ours:.2f}x (target >= 1.5x on CPU)")
    if failed:
        print(f"FAIL: summed NLLs disagree beyond the tolerance: {', '.join(failed)}")
        return 1
    print("NLL check passed: every checked contender agrees with the reference on every pair")
    return 0

if __name__ == "__main__":
    sys.exit(main())
