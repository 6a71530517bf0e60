"""Validator rules that tests/test_grid.py leaves out: one failing (and one passing) example each."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from test_grid import WORDS, fake_embed, raw_item

from builders.grid import GridParseError, GridRules, check_semantics, check_structure, parse_item
from mosaic.cli import main


@pytest.mark.parametrize(("edit", "reason", "detail"), [
    (lambda it: it.__setitem__("id", ""), "empty_string", "id is empty"),
    (lambda it: it.__setitem__("domain", " "), "empty_string", "domain is empty"),
    (lambda it: it.__setitem__("base_theme", ""), "empty_string", "base_theme is empty"),
    (lambda it: it["metadata"].__setitem__("response_type", " "), "empty_string", "metadata.response_type"),
    (lambda it: it["responses"][2][1].__setitem__("approach", "  "), "empty_string", "responses[2][1].approach"),
    (lambda it: it.__setitem__("tests", {"input": [], "output": []}), "bad_tests", "0 test inputs and 0 outputs"),
])
def test_more_structural_rules(edit, reason, detail):
    item = raw_item()
    edit(item)
    found = check_structure(parse_item(item), GridRules())
    assert [f.reason for f in found] == [reason] and detail in found[0].detail


@pytest.mark.parametrize(("edit", "reason"), [
    (lambda it: it["responses"].__setitem__(0, "not a list"), "wrong_type"),
    (lambda it: it["responses"][1].__setitem__(0, {"text": WORDS, "approach": 3}), "wrong_type"),
    (lambda it: it.__setitem__("split", 1), "wrong_type"),
    (lambda it: it.__setitem__("tests", {"input": ["1\n"], "output": ["1\n"], "memory_limit_mb": True}), "bad_tests"),
    (lambda it: it.__setitem__("tests", {"input": ["1\n"], "output": [1]}), "bad_tests"),
])
def test_more_parse_errors(edit, reason):
    item = raw_item()
    edit(item)
    with pytest.raises(GridParseError) as err:
        parse_item(item)
    assert err.value.failure.reason == reason
    with pytest.raises(GridParseError, match="item must be a JSON object"):
        parse_item([item])


def test_word_bounds_are_inclusive():
    item = raw_item()
    item["responses"][0][0]["text"] = " ".join(["w"] * 40)
    item["responses"][0][1]["text"] = " ".join(["x"] * 250)
    assert check_structure(parse_item(item), GridRules()) == []
    item["responses"][0][0]["text"] = " ".join(["w"] * 39)
    assert [f.reason for f in check_structure(parse_item(item), GridRules())] == ["too_short"]


def _pair(cos):
    """Two unit vectors with the given cosine."""
    return [1.0, 0.0], [cos, float(np.sqrt(1 - cos**2))]


@pytest.mark.parametrize(("domain", "cos", "flagged"), [
    ("creative", 0.93, True), ("reasoning", 0.93, False), ("reasoning", 0.975, True),
    ("code", 0.97, False), ("advisory", 0.92, False),  # the limit itself passes: only cos > limit fails
    ("unknown-domain", 0.93, True),  # falls back to the default thresholds
])
def test_cell_similarity_threshold_is_per_domain(domain, cos, flagged):
    item = parse_item(raw_item(domain=domain))
    a, b = _pair(cos)
    table = {item.base_theme: [0, 0, 1.0], **{v: [0, 0, 1.0] for v in item.variants}}
    table[item.responses[1][0].text], table[item.responses[1][2].text] = [0, 0, 0, *a], [0, 0, 0, *b]
    found = check_semantics([item], GridRules(), fake_embed(table))
    assert [f.reason for f in found.get(item.id, [])] == (["similar_responses"] if flagged else [])


@pytest.mark.parametrize(("domain", "cos", "flagged"), [
    ("creative", 0.29, True), ("creative", 0.31, False), ("code", 0.27, False), ("code", 0.24, True)])
def test_theme_similarity_threshold_is_per_domain(domain, cos, flagged):
    item = parse_item(raw_item(domain=domain))
    a, b = _pair(cos)
    table = {item.base_theme: a, **{v: a for v in item.variants}}
    table[item.variants[3]] = b
    found = check_semantics([item], GridRules(), fake_embed(table))
    assert [f.reason for f in found.get(item.id, [])] == (["off_theme"] if flagged else [])


def test_cross_item_limit_is_the_stricter_domain():
    code, creative = parse_item(raw_item("code-001", "code")), parse_item(raw_item("creative-001", "creative"))
    for cell in creative.responses:
        for r in cell:
            r.text += " other"
    a, b = _pair(0.975)  # below code's limit (raised to 0.99) but above creative's 0.97: the stricter one holds
    table = {it.base_theme: [0, 0, 1.0] for it in (code, creative)}
    table.update({v: [0, 0, 1.0] for it in (code, creative) for v in it.variants})
    table[code.responses[0][0].text], table[creative.responses[0][0].text] = [0, 0, 0, *a], [0, 0, 0, *b]
    rules = GridRules()
    rules.per_domain["code"] = replace(rules.per_domain["code"], cross_item_max_sim=0.99)
    found = check_semantics([code, creative], rules, fake_embed(table))
    assert [f.reason for f in found["creative-001"]] == ["near_duplicate_across_items"] and "code-001" not in found


def test_import_rejects_a_duplicate_id(tmp_path, capsys, monkeypatch):
    import mosaic.embeddings

    def embed(texts):  # themes and variants on one axis, every response on its own
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, t in enumerate(texts):
            out[i, (i % 60) + 1 if t.startswith("w0") else 0] = 1.0
        return out

    monkeypatch.setattr(mosaic.embeddings, "embed", embed)
    item = raw_item()
    (tmp_path / "a.jsonl").write_text(json.dumps(item) + "\n" + json.dumps(item) + "\n")
    assert main(["build", "mosaic", "--from-jsonl", str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "1 grid item(s) failed validation" in err and "a.jsonl:2: duplicate_id: 'creative-001' already at" in err
