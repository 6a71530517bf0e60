"""Grid builder end to end against a real chat-completions server on 127.0.0.1 with scripted replies."""

from __future__ import annotations

import json

import pytest
from datasets import load_dataset
from grid_replies import duplicate, grid, off_theme, reply, theme, write_jsonl, wrong_count
from grid_server import Scripted, ScriptedServer, base_theme

from builders.grid_journal import read_records, replay
from mosaic.cli import main

THEMES = {
    "valid": "a lighthouse keeper's last night before automation",
    "malformed": "a dragon who is afraid of heights",
    "count": "how to negotiate a first salary offer",
    "duplicate": "a letter from a tree to the city that wants to cut it down",
    "off": "how to keep a sourdough starter alive while travelling",
    "slow": "a chess game narrated by the losing king",
    "busy": "how to split rent fairly between roommates with different rooms",
    "hopeless": "a recipe for a soup that tastes like a memory",
    "copycat": "a robot that learns to garden",
}
DOMAIN = {"count": "advisory", "off": "advisory", "busy": "advisory"}


def script(request: dict, n: int) -> Scripted:
    key = {v: k for k, v in THEMES.items()}[base_theme(request)]
    text = THEMES[key]
    if key == "malformed" and n == 0:
        return Scripted("Sure! {'prompt_variants': [oops")
    if key == "count" and n == 0:
        return Scripted(reply(wrong_count(text)))
    if key == "duplicate" and n == 0:
        return Scripted(reply(duplicate(text)))
    if key == "off" and n == 0:
        return Scripted(reply(off_theme(text)))
    if key == "slow" and n == 0:
        return Scripted(reply(grid(text)), delay_s=10.0)  # longer than --timeout: the client retries
    if key == "busy" and n == 0:
        return Scripted(status=429, headers={"Retry-After": "1"})
    if key == "hopeless":
        return Scripted(reply(wrong_count(text)))
    if key == "copycat" and n == 0:  # the very responses of the "valid" item: a cross-item near-duplicate
        return Scripted(reply({**grid(text), "responses": grid(THEMES["valid"])["responses"]}))
    return Scripted(reply(grid(text), fence=key == "malformed"), usage={"prompt_tokens": 100,
                                                                       "completion_tokens": 50 + n})


def user_prompt(request: dict) -> str:
    return request["messages"][-1]["content"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grid_http")
    write_jsonl(tmp / "themes.jsonl", [theme(THEMES[k], DOMAIN.get(k, "creative")) for k in THEMES])
    with ScriptedServer(script) as server:
        code = main(["build", "mosaic", "--themes", str(tmp / "themes.jsonl"), "--generator", "http",
                     "--base-url", server.url, "--model", "scripted", "--api-key", "sk-test", "--out", str(tmp / "out"),
                     "--concurrency", "3", "--timeout", "6", "--max-retries", "2", "--no-progress",
                     "--split-fractions", "train=0.5,test=0.5"])
    return tmp, server, code


def test_build_accepts_retries_and_rejects_as_scripted(built):
    tmp, server, code = built
    assert code == 0
    report = json.loads((tmp / "out.report.json").read_text())
    assert (report["themes"], report["accepted"], report["rejected"]) == (9, 8, 1)
    assert report["rejected_by_reason"] == {"variant_count": 1}
    # item-level retries: malformed, count, duplicate, off, copycat once each; hopeless twice
    assert report["retries"] == 7 and report["attempts"] == 16
    assert report["failed_attempts_by_reason"] == {
        "bad_json": 1, "variant_count": 4, "duplicate_responses": 1, "off_theme": 1,
        "near_duplicate_across_items": 1}
    # usage as the server reported it (the timed-out and the 429 request never became attempts)
    assert report["tokens"]["prompt"] == 16 * 100
    assert report["tokens"]["completion"] == 16 * 50 + 7  # 7 valid replies were each a theme's 2nd request
    assert report["tokens"]["completion"] == sum(
        r["usage"]["completion_tokens"] for r in read_records(tmp / "out.journal.jsonl")[0] if r.get("usage"))
    assert report["tokens"]["total"] == 16 * 150 + 7
    assert list(report["rejected_items"]) == ["creative-005"]
    assert report["rejected_items"]["creative-005"][0].startswith("variant_count: 3 prompt variants")


def test_retry_prompt_carries_the_failure_reason(built):
    _, server, _ = built
    expected = {"malformed": "bad_json", "count": "variant_count: 3 prompt variants, expected 4",
                "duplicate": "duplicate_responses: variant 1: responses 0 and 3 are identical",
                "off": "off_theme: prompt_variants[2] cosine to base_theme",
                "copycat": "near_duplicate_across_items"}
    for key, reason in expected.items():
        first, second = server.requests_for(THEMES[key])[:2]
        assert "rejected by the validator" not in user_prompt(first)
        assert "rejected by the validator" in user_prompt(second) and reason in user_prompt(second), key
    hopeless = server.requests_for(THEMES["hopeless"])
    assert len(hopeless) == 3  # 1 + --max-retries 2


def test_transport_retries_on_timeout_and_429(built):
    _, server, _ = built
    assert len(server.requests_for(THEMES["slow"])) == 2
    busy = [s for s in server.seen if s.key == THEMES["busy"]]
    assert len(busy) == 2 and busy[1].time - busy[0].time >= 1.0  # honoured Retry-After: 1
    assert all(s.headers["Authorization"] == "Bearer sk-test" for s in server.seen)
    body = server.seen[0].request
    assert body["model"] == "scripted" and body["max_tokens"] == 8192 and isinstance(body["seed"], int)


def test_output_rows_splits_journal_and_items(built):
    tmp, _, _ = built
    rows = []
    for split in ("train", "test"):
        rows += [dict(r, split=split) for r in load_dataset(str(tmp / "out"), "mosaic", split=split).to_list()]
    assert len(rows) == 8 * 4 and len({r["id"] for r in rows}) == 32
    by_item = {}
    for r in rows:
        by_item.setdefault(r["item_id"], set()).add(r["split"])
    assert all(len(s) == 1 for s in by_item.values())  # variants never straddle splits
    assert sorted(r["variant"] for r in rows if r["item_id"] == "creative-001") == [0, 1, 2, 3]
    first = next(r for r in rows if r["item_id"] == "creative-001" and r["variant"] == 0)
    assert first["prompt"] == f"Write about {THEMES['valid']}."
    assert [x["label"] for x in first["responses"]] == [f"approach {j}" for j in range(4)]
    assert first["meta"]["difficulty"] == "introductory" and first["source"] == "mosaic"
    items = [json.loads(line) for line in (tmp / "out.items.jsonl").read_text().splitlines()]
    assert sorted(i["id"] for i in items) == sorted(by_item)
    ledger = replay(read_records(tmp / "out.journal.jsonl")[0])
    assert ledger.state("creative-005").status == "rejected" and ledger.state("creative-005").attempts == 3
    assert ledger.state("creative-006").attempts == 2  # copycat: revoked by the cross-item check, then redone
    card = (tmp / "out" / "README.md").read_text()
    assert "builders.grid_build" in card and "variant_count" in card


def test_reimport_of_generated_items(built, tmp_path):
    tmp, _, _ = built
    code = main(["build", "mosaic", "--from-jsonl", str(tmp / "out.items.jsonl"), "--out", str(tmp_path / "again"),
                 "--split-fractions", "train=0.5,test=0.5"])
    assert code == 0
    assert len(load_dataset(str(tmp_path / "again"), "mosaic", split="train")) + len(
        load_dataset(str(tmp_path / "again"), "mosaic", split="test")) == 32


def run(*args):
    return main(["build", "mosaic", *map(str, args)])


def test_cli_modes_and_errors(tmp_path, capsys):
    write_jsonl(tmp_path / "t.jsonl", [theme("a walk in the rain")])
    with pytest.raises(SystemExit) as exc:
        run("--themes", tmp_path / "t.jsonl", "--from-jsonl", tmp_path / "t.jsonl", "--out", tmp_path / "o")
    assert exc.value.code == 2 and "not allowed with argument" in capsys.readouterr().err
    assert run("--themes", tmp_path / "t.jsonl", "--generator", "htp", "--out", tmp_path / "o") == 2
    assert "unknown generator 'htp'" in (err := capsys.readouterr().err) and "did you mean 'http'?" in err
    assert run("--themes", tmp_path / "t.jsonl", "--out", tmp_path / "o") == 2
    assert "--themes needs --generator" in capsys.readouterr().err
    assert run("--from-jsonl", tmp_path / "t.jsonl", "--generator", "http", "--out", tmp_path / "o") == 2
    assert "--generator applies only with --themes" in capsys.readouterr().err
    assert run("--from-jsonl", tmp_path / "t.jsonl", "--no-progress", "--out", tmp_path / "o") == 2  # not a theme row
    assert "applies only with --themes" not in capsys.readouterr().err  # every command takes --no-progress
    assert run("--themes", tmp_path / "t.jsonl", "--generator", "http", "--model", "m", "--out", tmp_path / "o") == 2
    assert "needs --base-url" in capsys.readouterr().err
    assert run("--themes", tmp_path / "t.jsonl", "--generator", "local", "--concurrency", "8", "--out",
               tmp_path / "o") == 2
    assert "--generator local does not take --concurrency (a flag of --generator http)" in capsys.readouterr().err
    assert run("--themes", tmp_path / "t.jsonl", "--generator", "local", "--split-fractions", "train=0.5,test=0.6",
               "--out", tmp_path / "o") == 2
    assert "split fractions must sum to 1" in capsys.readouterr().err
    (tmp_path / "o.journal.jsonl").write_text('{"kind": "session"}\n')
    assert run("--themes", tmp_path / "t.jsonl", "--generator", "http", "--model", "m", "--base-url",
               "http://127.0.0.1:9/v1", "--out", tmp_path / "o") == 2
    assert "a build journal already exists; pass --resume" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_auth_failure_stops_the_build_and_keeps_the_journal(tmp_path, capsys):
    write_jsonl(tmp_path / "t.jsonl", [theme("a walk in the rain"), theme("a city seen by its pigeons")])
    with ScriptedServer(lambda request, n: Scripted(status=401)) as server:
        code = run("--themes", tmp_path / "t.jsonl", "--generator", "http", "--model", "m", "--base-url", server.url,
                   "--out", tmp_path / "o", "--no-progress", "--concurrency", "1")
    assert code == 2 and len(server.seen) == 1
    assert "HTTP 401" in (err := capsys.readouterr().err) and "rerun with --resume" in err
    records = read_records(tmp_path / "o.journal.jsonl")[0]
    assert [r["kind"] for r in records] == ["session"]
