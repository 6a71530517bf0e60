"""The hf backend's shared-prompt prefill: repeated prompts reuse one KV cache without changing outputs."""

from __future__ import annotations

import pytest

from evaluator import generation
from evaluator.generation import HFBackend, Request, Settings


@pytest.fixture(scope="module")
def tiny_lm(tiny_model_dir):
    from evaluator.models import load_model

    return load_model(str(tiny_model_dir), device="cpu")


def _run(lm, requests, batch_size=8):
    settings = Settings(model="tiny", seed=0, temperature=0.0, top_p=1.0)
    out = HFBackend(lm, batch_size, progress=False).generate(requests, settings)
    return {(r.row_id, r.sample_index): text for r, text in out}


def test_shared_prefill_keeps_greedy_outputs(tiny_lm, monkeypatch):
    prompts = {"a": "Name a colour.", "b": "Write a haiku about rain, please, in English."}
    requests = [Request(rid, i, p, 12) for rid, p in prompts.items() for i in range(3)]
    calls = []
    real = generation._shared_prompt_cache

    def spy(*args):
        shared = real(*args)
        calls.append(bool(shared))
        return shared

    monkeypatch.setattr(generation, "_shared_prompt_cache", spy)
    shared = _run(tiny_lm, requests)
    assert calls == [True]  # one batch, repeated prompts: the cache was shared
    monkeypatch.setattr(generation, "_shared_prompt_cache", lambda *args: {})
    plain = _run(tiny_lm, requests)
    assert shared == plain
    assert len(shared) == 6 and all(shared[(rid, 0)] == shared[(rid, i)] for rid in prompts for i in range(3))


def test_no_sharing_when_prompts_are_distinct(tiny_lm):
    import torch

    ids = [[1, 2, 3], [4, 5, 6, 7]]
    input_ids = torch.tensor([[0, 1, 2, 3], [4, 5, 6, 7]])
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 1, 1]])
    assert generation._shared_prompt_cache(tiny_lm.model, ids, input_ids, mask) == {}
