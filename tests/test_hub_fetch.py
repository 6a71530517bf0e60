"""Hub model ids, through a local stand-in for the Hub (tests/fake_hub.py) and the real huggingface_hub
client: `mosaic train` and `mosaic eval` fetch the snapshot once, record its commit, and work from the
cache when the Hub cannot be reached; errors name the repo, the revision and the fix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from baselines_helpers import train_data  # noqa: F401
from fake_hub import FakeHub, FakeRepo, serving

from mosaic.hub_fetch import adapter_files, model_files

SHA = "0123456789abcdef0123456789abcdef01234567"
LORA_SHA = "fedcba9876543210fedcba9876543210fedcba98"
DATA_SHA = "00112233445566778899aabbccddeeff00112233"


@pytest.mark.parametrize(("repo", "picked"), [
    (["config.json", "tokenizer.json", "tokenizer_config.json", "model.safetensors", "README.md", ".gitattributes",
      "onnx/model.safetensors", "onnx/config.json", "consolidated.safetensors", "pytorch_model.bin",
      "training_args.bin", "chat_template.jinja", "generation_config.json"],
     ["chat_template.jinja", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
      "tokenizer_config.json"]),
    (["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
      "model.safetensors.index.json", "tokenizer.model", "merges.txt", "vocab.json", "notes.txt"],
     ["config.json", "merges.txt", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
      "model.safetensors.index.json", "tokenizer.model", "vocab.json"]),
    (["config.json", "pytorch_model.bin", "training_args.bin", "vocab.txt", "spiece.model"],
     ["config.json", "pytorch_model.bin", "spiece.model", "vocab.txt"]),
    (["adapter_config.json", "adapter_model.safetensors", "tokenizer.json"], []),
    (["config.json", "weights/model.safetensors"], []),
])
def test_model_files_takes_top_level_configs_tokenizer_and_one_weights_format(repo, picked):
    assert model_files(repo) == picked


@pytest.mark.parametrize(("repo", "picked"), [
    (["adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "training_card.json", "README.md",
      "checkpoint-50/adapter_model.safetensors", "tokenizer.json"],
     ["adapter_config.json", "adapter_model.safetensors", "training_card.json"]),
    (["adapter_config.json", "adapter_model.bin"], ["adapter_config.json", "adapter_model.bin"]),
    (["adapter_config.json", "checkpoint-50/adapter_model.safetensors"], []),
    (["config.json", "model.safetensors"], []),
])
def test_adapter_files_takes_config_one_weights_file_and_the_card(repo, picked):
    assert adapter_files(repo) == picked


def _mosaic(*args, env):
    proc = subprocess.run([sys.executable, "-m", "mosaic.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def _env(endpoint: str, cache) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    return {**env, "HF_ENDPOINT": endpoint, "HF_HUB_CACHE": str(cache), "HF_HUB_DISABLE_TELEMETRY": "1"}


def test_train_and_eval_a_hub_model_and_adapter_online_then_from_the_cache(tiny_model_dir, train_data,  # noqa: F811
                                                                           tmp_path):
    hub = FakeHub({"org/tiny": FakeHub.repo_from_folder(tiny_model_dir, SHA, {"onnx/model.safetensors": b"x",
                                                                               "README.md": b"# tiny"})})
    cache, adapter = tmp_path / "hub", tmp_path / "adapter"
    eval_args = ("--data", train_data, "--configs", "demo", "--metrics", "ref_loss", "--no-progress")
    with serving(hub):
        online = _env(hub.url, cache)
        code, _, err = _mosaic("train", "--method", "srt", "--model", "org/tiny", "--data", train_data, "--config",
                               "demo", "--max-steps", 1, "--warmup-ratio", 0, "--lr", 0.01, "--batch-size", 2,
                               "--max-length", 64, "--pack-length", 128, "--out", adapter, "--no-progress", env=online)
        assert code == 0, err[-3000:]
        hub.repos["org/tiny-lora"] = FakeHub.repo_from_folder(adapter, LORA_SHA, {"README.md": b"# lora"})
        code, _, err = _mosaic("eval", "--model", "org/tiny", "--revision", "main", "--adapter", adapter,
                               *eval_args, "--out", tmp_path / "local_adapter.json", env=online)
        assert code == 0, err[-3000:]
        code, _, err = _mosaic("eval", "--model", "org/tiny", "--adapter", "org/tiny-lora", "--adapter-revision",
                               "main", *eval_args, "--out", tmp_path / "hub_adapter.json", env=online)
        assert code == 0, err[-3000:]
        fetched = [r.split("/resolve/")[1] for r in hub.requests if r.startswith("GET ") and "/resolve/" in r]
        for args, message in (
                (("--model", "org/tiny", "--revision", "nope"),
                 "model 'org/tiny' at revision 'nope': the Hub repo has no such branch, tag or commit"),
                (("--model", "org/other"), "model 'org/other': no such local folder, and no such repo on the Hub"),
                (("--model", "org/tiny", "--adapter", "org/tiny-lora", "--adapter-revision", "v0"),
                 "adapter 'org/tiny-lora' at revision 'v0': the Hub repo has no such branch, tag or commit"),
                (("--model", "org/tiny", "--adapter", "org/tiny"), "adapter 'org/tiny': the Hub repo has no "
                 "adapter_config.json with adapter_model.safetensors or adapter_model.bin at its top level"),
                (("--model", "org/tiny", "--adapter", adapter, "--adapter-revision", "main"),
                 f"--adapter-revision main: {adapter} is not a Hub adapter id"),
                (("--model", "org/tiny", "--adapter-revision", "main"), "give the Hub adapter id with --adapter")):
            code, _, err = _mosaic("eval", *args, *eval_args, "--out", tmp_path / "x.json", env=online)
            assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (args, err)
    card = json.loads((adapter / "training_card.json").read_text())
    assert card["model"]["id"] == "org/tiny" and card["model"]["revision"] == SHA
    assert card["model"]["weights_hash"] and card["config"]["revision"] is None and card["model"]["path"] is None
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == "org/tiny"
    local, from_hub = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("local_adapter", "hub_adapter"))
    for res in (local, from_hub):
        assert res["model"]["id"] == "org/tiny" and res["model"]["revision"] == SHA
        assert res["model"]["weights_hash"] == card["model"]["weights_hash"]  # the adapter's base check ran on it
        assert res["adapter"]["training_card"]["method"] == "srt"
    assert local["adapter"]["repo"] is None and local["config"]["adapter_revision"] is None
    assert from_hub["adapter"]["repo"] == {"id": "org/tiny-lora", "revision": LORA_SHA}
    assert from_hub["config"]["adapter_revision"] == "main" and from_hub["adapter"]["hash"] == local["adapter"]["hash"]
    value = local["metrics"]["demo/ref_loss"]["value"]
    assert from_hub["metrics"]["demo/ref_loss"]["value"] == value
    assert sorted(fetched) == sorted([f"{SHA}/{f}" for f in model_files(list(hub.repos["org/tiny"].files))]
                                     + [f"{LORA_SHA}/{f}" for f in ("adapter_config.json",
                                                                    "adapter_model.safetensors",
                                                                    "training_card.json")])  # each once, no extras

    snapshot = cache / "models--org--tiny" / "snapshots" / SHA
    partial = tmp_path / "partial"
    shutil.copytree(cache, partial, symlinks=True)
    (partial / snapshot.relative_to(cache) / "tokenizer.json").unlink()  # as an interrupted download leaves it
    (snapshot / "pytorch_model.bin").write_bytes(b"left by a fuller download")  # not part of the weights hash
    closed = _env("http://127.0.0.1:9", cache)  # discard port, outside the ephemeral range: always refused
    code, _, err = _mosaic("eval", "--model", "org/tiny", "--adapter", "org/tiny-lora", *eval_args, "--out",
                           tmp_path / "cached.json", env=closed)
    assert code == 0, err[-3000:]
    for repo, commit in (("org/tiny", SHA), ("org/tiny-lora", LORA_SHA)):
        assert f"the Hub cannot be reached ([Errno 111] Connection refused); using the cached copy of {repo} " \
               f"(commit {commit})" in err
    assert "Retry" not in err
    cached = json.loads((tmp_path / "cached.json").read_text())
    assert cached["model"]["revision"] == SHA and cached["adapter"]["repo"]["revision"] == LORA_SHA
    assert cached["metrics"]["demo/ref_loss"]["value"] == value
    assert cached["model"]["weights_hash"] == card["model"]["weights_hash"]
    code, _, err = _mosaic("eval", "--model", "org/tiny", *eval_args, "--out", tmp_path / "x.json",
                           env={**online, "HF_HUB_CACHE": str(partial), "HF_HUB_OFFLINE": "1"})
    assert code == 2 and "cannot load model 'org/tiny': the Hub cannot be reached (Cannot reach" in err
    assert "offline mode is enabled" in err and "holds no complete copy of it" in err
    code, _, err = _mosaic("eval", "--model", "org/tiny", *eval_args, "--out", tmp_path / "x.json",
                           env={**closed, "HF_HUB_CACHE": str(tmp_path / "empty")})
    assert code == 2 and "cannot load model 'org/tiny': the Hub cannot be reached" in err
    assert f"the Hugging Face cache ({tmp_path / 'empty'}) holds no copy of it" in err and "hf download org/tiny" in err
    assert len(err.strip().splitlines()) == 1 and "Retry" not in err  # one try, not a minute of retries


def test_gated_weightless_and_malformed_repos_are_named_in_one_line(tmp_path, tiny_model_dir):
    gated = FakeHub.repo_from_folder(tiny_model_dir, SHA)
    gated.gated = True  # its info is public, its files are not: refused at the download
    adapter_only = FakeRepo(SHA, {"adapter_config.json": b"{}", "adapter_model.safetensors": b"x"})
    probe = ("import sys\nfrom mosaic.errors import MosaicError\nfrom mosaic.hub_fetch import MODEL_FILES, "
             "fetch_hub_snapshot\nfor repo, rev in [('org/gated', None), ('org/adapter', 'v2'), ('org/adapter', None),"
             " ('org/x--y', None), ('org/na me', None)]:\n    try:\n        fetch_hub_snapshot(repo, rev, MODEL_FILES)"
             "\n    except MosaicError as exc:\n        print(exc)\n")
    with serving(FakeHub({"org/gated": gated, "org/adapter": adapter_only})) as hub:
        proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                              env=_env(hub.url, tmp_path / "hub"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 5 and "Traceback" not in proc.stderr
    assert lines[0].startswith("model 'org/gated': gated on the Hub; accept its terms")
    assert lines[1] == "model 'org/adapter' at revision 'v2': the Hub repo has no such branch, tag or commit"
    assert lines[2].startswith("model 'org/adapter': the Hub repo has no weights transformers loads")
    assert lines[3] == "model 'org/x--y': no such local folder, and not a valid Hub id (Cannot have -- or .. in " \
                       "repo_id: 'org/x--y'.)"
    assert lines[4].startswith("model 'org/na me': no such local folder, and not a valid Hub id (Repo id must")


def _load_split(env, config: str = "demo", split: str = "test"):
    probe = (f"from mosaic.hub import load_split; ds = load_split('org/bench', {config!r}, {split!r}); "
             "print(len(ds), sorted(ds['id']))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, env=env)
    return proc.returncode, proc.stdout.strip(), proc.stderr


def test_a_hub_dataset_split_is_read_from_its_snapshot_online_and_offline(train_data, tmp_path):  # noqa: F811
    from mosaic.hub import load_split

    repo = FakeHub.repo_from_folder(train_data, DATA_SHA, {"other/test-00000-of-00001.parquet": b"not parquet"})
    hub = FakeHub({}, datasets={"org/bench": repo})
    expected = f"4 {sorted(load_split(train_data, 'demo', 'test')['id'])}"
    cache = tmp_path / "hub"
    with serving(hub):
        online = _env(hub.url, cache)
        code, out, err = _load_split(online)
        assert code == 0 and out == expected, err[-3000:]
        fetched = sorted(r.split("/resolve/")[1] for r in hub.requests if r.startswith("GET ") and "/resolve/" in r)
        assert fetched == [f"{DATA_SHA}/README.md", f"{DATA_SHA}/demo/test-00000-of-00001.parquet"]  # that split
        code, _, err = _load_split(online, config="nope")
        assert code == 1 and "org/bench: unknown config 'nope'" in err
        code, _, err = _mosaic("eval", "--data", "org/none", "--out", tmp_path / "x.json", env=online)
        assert code == 2 and "dataset 'org/none': no such local folder, and no such repo on the Hub" in err
        assert "Traceback" not in err
        hub.api_status = 503  # a server error: the cached copy, as when the Hub cannot be reached at all
        code, out, err = _load_split(online)
        assert code == 0 and out == expected, err[-3000:]
        assert f"the Hub cannot be reached (HTTP 503); using the cached copy of org/bench (commit {DATA_SHA})" in err

    closed = _env("http://127.0.0.1:9", cache)
    code, out, err = _load_split(closed)
    assert code == 0 and out == expected, err[-3000:]
    note = f"the Hub cannot be reached ([Errno 111] Connection refused); using the cached copy of org/bench " \
           f"(commit {DATA_SHA})"
    assert err.count(note) == 1 and "Retry" not in err  # once, though the card and the split were looked up
    code, _, err = _load_split(closed, split="train")  # that split was never fetched
    assert code == 1 and "cannot load dataset 'org/bench' at revision '" + DATA_SHA + "'" in err
    assert "holds no complete copy of it" in err and "hf download --repo-type dataset org/bench" in err
    code, _, err = _mosaic("eval", "--data", "org/bench", "--out", tmp_path / "x.json",
                           env={**closed, "HF_HUB_CACHE": str(tmp_path / "empty")})
    assert code == 2 and "cannot load dataset 'org/bench': the Hub cannot be reached" in err
    assert "holds no copy of it; pass a local folder with --data" in err and len(err.strip().splitlines()) == 1


def test_a_hub_dataset_of_json_lines_goes_through_datasets_and_its_cache_offline(train_data, tmp_path):  # noqa: F811
    from mosaic.hub import load_split

    repo = FakeHub.repo_from_folder(train_data, DATA_SHA)
    for split in ("train", "test"):  # the card's paths demo/SPLIT-* now find JSON lines (one format a config)
        del repo.files[f"demo/{split}-00000-of-00001.parquet"]
        rows = load_split(train_data, "demo", split).to_list()
        repo.files[f"demo/{split}-00000-of-00001.jsonl"] = "".join(json.dumps(r) + "\n" for r in rows).encode()
    expected = f"4 {sorted(r['id'] for r in rows)}"
    with serving(FakeHub({}, datasets={"org/bench": repo})) as hub:
        online = {**_env(hub.url, tmp_path / "hub"), "HF_HOME": str(tmp_path / "home")}
        code, out, err = _load_split(online)
        assert code == 0 and out == expected, err[-3000:]
    assert (tmp_path / "home" / "datasets" / "org___bench").is_dir()  # datasets.load_dataset read it
    code, out, err = _load_split({**online, "HF_ENDPOINT": "http://127.0.0.1:9"})
    assert code == 0 and out == expected, err[-3000:]
    assert "Using the latest cached version of the dataset" in err and "Retry" not in err
