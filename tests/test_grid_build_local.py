"""`--generator local` for real with a tiny random Llama: its replies are garbage, so every item is
rejected as bad_json after its retries, and the report counts the tokens the model really used."""

from __future__ import annotations

import json

from grid_replies import theme, write_jsonl
from transformers import AutoTokenizer

from builders.grid import Failure, GridRules
from builders.grid_journal import read_records
from builders.grid_prompt import build_messages
from builders.grid_themes import load_themes
from mosaic.cli import main


def test_tiny_model_replies_are_rejected_as_bad_json(tiny_model_dir, tmp_path, capsys):
    write_jsonl(tmp_path / "t.jsonl", [theme("a walk in the rain"), theme("a kite that will not fly",
                                                                           domain="advisory")])
    args = ["build", "mosaic", "--themes", str(tmp_path / "t.jsonl"), "--generator", "local",
            "--model", str(tiny_model_dir), "--device", "cpu", "--max-new-tokens", "12", "--max-retries", "1",
            "--no-progress", "--seed", "3"]
    assert main(args + ["--out", str(tmp_path / "out")]) == 2
    assert "no grid item passed validation" in capsys.readouterr().err
    report = json.loads((tmp_path / "out.report.json").read_text())
    assert (report["accepted"], report["rejected"], report["attempts"], report["retries"]) == (0, 2, 4, 2)
    assert report["rejected_by_reason"] == {"bad_json": 2}
    assert report["failed_attempts_by_reason"] == {"bad_json": 4}
    attempts = [r for r in read_records(tmp_path / "out.journal.jsonl")[0] if r["kind"] == "attempt"]
    assert [(r["item"], r["attempt"], r["status"]) for r in attempts] == [
        ("creative-001", 1, "retry"), ("advisory-001", 1, "retry"),
        ("creative-001", 2, "rejected"), ("advisory-001", 2, "rejected")]
    assert all(0 < r["usage"]["completion_tokens"] <= 12 for r in attempts)
    assert report["tokens"]["completion"] == sum(r["usage"]["completion_tokens"] for r in attempts)
    assert report["tokens"]["prompt"] == sum(r["usage"]["prompt_tokens"] for r in attempts)
    # the prompt tokens are the chat-templated prompt's; the retry prompt is longer (it quotes the failure)
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    first = load_themes([tmp_path / "t.jsonl"], GridRules())[0]
    ids = tok.apply_chat_template(build_messages(first, GridRules()), add_generation_prompt=True, tokenize=True,
                                  return_dict=True)["input_ids"]
    assert attempts[0]["usage"]["prompt_tokens"] == len(ids)
    feedback = [Failure(*f) for f in attempts[0]["failures"]]
    retry = tok.apply_chat_template(build_messages(first, GridRules(), feedback), add_generation_prompt=True,
                                    tokenize=True, return_dict=True)["input_ids"]
    assert attempts[2]["usage"]["prompt_tokens"] == len(retry) > len(ids)
    # seeded sampling: the same build reproduces the same replies
    replies = [r["reply_head"] for r in attempts]
    assert main(args + ["--out", str(tmp_path / "again")]) == 2
    again = [r["reply_head"] for r in read_records(tmp_path / "again.journal.jsonl")[0] if r["kind"] == "attempt"]
    assert again == replies
