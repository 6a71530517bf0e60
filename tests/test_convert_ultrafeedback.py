"""`mosaic build ultrafeedback` on fixtures in openbmb/UltraFeedback's row format."""

from __future__ import annotations

import pytest
from convert_harness import FIXTURES, build, built, card, load, read_jsonl, to_parquet

FIX = FIXTURES / "ultrafeedback"


@pytest.fixture(scope="module")
def uf(tmp_path_factory):
    out = tmp_path_factory.mktemp("uf")
    summary = built("ultrafeedback", "--source-file", FIX / "train.jsonl", out=out)
    return out, summary, load(out, "ultrafeedback", "train")


def test_card_config_split_and_licence(uf):
    out, _, rows = uf
    entry = card(out, "ultrafeedback")
    assert list(entry["splits"]) == ["train"] and entry["splits"]["train"]["rows"] == len(rows) == 4
    assert entry["license"] == "mit" and entry["layout"] == "record"
    assert "declared licence is mit" in entry["provenance"]
    assert "never matched by position" in entry["notes"]["mapping"]
    assert entry["notes"]["rejected"] == "none"


def test_prompt_ids_and_meta(uf):
    row = uf[2][0]
    assert row["prompt"] == "Name three primary colors."
    assert (row["id"], row["item_id"], row["variant"]) == ("ultrafeedback/train-0/0", "train-0", 0)
    assert (row["source"], row["domain"], row["tests"]) == ("ultrafeedback", "instruction", None)
    assert row["meta"]["source_row"] == "0" and row["meta"]["extra"] == '{"source": "evol_instruct"}'


def test_model_comes_from_the_completion_not_its_position(uf):
    row = uf[2][0]
    # the row's `models` list is alpaca-7b, gpt-4, llama-2-13b-chat, starchat: a different order
    assert [(r["model"], r["text"]) for r in row["responses"]] == [
        ("gpt-4", "Red, yellow and blue.\n"), ("starchat", "Red, green and blue (for light)."),
        ("alpaca-7b", "The three primary colors are red, yellow, and blue.   "),
        ("llama-2-13b-chat", "Red, blue, yellow.")]


def test_score_is_overall_score_and_ranks_share_ties(uf):
    responses = uf[2][0]["responses"]
    assert [r["score"] for r in responses] == [8.5, 6.0, 7.5, 6.0]
    assert [r["rank"] for r in responses] == [1, 3, 2, 3]
    assert all(r["label"] is None and r["language"] is None for r in responses)


def test_missing_overall_score_scores_the_whole_row_by_mean_rating_ignoring_na(uf):
    out, summary, rows = uf
    responses = rows[1]["responses"]
    # one scale per prompt: two completions lack overall_score (1-10), so all four are scored by their
    # mean aspect rating (1-5). ultralm: 4, N/A, 5, 3 -> 4.0; bard: all N/A -> no score, no rank;
    # wizardlm (overall 3.0): 2, 3, 1, 4 -> 2.5; falcon (overall 7.0): 4, 4, 4, 4 -> 4.0
    assert [r["score"] for r in responses] == [4.0, None, 2.5, 4.0]
    assert [r["rank"] for r in responses] == [1, None, 3, 1]
    assert "responses without a score: 1" in summary and "scored_by_ratings: 1" in summary
    counted = card(out, "ultrafeedback")["notes"]["counted"]
    assert counted["responses without a score"] == 1 and counted["scored_by_ratings"] == 1
    assert [r["score"] for r in rows[0]["responses"]] == [8.5, 6.0, 7.5, 6.0]  # rows with all scores keep them


def test_empty_response_dropped_and_counted(uf):
    out, summary, rows = uf
    assert [r["model"] for r in rows[2]["responses"]] == ["gpt-3.5-turbo", "vicuna-33b", "mpt-30b-chat"]
    assert [r["rank"] for r in rows[2]["responses"]] == [1, 2, 3]
    assert "empty responses dropped: 1" in summary


def test_duplicate_prompts_keep_separate_ids_and_are_counted(uf):
    out, summary, rows = uf
    assert rows[3]["prompt"] == rows[0]["prompt"] and rows[3]["id"] == "ultrafeedback/train-3/0"
    assert "duplicate prompts 1" in summary
    assert card(out, "ultrafeedback")["notes"]["per_split"]["train"]["duplicate_prompts"] == 1


def test_summary_counts_and_responses_per_prompt(uf):
    summary = uf[1]
    assert "read 4, written 4, rejected 0" in summary
    assert "responses per prompt min 1 / mean 3.0 / max 4" in summary


def test_one_item_list_annotation_shape(tmp_path):
    built("ultrafeedback", "--source-file", FIX / "train_listshape.jsonl", out=tmp_path)
    responses = load(tmp_path, "ultrafeedback", "train")[0]["responses"]
    # alpaca-7b has no overall_score, so both are scored by their ratings (gpt-4's overall 8.0 is not used)
    assert [(r["model"], r["score"], r["rank"]) for r in responses] == [("alpaca-7b", 4.0, 2), ("gpt-4", 4.75, 1)]


def test_parquet_in_hub_schema_gives_the_same_rows(uf, tmp_path):
    path = to_parquet(FIX / "train.jsonl", "ultrafeedback", tmp_path / "uf.parquet")
    built("ultrafeedback", "--source-file", path, out=tmp_path / "out")
    assert load(tmp_path / "out", "ultrafeedback", "train") == uf[2]


def test_nan_overall_score_falls_back_too(tmp_path):
    rows = read_jsonl(FIX / "train.jsonl")[:1]
    rows[0]["completions"][0]["overall_score"] = float("nan")
    built("ultrafeedback", "--source-file", to_parquet(rows, "ultrafeedback", tmp_path / "nan.parquet"),
          out=tmp_path / "out")
    responses = load(tmp_path / "out", "ultrafeedback", "train")[0]["responses"]
    # ratings 5,5,5,5 / 3,4,4,3 / 4,4,5,5 / 3,3,3,4: the NaN puts the whole row on the ratings scale
    assert [(r["score"], r["rank"]) for r in responses] == [(5.0, 1), (3.5, 3), (4.5, 2), (3.25, 4)]


def test_responses_per_prompt_is_a_seeded_subset(uf, tmp_path):
    args = ("--source-file", FIX / "train.jsonl", "--responses-per-prompt", "2", "--seed", "3")
    built("ultrafeedback", *args, out=tmp_path / "a")
    built("ultrafeedback", *args, out=tmp_path / "b")
    a, b = load(tmp_path / "a", "ultrafeedback", "train"), load(tmp_path / "b", "ultrafeedback", "train")
    assert a == b
    for full, sub in zip(uf[2], a):
        texts = [r["text"] for r in full["responses"]]
        kept = [r["text"] for r in sub["responses"]]
        assert len(kept) == min(2, len(texts)) and kept == [t for t in texts if t in kept]
        scored = sorted((r["score"] for r in sub["responses"] if r["score"] is not None), reverse=True)
        assert all(r["rank"] == 1 + scored.index(r["score"]) for r in sub["responses"] if r["score"] is not None)


MALFORMED = {  # row -> (field, reason) of fixtures/ultrafeedback/malformed.jsonl
    0: ("instruction", "missing_field"),
    1: ("instruction", "empty_prompt"),
    2: ("completions[0].annotations.helpfulness.Rating", "bad_rating"),
    3: ("completions", "no_responses"),
    4: ("completions[0].model", "missing_field"),
}


def test_on_error_skip_counts_every_reason(tmp_path):
    summary = built("ultrafeedback", "--source-file", FIX / "malformed.jsonl", "--on-error", "skip", out=tmp_path)
    assert "read 6, written 1, rejected 5" in summary
    for row, (field, reason) in MALFORMED.items():
        assert f"rejected ultrafeedback split train row {row}: field {field}: {reason}" in summary
    expected = {"missing_field": 2, "empty_prompt": 1, "bad_rating": 1, "no_responses": 1}
    assert card(tmp_path, "ultrafeedback")["notes"]["rejected"] == expected
    assert [r["id"] for r in load(tmp_path, "ultrafeedback", "train")] == ["ultrafeedback/train-5/0"]


def test_on_error_raise_stops_naming_row_field_reason(tmp_path):
    rc, _, err = build("ultrafeedback", "--source-file", FIX / "malformed.jsonl", out=tmp_path)
    assert rc == 2 and "Traceback" not in err
    assert "ultrafeedback split train row 0: field instruction: missing_field" in err
    assert not (tmp_path / "README.md").exists()
