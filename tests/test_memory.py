"""Passes that run out of CUDA memory are run again with half the rows: scores unchanged, samples
seeded as planned, the halving announced and recorded. The out-of-memory error is raised on the CPU
by a hook on the decoder whenever a pass has more rows than a limit: the real error class, on the
real code path."""

from __future__ import annotations

import pytest
import torch

from evaluator.config import EvalConfig
from evaluator.context import EvalContext
from evaluator.generation import HFBackend, Request, Settings, ensure_generations
from evaluator.refloss import reference_nll
from evaluator.scoring import score_all, score_pairs_batched
from mosaic.errors import MosaicError
from mosaic.memory import Passes

OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total capacity)"


def _oom(rows: int, limit: int) -> None:
    if rows > limit:
        raise torch.cuda.OutOfMemoryError(OOM)


def test_rows_are_halved_until_a_pass_fits_and_stay_halved(capsys):
    seen = []

    def fn(part):
        seen.append(len(part))
        _oom(len(part), 2)
        return sum(part)

    passes = Passes(8, "references", "--batch-size")
    got = list(passes.chunks(list(range(10)), fn))
    assert [list(p) for p, _ in got] == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert [s for _, s in got] == [1, 5, 9, 13, 17]
    assert seen == [8, 4, 2, 2, 2, 2, 2]  # no retry after the first fit: the smaller size holds
    assert passes.record() == {"rows_per_pass": 2, "out_of_memory_at": [8, 4]}
    err = capsys.readouterr().err
    assert "out of GPU memory with 8 references per pass (CUDA out of memory. Tried to allocate 2.00 GiB" in err
    assert "going on with 4 (start there with --batch-size 4)" in err and "going on with 2" in err


def test_a_short_last_part_halves_from_its_own_size():
    """3 items left under rows 8: the pass that failed had 3 rows, so the next has 2 (not 4), then 1."""
    seen = []

    def fn(part):
        seen.append(len(part))
        _oom(len(part), 1)
        return len(part)

    passes = Passes(8, "sequences", "--gen-batch-size")
    assert [len(p) for p, _ in passes.chunks([1, 2, 3], fn)] == [1, 1, 1]
    assert seen == [3, 2, 1, 1, 1] and passes.record()["out_of_memory_at"] == [3, 2]


def test_nothing_is_recorded_without_a_halving_and_other_errors_pass_through():
    passes = Passes(4, "references", "--batch-size")
    assert [len(p) for p, _ in passes.chunks(list(range(6)), len)] == [4, 2] and passes.record() == {}

    def cpu_failure(rows):
        raise RuntimeError("DefaultCPUAllocator: not enough memory")

    with pytest.raises(RuntimeError, match="DefaultCPUAllocator"):
        passes.run(cpu_failure)
    assert passes.rows == 4
    with pytest.raises(ValueError, match="--batch-size must be >= 1"):
        Passes(0, "references", "--batch-size")


def test_one_row_that_does_not_fit_is_a_named_error():
    passes = Passes(2, "sequences", "--gen-batch-size", advice="lower --max-new-tokens")
    with pytest.raises(MosaicError, match=r"out of GPU memory with 1 of the sequences per pass \(CUDA out of "
                                          r"memory.*one does not fit beside the model on this device \(lower "
                                          r"--max-new-tokens\)"):
        passes.run(lambda rows: _oom(rows, 0))
    assert passes.halvings == [2]


def _limit_rows(model, limit: int):
    """A hook raising CUDA's out-of-memory error on every decoder pass with more than `limit` rows."""
    def hook(module, args, kwargs):
        ids = kwargs.get("input_ids") if kwargs.get("input_ids") is not None else kwargs.get("inputs_embeds")
        _oom((ids if ids is not None else args[0]).shape[0], limit)

    return model.get_decoder().register_forward_pre_hook(hook, with_kwargs=True)


@pytest.fixture()
def tiny_lm(tiny_model_dir):
    from evaluator.models import load_model

    return load_model(str(tiny_model_dir), device="cpu")


def _pairs(tok):
    prompts = ["Name a colour.", "Write a haiku about rain, please.", "Hi"]
    refs = [["Blue.", "A deep shade of green, like moss."], ["Rain on the roof / soft drums all night long / I sleep"],
            ["Hello!", "Hey there, how are you doing today?", "Yo"]]
    return [(tok(p)["input_ids"], [tok(r)["input_ids"] for r in rs]) for p, rs in zip(prompts, refs)]


def test_scores_after_running_out_of_memory_equal_the_undisturbed_ones(tiny_lm, capsys):
    encoded = _pairs(tiny_lm.tokenizer)
    pairs = [(p, r) for p, refs in encoded for r in refs]
    want_batched = score_pairs_batched(tiny_lm.model, pairs, 8)
    want_shared = score_all(tiny_lm.model, encoded, 8)
    handle = _limit_rows(tiny_lm.model, 2)
    try:
        passes = Passes(8, "references", "--batch-size")
        got_batched = score_pairs_batched(tiny_lm.model, pairs, 8, passes=passes)
        assert passes.record() == {"rows_per_pass": 2, "out_of_memory_at": [6, 3]}
        shared = Passes(8, "references", "--batch-size")
        got_shared = score_all(tiny_lm.model, encoded, 8, group=1, passes=shared)  # one prompt per group pass
    finally:
        handle.remove()
    assert shared.record() == {"rows_per_pass": 2, "out_of_memory_at": [3]}  # the 3-reference prompt's pass
    for want, got in ((want_batched, got_batched), ([r for g in want_shared for r in g], [r for g in got_shared
                                                                                         for r in g])):
        assert [w.n_tokens for w in want] == [g.n_tokens for g in got]
        assert all(abs(w.total - g.total) < 1e-5 for w, g in zip(want, got))
    assert "going on with 3 (start there with --batch-size 3)" in capsys.readouterr().err


REQUESTS = [Request(rid, i, p, 10) for rid, p in {"a": "Name a colour.", "b": "Write a haiku about rain.",
                                                  "c": "Hi"}.items() for i in range(3)]


def _generate(lm, temperature, batch_size=8, cache="dynamic", limit=None):
    settings = Settings(model="tiny", weights=None, adapter=None, seed=3, temperature=temperature, top_p=1.0)
    backend = HFBackend(lm, batch_size, progress=False, cache=cache)
    handle = _limit_rows(lm.model, limit) if limit else None
    try:
        texts = {(r.row_id, r.sample_index): t for r, t in backend.generate(REQUESTS, settings)}
    finally:
        if handle:
            handle.remove()
    return texts, backend


@pytest.mark.parametrize("cache", ["dynamic", "static"])
def test_generation_goes_on_in_smaller_passes_with_the_planned_seeds(tiny_lm, cache):
    """Greedy: the outputs are those of the undisturbed run. Sampled: every sample is made, and a
    rerun that runs out of memory at the same place makes the same samples (one seed per planned
    batch, its passes decoded in order); the static cache's last pass is filled up to the new rows."""
    want, _ = _generate(tiny_lm, 0.0, cache=cache)
    got, backend = _generate(tiny_lm, 0.0, cache=cache, limit=4)
    assert got == want and len(got) == len(REQUESTS)
    assert backend.passes.record() == {"rows_per_pass": 4, "out_of_memory_at": [8]}
    sampled, again = (_generate(tiny_lm, 1.0, cache=cache, limit=4)[0] for _ in range(2))
    assert sampled == again and sorted(sampled) == sorted(want)
    undisturbed, _ = _generate(tiny_lm, 1.0, cache=cache)
    assert sampled != undisturbed  # another split draws other tokens: why the notes record it


def test_evaluation_notes_record_the_smaller_passes(tiny_model_dir, tmp_path):
    from evaluator.models import load_model

    def load():
        lm = load_model(str(tiny_model_dir), device="cpu")
        _limit_rows(lm.model, 2)
        return lm

    rows = [{"id": f"s/i{n}/0", "item_id": f"i{n}", "domain": "creative", "prompt": f"Prompt {n}: write a line.",
             "responses": [{"text": "One answer."}, {"text": "Another, longer answer here."}], "tests": None}
            for n in range(3)]
    cfg = EvalConfig(model=str(tiny_model_dir), device="cpu", n_samples=2, max_new_tokens=4, gen_batch_size=6,
                     batch_size=4, generations=str(tmp_path / "g.jsonl")).resolved()
    ctx = EvalContext(cfg=cfg, rows={"c": rows}, layouts={"c": "record"}, progress=False, load_model=load)
    assert sum(map(len, reference_nll(ctx, "c").values())) == 6
    assert all(len(v) == 2 for v in ensure_generations(ctx).values())
    # the 3 prompts' pass failed (the group follows the rows), then 2 prompts and their 4 references fit in 2s
    assert ctx.notes["reference_loss_scoring"]["c"] == {"path": "shared-prompt", "batch_size": 4,
                                                          "rows_per_pass": 2, "out_of_memory_at": [3]}
    notes = ctx.notes["generations"]
    assert notes["batch_size"] == 6 and notes["rows_per_pass"] == 2 and notes["out_of_memory_at"] == [6, 3]


def test_option_probabilities_after_running_out_of_memory_are_unchanged(tiny_model_dir):
    from evaluator.mcq import option_probabilities
    from evaluator.models import load_model

    rows = [{"id": f"q{n}", "question": f"{n} + {n}?", "choices": [str(n), str(2 * n), "5"], "answer": 1,
             "subject": "math", "population": None} for n in range(5)]

    def ctx(limit):
        def load():
            lm = load_model(str(tiny_model_dir), device="cpu")
            if limit:
                _limit_rows(lm.model, limit)
            return lm
        cfg = EvalConfig(model=str(tiny_model_dir), device="cpu", gen_batch_size=4).resolved()
        return EvalContext(cfg=cfg, rows={"m": rows}, layouts={"m": "mcq"}, progress=False, load_model=load)

    plain, tight = ctx(None), ctx(1)
    want, got = option_probabilities(plain, "m"), option_probabilities(tight, "m")
    assert sorted(got) == sorted(want) and all(abs(got[k] - want[k]).max() < 1e-6 for k in want)
    assert "calibration_passes" not in plain.notes
    assert tight.notes["calibration_passes"]["m"] == {"rows_per_pass": 1, "out_of_memory_at": [4, 2]}
