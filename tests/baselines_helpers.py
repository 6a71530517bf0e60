"""Shared data for the baselines tests: a small Hub-shaped folder whose configs exercise every input rule."""

from __future__ import annotations

import pytest

from mosaic.hub import ConfigSpec, export_folder
from mosaic.schema import MCQRecord, Record, Response


def scored_rows(n: int = 4) -> list[dict]:
    """n prompts x 3 responses; response j has score j, rank 3 - j, label correct unless j == 0."""
    return [Record(item_id=f"it-{i}", source="demo", domain="creative", prompt=f"Write line {i}.",
                   responses=[Response(f"Line {i} answer {j}. " + "more " * (2 * j + i), score=float(j), rank=3 - j,
                                       label="incorrect" if j == 0 else "correct") for j in range(3)]).to_row()
            for i in range(n)]


def export_training_data(folder) -> None:
    rows = scored_rows()
    short = [dict(r) for r in rows]
    short[2] = {**short[2], "responses": short[2]["responses"][:2]}
    unscored = [dict(r) for r in rows]
    unscored[1] = {**unscored[1], "responses": [{**x, "score": None} if j == 1 else x
                                                for j, x in enumerate(unscored[1]["responses"])]}
    mcq = [MCQRecord("q1", "2 + 2?", ["3", "4"], 1, "math").to_row()]
    export_folder(folder, [
        ConfigSpec("demo", {"train": rows, "test": rows}, "demo", "mit", "t", "t"),
        ConfigSpec("short", {"train": short}, "demo", "mit", "t", "t"),
        ConfigSpec("unscored", {"train": unscored}, "demo", "mit", "t", "t"),
        ConfigSpec("evalonly", {"test": rows}, "demo", "mit", "t", "t"),
        ConfigSpec("mcq", {"test": mcq}, "demo", "mit", "t", "t"),
    ])


@pytest.fixture(scope="module")
def train_data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train_data") / "ds"
    export_training_data(folder)
    return folder


def tiny_config(data, model, out, **over):
    """A TrainConfig for a fast CPU run on the tiny model: no warm-up, no dropout, a high learning rate."""
    from baselines.config import TrainConfig

    values = dict(method="mrt", data=str(data), config="demo", model=str(model), out=str(out), max_steps=6,
                  batch_size=12, lr=1e-2, warmup_ratio=0.0, lora_dropout=0.0, max_length=128, pack_length=256,
                  progress=False)
    values.update(over)
    return TrainConfig(**values).check()
