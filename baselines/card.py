"""The training card: `training_card.json` next to the adapter, read back by `mosaic eval --adapter`
(evaluator/models.py copies it into the results file).

Fields (card_version 1): method, k, selector (and gamma / kernel when used), pairs, prefer,
spl_alpha, spl_beta (preference methods), seed; data {source, config, split, fingerprint, rows,
prompts, responses, examples, truncated, ...}; model {id, path (the local folder; null for a Hub
model), revision (its Hub commit), weights_hash};
lora {r, alpha, dropout, targets}; optimisation {max_steps, steps, batch_size, grad_accum,
processes, effective_batch, lr, scheduler, warmup_steps, weight_decay, max_grad_norm};
runtime {device, precision, packing, compile, pack_length, max_length, gradient_checkpointing,
logits (how the scored positions' logits were taken: hidden = gathered from the decoder's output,
else the model's own logits_to_keep form)};
loss_curve [{step, loss, lr, tokens, elapsed_s, (pair_accuracy, margin)}] (loss: the step's
objective over its whole effective batch, before the update; tokens: real, unpadded tokens through
the policy's forward; elapsed_s: since the loop started); throughput {wall_s, tokens, tokens_per_s,
padding_fraction, peak_memory_mb (CUDA), reference_passes (SPL/DPO: pairs whose reference
log-probs were computed), profile (with --profile: steps, wall/host/device seconds per step,
kernel launches or operator calls per step, file), out_of_memory (when a step ran out of GPU memory
and was retried in smaller passes: micro_batch_size, out_of_memory_at)}; epochs (examples seen / examples); config
(the full resolved TrainConfig, enough to rerun); environment (package versions); created.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any

from baselines.config import TrainConfig

CARD_NAME = "training_card.json"
CARD_VERSION = 1


def _versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for pkg in ("mosaic-bench", "torch", "transformers", "peft", "accelerate"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


def build_card(cfg: TrainConfig, *, data: dict[str, Any], model: dict[str, Any], processes: int, device: str,
               precision: str, curve: list[dict[str, Any]], throughput: dict[str, Any],
               k: int | None, logits: str | None = None) -> dict[str, Any]:
    from mosaic.selectors import get_selector

    spec = get_selector(cfg.selector)
    selected = k is not None
    steps = len(curve)
    effective = cfg.batch_size * cfg.grad_accum * processes
    return {
        "card_version": CARD_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "method": cfg.method,
        "k": k,
        "selector": spec.name if selected else None,
        "gamma": cfg.gamma if selected and spec.uses_gamma else None,
        "kernel": cfg.kernel if selected and spec.uses_similarity else None,
        "pairs": cfg.pairs if cfg.is_preference else None,
        "prefer": cfg.prefer if cfg.is_preference else None,
        "preferred_labels": cfg.labels if cfg.is_preference and cfg.prefer == "label" else None,
        "spl_alpha": cfg.alpha if cfg.is_preference else None,
        "spl_beta": cfg.spl_beta if cfg.is_preference else None,
        "seed": cfg.seed,
        "data": data,
        "model": model,
        "lora": {"r": cfg.lora_r, "alpha": cfg.lora_alpha, "dropout": cfg.lora_dropout, "targets": cfg.targets},
        "optimisation": {"max_steps": cfg.max_steps, "steps": steps, "batch_size": cfg.batch_size,
                         "grad_accum": cfg.grad_accum, "processes": processes, "effective_batch": effective,
                         "unit": "preference pairs" if cfg.is_preference else "prompt-response examples",
                         "lr": cfg.lr, "scheduler": cfg.lr_scheduler, "warmup_steps": cfg.warmup_steps(),
                         "weight_decay": cfg.weight_decay, "max_grad_norm": cfg.max_grad_norm},
        "runtime": {"device": device, "precision": precision, "packing": cfg.packing, "compile": cfg.compile,
                    "pack_length": cfg.pack_length if cfg.packing else None, "max_length": cfg.max_length,
                    "gradient_checkpointing": cfg.gradient_checkpointing, "logits": logits},
        "epochs": round(steps * effective / data["examples"], 4),
        "loss_curve": curve,
        "throughput": throughput,
        "config": cfg.to_dict(),
        "environment": _versions(),
    }


def write_card(folder: str | Path, card: dict[str, Any]) -> Path:
    path = Path(folder) / CARD_NAME
    path.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return path

