"""Evaluator metrics against hand-computed values (no network; tiny random model + fixed tables)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluator.config import EvalConfig
from evaluator.context import EvalContext
from evaluator.coverage import coverage_value, diversity_value
from evaluator.mcq import brier, ece, js_divergence, letter_token_ids, mcq_prompt
from evaluator.metrics import REGISTRY, get_metric
from evaluator.stats import estimate, ratio_of_sums
from mosaic.errors import MosaicError


def test_registry_did_you_mean_and_specs():
    with pytest.raises(MosaicError, match="did you mean 'ref_loss'"):
        get_metric("ref_los")
    for m in REGISTRY.values():
        assert m.description and m.version and m.applies_to in {"responses", "mcq", "population", "tests"}


def test_coverage_and_diversity_hand_values():
    e = np.eye(3)
    refs = np.stack([e[0], e[1]])
    gens = np.stack([e[0], (e[1] + e[2]) / math.sqrt(2)])
    # ref0 best match 1.0, ref1 best match 1/sqrt(2)
    assert coverage_value(refs, gens) == pytest.approx((1 + 1 / math.sqrt(2)) / 2)
    # one pair with cosine 0 -> diversity 1; identical pair -> 0
    assert diversity_value(gens) == pytest.approx(1.0)
    assert diversity_value(np.stack([e[0], e[0]])) == pytest.approx(0.0)
    three = np.stack([e[0], e[0], e[1]])  # pair cosines 1, 0, 0 -> mean 1/3
    assert diversity_value(three) == pytest.approx(1 - 1 / 3)


def test_ece_brier_js_hand_values():
    # confidences 0.95 (right), 0.85 (wrong), 0.55 (right), 0.52 (right), bins=10
    table = np.array([[0.95, 1, 10], [0.85, 0, 10], [0.55, 1, 10], [0.52, 1, 10]], dtype=float)
    # bins: 9 -> |1-0.95|=0.05 (1/4); 8 -> |0-0.85| (1/4); 5 -> |1-0.535| (2/4)
    assert ece(table) == pytest.approx(0.25 * 0.05 + 0.25 * 0.85 + 0.5 * 0.465)
    assert ece(np.array([[1.0, 1, 10], [0.0, 0, 10]])) == pytest.approx(0.0)  # edges land in the end bins
    assert brier(np.array([0.7, 0.2, 0.1]), 0) == pytest.approx(0.09 + 0.04 + 0.01)
    assert brier(np.array([0.0, 1.0]), 0) == pytest.approx(2.0)
    q, p = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    assert js_divergence(q, p) == pytest.approx(1.0)
    assert js_divergence(q, q) == pytest.approx(0.0)
    assert js_divergence(np.array([0.5, 0.5]), np.array([0.9, 0.1])) == pytest.approx(
        0.5 * (0.5 * math.log2(0.5 / 0.7) + 0.5 * math.log2(0.5 / 0.3))
        + 0.5 * (0.9 * math.log2(0.9 / 0.7) + 0.1 * math.log2(0.1 / 0.3)))


def test_mcq_prompt_format():
    text = mcq_prompt("Which?", ["x", "y"])
    assert text == ("Please answer the following multiple choice question. Start your answer with the capital "
                    "letter corresponding to your choice:\n\nWhich?\n\nAnswer choices:\n\nA. x\n\nB. y\n\nYour answer:")


def test_bootstrap_ci_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(0)
    values = np.column_stack([rng.normal(2.0, 1.0, 200), np.ones(200)])
    clusters = [f"item{i // 4}" for i in range(200)]
    a = estimate(values, clusters, ratio_of_sums, np.random.default_rng(1), 1000)
    b = estimate(values, clusters, ratio_of_sums, np.random.default_rng(1), 1000)
    assert a == b and a.n == 200 and a.n_clusters == 50
    assert a.ci95[0] < a.value < a.ci95[1]
    assert a.ci95[1] - a.ci95[0] < 1.0
    single = estimate(values[:4], clusters[:4], ratio_of_sums, rng)
    assert single.ci95 is None and single.n_clusters == 1


def _ctx(model_dir, rows, layout="record", **cfg):
    from evaluator.models import load_model

    cfg = EvalConfig(model=str(model_dir), device="cpu", **cfg).resolved()
    return EvalContext(cfg=cfg, rows={"c": rows}, layouts={"c": layout}, progress=False,
                       load_model=lambda: load_model(str(model_dir), device="cpu"))


ROWS = [
    {"id": f"s/i{n}/0", "item_id": f"i{n}", "domain": "creative", "prompt": f"Prompt number {n}: write a line.",
     "responses": [{"text": t} for t in texts], "tests": None}
    for n, texts in enumerate([["The sea is calm tonight.", "Salt, wind, and a gull."],
                               ["A short one.", "A much longer reference answer that has many more tokens in it.",
                                "Third!"],
                               ["Only one reference here."]])
]


def test_reference_loss_equals_log_vocab_for_a_uniform_model(tiny_model_dir, tmp_path):
    """With the output layer zeroed every next-token distribution is uniform: NLL = ln V per token."""
    import shutil

    import torch
    from transformers import AutoModelForCausalLM

    flat = tmp_path / "flat"
    shutil.copytree(tiny_model_dir, flat)
    m = AutoModelForCausalLM.from_pretrained(flat)
    m.config.tie_word_embeddings = False
    m.lm_head = torch.nn.Linear(m.config.hidden_size, m.config.vocab_size, bias=False)
    torch.nn.init.zeros_(m.lm_head.weight)
    m.save_pretrained(flat)
    ctx = _ctx(flat, ROWS)
    scores = get_metric("ref_loss").per_prompt(ctx, "c")
    assert ratio_of_sums(scores.values) == pytest.approx(math.log(m.config.vocab_size), rel=1e-9)
    assert get_metric("ref_loss").aggregate(scores.values) == pytest.approx(math.log(49152), rel=1e-9)


def test_reference_loss_matches_manual_cross_entropy_and_is_batch_invariant(tiny_model_dir):
    import torch

    from mosaic.formatting import detect_format

    ctx1 = _ctx(tiny_model_dir, ROWS, batch_size=1)
    ctx8 = _ctx(tiny_model_dir, ROWS, batch_size=8)
    s1 = get_metric("ref_loss").per_prompt(ctx1, "c")
    s8 = get_metric("ref_loss").per_prompt(ctx8, "c")
    assert np.allclose(s1.values, s8.values, rtol=0, atol=1e-5)
    assert ratio_of_sums(s1.values) == pytest.approx(ratio_of_sums(s8.values), abs=1e-5)
    # by hand: full forward over prompt + response, log-softmax, pick the targets
    lm = ctx1.model()
    fmt = detect_format(lm.tokenizer)
    total, tokens, means = 0.0, 0, []
    for row in ROWS:
        p = fmt.prompt_ids(lm.tokenizer, row["prompt"])
        for ref in row["responses"]:
            r = fmt.response_ids(lm.tokenizer, row["prompt"], ref["text"])
            ids = torch.tensor([p + r])
            with torch.no_grad():
                logp = torch.log_softmax(lm.model(ids).logits[0].double(), -1).numpy()
            nll = [-logp[len(p) - 1 + i, t] for i, t in enumerate(r)]
            total, tokens = total + sum(nll), tokens + len(nll)
            means.append(sum(nll) / len(nll))
            assert r[-1] == fmt.end_token_id  # the end-of-turn token is scored
    assert ratio_of_sums(s1.values) == pytest.approx(total / tokens, abs=1e-6)
    mean_scores = get_metric("ref_loss_response_mean").per_prompt(ctx1, "c")
    assert ratio_of_sums(mean_scores.values) == pytest.approx(sum(means) / len(means), abs=1e-6)
    assert ctx1.notes["prompt_format"] == "chat_template"


def test_option_letters_and_probabilities(tiny_model_dir):
    rows = [{"id": "q1", "question": "2+2?", "choices": ["3", "4", "5"], "answer": 1, "subject": "math",
             "population": None},
            {"id": "q2", "question": "Tea?", "choices": ["yes", "no"], "answer": None, "subject": "opinion",
             "population": [0.25, 0.75]}]
    ctx = _ctx(tiny_model_dir, rows, layout="mcq")
    from evaluator.mcq import option_probabilities

    probs = option_probabilities(ctx, "c")
    assert probs["q1"].shape == (3,) and probs["q1"].sum() == pytest.approx(1.0)
    ids = letter_token_ids(ctx.model().tokenizer, 3)
    assert all(1 <= len(x) <= 2 for x in ids)
    acc = get_metric("mcq_accuracy").per_prompt(ctx, "c")
    assert acc.ids == ["q1"] and acc.skipped == 1
    assert acc.values[0, 0] == float(np.argmax(probs["q1"]) == 1)
    js = get_metric("population_js").per_prompt(ctx, "c")
    assert js.values[0, 0] == pytest.approx(js_divergence(np.array([0.25, 0.75]), probs["q2"]))


def test_variance_aggregates_match_the_core_estimator():
    from evaluator.variance_diag import vx, vx_raw, vyx
    from mosaic.variance import estimate_components

    rng = np.random.default_rng(3)
    groups = [rng.normal(rng.normal(2, 0.5), 0.3, size=k) for k in (2, 3, 4, 4, 5, 8)]
    values = np.array([[g.mean(), g.var(ddof=1), len(g)] for g in groups])
    ref = estimate_components([list(g) for g in groups])
    assert vyx(values) == pytest.approx(ref.vyx, rel=1e-12)
    assert vx(values) == pytest.approx(ref.vx, rel=1e-12) and vx_raw(values) == pytest.approx(ref.vx_raw, rel=1e-12)
    # a negative raw estimate is clamped (and reported through vx_raw)
    flat = np.array([[1.0, 4.0, 2], [1.0, 4.0, 2], [1.0, 4.0, 2]])
    assert vx_raw(flat) == pytest.approx(-2.0) and vx(flat) == 0.0


def test_presets_and_item_subsets():
    from evaluator.run import subsample_items

    quick, paper = EvalConfig().resolved(), EvalConfig(preset="paper").resolved()
    assert (quick.n_samples, quick.max_new_tokens, quick.max_items) == (4, 48, 8)
    assert (paper.n_samples, paper.max_new_tokens, paper.max_new_tokens_code, paper.max_items) == (16, 192, 512, None)
    assert EvalConfig(max_items=0).resolved().max_items is None
    assert EvalConfig(n_samples=2).resolved().n_samples == 2
    assert quick.hash() != paper.hash()
    with pytest.raises(MosaicError):
        EvalConfig(max_items=-1).resolved()
    with pytest.raises(MosaicError, match="unknown preset"):
        EvalConfig(preset="fast").resolved()
    # 10 items: 6 creative, 3 code, 1 advisory; 3 variants each
    domains = ["creative"] * 6 + ["code"] * 3 + ["advisory"]
    rows = [{"id": f"s/i{i}/{v}", "item_id": f"i{i}", "domain": domains[i]} for i in range(10) for v in range(3)]
    sub = subsample_items(rows, 4)
    assert len(sub) == 12 and len({r["item_id"] for r in sub}) == 4
    assert sub == [r for r in rows if r in sub]  # original order kept, all variants of an item
    # round robin over the sorted domains: advisory, code, creative; then advisory is spent, so code again
    picked = [domains[int(i[1:])] for i in dict.fromkeys(r["item_id"] for r in sub)]
    assert sorted(picked) == ["advisory", "code", "code", "creative"]
    assert subsample_items(rows, 5) == subsample_items(rows, 5) and len(subsample_items(rows, 99)) == 30
    assert {r["item_id"] for r in sub} < {r["item_id"] for r in subsample_items(rows, 6)}  # nested subsets


def test_batched_scoring_equals_the_shared_prompt_path_and_the_plain_forward(tiny_model_dir):
    """`--scoring batched` (many prompts per pass, left padding, logits at the last columns only)
    gives the shared-prompt path's token NLLs, for any batch size, and each pair's NLL equals a
    plain full forward's; prompts and references of very different lengths share a batch."""
    from evaluator.models import load_model
    from evaluator.refloss import reference_nll
    from evaluator.scoring import score_full_sequence, score_pairs_batched

    shared = _ctx(tiny_model_dir, ROWS, scoring="shared-prompt")
    want = reference_nll(shared, "c")
    assert shared.notes["reference_loss_scoring"] == {"c": {"path": "shared-prompt", "batch_size": 8}}
    for bs in (1, 3, 64):
        batched = _ctx(tiny_model_dir, ROWS, batch_size=bs, scoring="batched")
        got = reference_nll(batched, "c")
        assert batched.notes["reference_loss_scoring"] == {"c": {"path": "batched", "batch_size": bs}}
        assert list(got) == list(want)
        for rid in want:
            assert [r.n_tokens for r in got[rid]] == [r.n_tokens for r in want[rid]]
            for a, b in zip(got[rid], want[rid]):
                assert np.allclose(a.nll, b.nll, rtol=0, atol=1e-5)
    model = load_model(str(tiny_model_dir), device="cpu").model
    rng = np.random.default_rng(0)
    pairs = [(rng.integers(3, 40000, size=p).tolist(), rng.integers(3, 40000, size=r).tolist())
             for p, r in [(3, 30), (40, 1), (17, 5), (1, 12), (40, 30)]]
    for bs in (2, 5):
        seen = []
        scored = score_pairs_batched(model, pairs, bs, on_batch=seen.append)
        assert sum(seen) == len(pairs) and len(seen) == -(-len(pairs) // bs)
        for (p, r), s in zip(pairs, scored):
            assert np.allclose(s.nll, score_full_sequence(model, p, r).nll, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="non-empty prompt and reference"):
        score_pairs_batched(model, [([1, 2], [])])


def _scaled_logits(model):
    """`model` with its logits doubled (like logit scaling or soft-capping): its decoder + head no
    longer reproduce its logits."""
    import torch

    class Scaled(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def get_decoder(self):
            return self.inner.get_decoder()

        def get_output_embeddings(self):
            return self.inner.get_output_embeddings()

        def forward(self, **kw):
            out = self.inner(**kw)
            out.logits = out.logits * 2
            return out

    return Scaled(model)


def test_shared_prompt_scoring_uses_the_split_head_only_where_it_reproduces_the_logits(tiny_model_dir):
    """The head applied to the decoder's hidden states at scored positions only (blockwise over the
    vocabulary) gives the plain forward's token NLLs; a model whose logits are not its head's
    output (here scaled by 2) fails the one-time check and is scored from its own logits, on both
    scoring paths, still exactly."""
    from evaluator import scoring
    from evaluator.models import load_model

    model = load_model(str(tiny_model_dir), device="cpu").model
    rng = np.random.default_rng(1)
    prompt = rng.integers(3, 40000, size=9).tolist()
    refs = [rng.integers(3, 40000, size=n).tolist() for n in (150, 1, 7, 70)]  # several vocabulary blocks per row set
    split = scoring._split_head(model, prompt)
    assert split is not None and split.weight is model.get_output_embeddings().weight
    assert scoring._split_head(model, [5, 6]) is split  # checked once per model
    for bs in (1, 3):
        for r, s in zip(refs, scoring.score_prompt_references(model, prompt, refs, bs)):
            assert s.n_tokens == len(r)
            assert np.allclose(s.nll, scoring.score_full_sequence(model, prompt, r).nll, rtol=0, atol=1e-5)

    scaled = _scaled_logits(model)
    assert scoring._split_head(scaled, prompt) is None
    batched = scoring.score_pairs_batched(scaled, [(prompt, r) for r in refs], 3)
    for r, s, b in zip(refs, scoring.score_prompt_references(scaled, prompt, refs, 2), batched):
        assert np.allclose(s.nll, scoring.score_full_sequence(scaled, prompt, r).nll, rtol=0, atol=1e-5)
        assert np.allclose(b.nll, s.nll, rtol=0, atol=1e-5)
        assert not np.allclose(s.nll, scoring.score_full_sequence(model, prompt, r).nll, rtol=0, atol=1e-3)


def test_split_head_blockwise_nll_equals_the_full_log_softmax():
    """Vocabulary blocks that do not divide V, a bias, targets in every block: the blockwise
    log-normaliser equals a float64 log-softmax over the full logits."""
    import torch

    from evaluator.scoring import _SplitHead

    g = torch.Generator().manual_seed(0)
    weight, bias = torch.randn(1000, 16, generator=g), torch.randn(1000, generator=g)
    hidden = torch.randn(37, 16, generator=g) * 3
    targets = torch.randint(0, 1000, (37,), generator=g)
    targets[:3] = torch.tensor([0, 999, 300])
    want = -torch.log_softmax((hidden @ weight.T + bias).double(), -1).gather(1, targets[:, None]).squeeze(1)
    for cols in (1, 7, 300, 1000, 4096):
        got = _SplitHead(None, weight, bias, cols=cols).nll(hidden, targets)
        assert got.dtype == torch.float64 and torch.allclose(got, want, rtol=0, atol=2e-5), cols


def test_score_all_encodes_the_common_prefix_once_and_changes_no_nll(tiny_model_dir):
    """Prompts sharing a system turn: the prefix is encoded once and continued; one prompt is the
    whole prefix plus one token. Prompts of different lengths are encoded in one right-padded pass
    and their references (of different lengths) share passes, for several group and batch sizes:
    every NLL equals the plain forward's. Prompts with no common prefix get none."""
    from evaluator import scoring
    from evaluator.models import load_model

    model = load_model(str(tiny_model_dir), device="cpu").model
    rng = np.random.default_rng(2)
    system = rng.integers(3, 40000, size=12).tolist()
    prompts = [system + rng.integers(3, 40000, size=n).tolist() for n in (5, 1, 30)]
    encoded = [(p, [rng.integers(3, 40000, size=n).tolist() for n in (9, 2)]) for p in prompts]
    prefix = scoring.shared_prefix(model, prompts)
    assert prefix is not None and prefix.ids == system
    assert scoring.shared_prefix(model, [system, system + [7]]).ids == system[:-1]  # one token left to run
    assert scoring.shared_prefix(model, [[5, 6, 7], [9, 6, 7]]) is None
    assert scoring.shared_prefix(model, []) is None
    want = [[scoring.score_full_sequence(model, p, r).nll for r in refs] for p, refs in encoded]
    for group, batch in [(1, 2), (2, 1), (3, 3), (3, 8), (8, 2)]:  # prompts of 13/17/42 tokens share passes
        calls: list[int] = []
        scored = scoring.score_all(model, encoded, batch_size=batch, on_prompt=lambda c=calls: c.append(1), group=group)
        assert len(calls) == 3
        for w, got in zip(want, scored):
            assert [s.n_tokens for s in got] == [len(x) for x in w]
            for x, s in zip(w, got):
                assert np.allclose(s.nll, x, rtol=0, atol=1e-5), (group, batch)
    scaled = _scaled_logits(model)  # the model's own logits, prompts of different lengths in one pass
    for (p, refs), got in zip(encoded, scoring.score_all(scaled, encoded, batch_size=3)):
        for r, s in zip(refs, got):
            assert np.allclose(s.nll, scoring.score_full_sequence(scaled, p, r).nll, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="at least one token"):
        scoring.score_group(model, [([1, 2], [[3], []])])
    # a prefix the prompt does not extend is ignored
    other = scoring.score_prompt_references(model, [1, 2, 3], [[4, 5]], prefix=prefix)[0]
    assert np.allclose(other.nll, scoring.score_full_sequence(model, [1, 2, 3], [4, 5]).nll, rtol=0, atol=1e-5)
