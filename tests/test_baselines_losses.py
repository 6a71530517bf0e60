"""Loss maths on fixed numbers, and packing: completion-only targets, no attention across packed sequences."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from baselines.kept_logits import KeptLogits
from baselines.losses import sequence_logprobs, spl_loss, spl_margin, token_logprobs
from baselines.packing import KEEP_MODES, collate, logits_keep_mode, micro_batches, pack_rows, step_plan


def test_token_logprobs_by_hand():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [0.0, math.log(3.0), -1e4, -1e4]])
    lp = token_logprobs(logits, torch.tensor([2, 1]))
    assert lp.tolist() == pytest.approx([-math.log(4.0), math.log(0.75)], abs=1e-7)
    seq = sequence_logprobs(torch.tensor([-1.0, -2.0, -4.0, -8.0]), torch.tensor([1, 0, 1, 1]), 3)
    assert seq.tolist() == [-2.0, -13.0, 0.0]


def test_spl_by_hand_when_alpha_differs_from_beta():
    # alpha 2, beta 0.5: margin = 2 * (-3 - -4) - 0.5 * (-3.5 - -3) = 2 + 0.25 = 2.25
    args = (torch.tensor([-3.0, -10.0]), torch.tensor([-4.0, -10.0]), torch.tensor([-3.5, -7.0]),
            torch.tensor([-3.0, -7.0]))
    assert spl_margin(*args, 2.0, 0.5).tolist() == [2.25, 0.0]
    loss = spl_loss(*args, 2.0, 0.5)
    assert loss[0].item() == pytest.approx(math.log1p(math.exp(-2.25)), abs=1e-7)
    assert loss[1].item() == pytest.approx(math.log(2.0), abs=1e-7)


def test_spl_with_alpha_equal_beta_is_dpo():
    g = torch.Generator().manual_seed(0)
    pc, pr, rc, rr = (torch.randn(64, generator=g, dtype=torch.float64) * 20 for _ in range(4))
    beta = 0.1
    dpo = -F.logsigmoid(beta * ((pc - pr) - (rc - rr)))  # DPO as Rafailov et al. write it
    assert torch.allclose(spl_loss(pc, pr, rc, rr, beta, beta), dpo, atol=1e-12)
    assert not torch.allclose(spl_loss(pc, pr, rc, rr, 2 * beta, beta), dpo, atol=1e-3)


def test_step_plan_and_micro_batches():
    plan = step_plan(5, 3, 4, seed=1)
    assert [len(s) for s in plan] == [4, 4, 4]
    flat = sum(plan, [])
    assert sorted(flat[:5]) == [0, 1, 2, 3, 4] and plan == step_plan(5, 3, 4, seed=1)
    lengths = [5, 9, 1, 7, 3, 8, 2, 6]
    parts = micro_batches(list(range(8)), lengths, rank=1, world=2, batch_size=2, grad_accum=2)
    assert parts == [[5, 7], [4, 6]]  # rank 1's share is examples 4..7, longest first


def test_pack_rows():
    assert pack_rows([5, 3, 4, 2, 6], 8) == [[4], [0, 3], [2, 1]]  # first fit needs 3 rows; evened out: 6, 7, 7
    assert pack_rows([4, 4, 3, 3, 2], 8) == [[0, 1], [2, 3, 4]]  # evening out would overflow: first-fit rows
    with pytest.raises(ValueError):
        pack_rows([9], 8)


def test_collate_scores_completion_tokens_only():
    seqs = [([1, 2, 3], [10, 11]), ([4], [12, 13, 14]), ([5, 6], [15])]
    b = collate(seqs, packing=True, capacity=8, pad_id=0)
    assert b.input_ids.tolist() == [[1, 2, 3, 10, 11, 0, 0], [4, 12, 13, 14, 5, 6, 15]]
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3, 0, 1, 2]]
    # a kept position predicts the next token: the last prompt token and every completion token but the last
    assert b.keep.tolist() == [[False, False, True, True, False, False, False],
                               [True, True, True, False, False, True, False]]
    assert b.targets.tolist() == [10, 11, 12, 13, 14, 15] and b.seq_index.tolist() == [0, 0, 1, 1, 1, 2]
    assert (b.tokens, b.slots) == (12, 14)
    for prompt, _ in seqs:  # no prompt token is ever a target
        assert not set(prompt) & set(b.targets.tolist())
    flat = collate(seqs, packing=False, capacity=8, pad_id=0)
    assert flat.input_ids.shape == (3, 5) and sorted(flat.targets.tolist()) == sorted(b.targets.tolist())


def _alone(model, prompt, completion):
    ids = torch.tensor([prompt + completion])
    with torch.no_grad():
        logp = torch.log_softmax(model(ids, use_cache=False).logits[0].float(), -1)
    return sum(logp[len(prompt) - 1 + t, tok].item() for t, tok in enumerate(completion))


def test_packed_sequences_do_not_see_each_other(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    g = torch.Generator().manual_seed(0)
    seqs = [(torch.randint(5, 1000, (p,), generator=g).tolist(), torch.randint(5, 1000, (c,), generator=g).tolist())
            for p, c in [(7, 5), (3, 9), (12, 4), (2, 2), (5, 6)]]
    expected = torch.tensor([_alone(model, p, c) for p, c in seqs])
    b = collate(seqs, packing=True, capacity=24, pad_id=0)
    assert b.input_ids.shape[0] < len(seqs)  # several sequences really share rows
    assert logits_keep_mode() == "positions"  # what this transformers takes
    for mode in KEEP_MODES:  # per-row positions, the boolean mask, and the column index of older transformers
        with torch.no_grad():
            logits = b.kept(model(**b.model_inputs(mode)).logits, mode)
        got = sequence_logprobs(token_logprobs(logits, b.targets), b.seq_index, 5)
        assert torch.allclose(got, expected, atol=1e-4), mode
    kept = KeptLogits(model)  # the trainer's own gather from the decoder's output
    with torch.no_grad():
        got = sequence_logprobs(token_logprobs(kept(model, b), b.targets), b.seq_index, 5)
    assert kept.ok is True and torch.allclose(got, expected, atol=1e-4)
    # the same rows with positions running on across sequences (or with a KV cache) mix the sequences up
    with torch.no_grad():
        run_on = torch.arange(b.input_ids.shape[1]).expand_as(b.input_ids)
        mixed = model(b.input_ids, position_ids=run_on, logits_to_keep=b.keep, use_cache=False).logits
        cached = model(b.input_ids, position_ids=b.position_ids, logits_to_keep=b.keep, use_cache=True).logits
    for logits in (mixed, cached):
        bad = sequence_logprobs(token_logprobs(logits, b.targets), b.seq_index, 5)
        assert (bad - expected).abs().max() > 1e-2


def test_a_head_that_is_not_reproduced_falls_back(tiny_model_dir):
    """A model that changes its logits after the head (here: doubled) fails the first call's check, so the
    trainer's gather from the decoder's output is not used for it."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()

    def doubled(_module, _args, out):
        out.logits = out.logits * 2
        return out

    model.register_forward_hook(doubled)
    b = collate([([5, 6, 7], [8, 9]), ([10], [11, 12, 13])], packing=True, capacity=16, pad_id=0)
    kept = KeptLogits(model)
    with torch.no_grad():
        assert kept(model, b) is None
    assert kept.ok is False and not kept.usable


def test_kept_positions_give_the_masks_rows_in_its_order():
    """The "positions" form of logits_to_keep: each row's kept positions, short rows filled up; dropping
    the fill-ups leaves exactly the boolean mask's picks in row-major order (the targets' order)."""
    seqs = [([1, 2, 3], [4, 5]), ([6], [7, 8, 9, 10]), ([11, 12], [13])]
    for packing in (True, False):
        b = collate(seqs, packing=packing, capacity=16, pad_id=0)
        rows, width = b.keep.shape
        hidden = torch.arange(rows * width, dtype=torch.float32).view(rows, width, 1)
        gathered = torch.take_along_dim(hidden, b.positions[..., None], dim=1)  # what the model does with it
        assert torch.equal(b.kept(gathered, "positions"), hidden[b.keep])
        assert b.positions.shape == (rows, int(b.keep.sum(1).max())) and len(b.valid) == len(b.targets) == 7
        assert torch.equal(hidden.reshape(-1, 1)[b.flat], hidden[b.keep])  # the trainer's own gather index
    assert b.positions.tolist() == [[2, 3, 3, 3], [0, 1, 2, 3], [1, 1, 1, 1]]  # unpacked, longest first, ties in order
