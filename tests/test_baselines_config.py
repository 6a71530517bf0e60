"""`mosaic train` options: one dataclass, the paper's defaults, YAML with did-you-mean, flag precedence,
one-line errors, and a light `--help`."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import fields

import pytest

from baselines.config import TrainConfig, load_yaml, resolve
from mosaic.cli import main
from mosaic.errors import MosaicError


def test_defaults_are_the_papers_recipe():
    cfg = TrainConfig(method="mrt", out="x").check()
    assert (cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout) == (16, 32.0, 0.05)
    assert cfg.targets == ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert (cfg.lr, cfg.lr_scheduler, cfg.warmup_ratio, cfg.weight_decay) == (1.2e-4, "cosine", 0.03, 0.01)
    assert (cfg.max_steps, cfg.batch_size * cfg.grad_accum, cfg.precision) == (50, 16, "auto")
    assert cfg.warmup_steps() == 2  # ceil(0.03 * 50)
    assert (cfg.spl_beta, cfg.alpha) == (0.1, 0.15)
    assert TrainConfig(method="dpo", out="x", spl_beta=0.2).alpha == 0.2


def test_every_option_is_a_documented_flag(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    for f in fields(TrainConfig):
        assert f.metadata["help"]
        flag = "--" + f.name.replace("_", "-")
        assert flag in text, flag
    assert "accelerate launch --multi_gpu" in text and "--num_machines 2" in text
    assert "batch_size x grad_accum x processes" in text


def test_yaml_then_flags(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("method: spl\nmax-steps: 7\nspl_alpha: 0.3\nlr: 1\nweight_decay: 1e-3\nout: runs/a\n")
    cfg = resolve(str(path), {"max_steps": 9})
    assert (cfg.method, cfg.max_steps, cfg.alpha, cfg.lr, cfg.out) == ("spl", 9, 0.3, 1.0, "runs/a")
    assert isinstance(cfg.lr, float) and cfg.weight_decay == 1e-3


@pytest.mark.parametrize(("text", "message"), [
    ("max_stpes: 3\n", "unknown option 'max_stpes'; did you mean 'max_steps'?"),
    ("max_steps: many\n", "option 'max_steps' should be int, got 'many'"),
    ("packing: 1\n", "option 'packing' should be bool, got 1"),
    ("lr: fast\n", "option 'lr' should be float, got 'fast'"),
    ("- a\n", "must be a YAML mapping"),
])
def test_yaml_errors_name_file_and_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(MosaicError, match="bad.yaml") as err:
        load_yaml(path)
    assert message in str(err.value)


@pytest.mark.parametrize(("values", "message"), [
    ({"out": "x"}, "--method is required"),
    ({"method": "mrt"}, "--out is required"),
    ({"method": "srt", "out": "x", "k": 2}, "--method srt trains on one response per prompt"),
    ({"method": "dpo", "out": "x", "spl_alpha": 0.2}, "--method dpo is SPL with alpha = beta"),
    ({"method": "spl", "out": "x", "k": 1}, "needs at least 2 responses per prompt"),
    ({"method": "mrt", "out": "x", "pairs": "best"}, "--pairs 'best' is not one of"),
    ({"method": "mrt", "out": "x", "max_length": 4096}, "--pack-length 2048 is shorter than --max-length 4096"),
    ({"method": "mrt", "out": "x", "grad_accum": 0}, "--grad-accum must be >= 1"),
])
def test_inconsistent_options(values, message):
    with pytest.raises(MosaicError) as err:
        TrainConfig(**values).check()
    assert message in str(err.value)


def test_cli_errors_are_one_line_and_help_is_light(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mosaic.cli", "train", "--method", "mrt", "--out", str(tmp_path),
                           "--yaml", str(tmp_path / "missing.yaml")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "missing.yaml: no such YAML config file" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    probe = ("import sys; from mosaic.cli import main\ntry:\n    main(['train', '--help'])\nexcept SystemExit:\n"
             "    pass\nprint('HEAVY', sorted(m for m in ('torch', 'transformers', 'peft', 'accelerate', 'datasets') "
             "if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert "HEAVY []" in proc.stdout, proc.stderr


def test_example_configs_load():
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "baselines" / "configs"
    found = {p.stem: resolve(str(p), {"out": "runs/x"}) for p in sorted(folder.glob("*.yaml"))}
    assert set(found) == {"srt", "mrt", "spl", "dpo"}
    assert {name: cfg.method for name, cfg in found.items()} == {n: n for n in found}
    assert found["mrt"].k == 4 and found["spl"].alpha / found["spl"].spl_beta == pytest.approx(1.5)
    assert found["srt"].lr == 1.2e-4 and found["dpo"].alpha == found["dpo"].spl_beta
