"""Loading the model under evaluation: the default small model, local folders, Hub ids, LoRA adapters.

Where models live and how the default one is made: `mosaic.models`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mosaic.errors import MosaicError
from mosaic.models import DEFAULT_MODEL, choose_device, file_hash, resolve_model

__all__ = ["DEFAULT_MODEL", "LoadedModel", "load_model"]


@dataclass
class LoadedModel:
    model: Any
    tokenizer: Any
    model_id: str
    path: str  # what was loaded: a local folder or a Hub id
    revision: str | None
    weights_hash: str | None
    adapter: dict[str, Any] | None
    num_parameters: int
    device: str
    dtype: str


def load_model(spec: str = DEFAULT_MODEL, adapter: str | None = None, device: str = "auto",
               dtype: str | None = None, revision: str | None = None) -> LoadedModel:
    """`revision` (branch, tag or commit) applies to Hub ids only; a local folder is what it is."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source, model_id, _ = resolve_model(spec)
    if revision and Path(source).exists():
        raise MosaicError(f"--revision {revision}: {spec} is a local model folder; a revision applies to Hub "
                          "model ids only")
    device, torch_dtype = choose_device(device)
    if dtype:
        torch_dtype = getattr(torch, dtype)
    at = {"revision": revision} if revision else {}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **at)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **at)
    except OSError as exc:
        where = f" at revision {revision!r}" if revision else ""
        raise MosaicError(f"cannot load model {spec!r}{where}: {str(exc).splitlines()[0]} (offline? pass a local "
                          "folder with --model)") from exc
    weights = sorted(Path(source).glob("*.safetensors")) + sorted(Path(source).glob("*.bin"))
    info = None
    if adapter:
        model, info = _attach_adapter(model, adapter, model_id)
    model.to(device).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    commit = getattr(model.config, "_commit_hash", None)
    return LoadedModel(model=model, tokenizer=tokenizer, model_id=model_id, path=source, revision=commit or revision,
                       weights_hash=file_hash(weights) if weights else None, adapter=info,
                       num_parameters=sum(p.numel() for p in model.parameters()), device=device,
                       dtype=str(torch_dtype).replace("torch.", ""))


def _attach_adapter(model: Any, adapter: str, model_id: str) -> tuple[Any, dict[str, Any]]:
    from peft import PeftModel

    path = Path(adapter)
    cfg_path = path / "adapter_config.json"
    if not cfg_path.exists():
        raise MosaicError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    cfg = json.loads(cfg_path.read_text())
    card_path = path / "training_card.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else None
    try:
        model = PeftModel.from_pretrained(model, str(path))
    except (RuntimeError, ValueError, KeyError) as exc:
        raise MosaicError(f"adapter {adapter} does not fit model {model_id} (base model in the adapter: "
                          f"{cfg.get('base_model_name_or_path')!r}): {str(exc).splitlines()[0]}") from exc
    files = sorted(path.glob("adapter_model.*"))
    return model, {"path": str(path), "hash": file_hash(files) if files else None,
                   "base_model": cfg.get("base_model_name_or_path"), "peft_type": cfg.get("peft_type"),
                   "r": cfg.get("r"), "training_card": card}
