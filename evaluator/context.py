"""What metric functions see: the config, the rows per data config, and shared lazy state
(the model, memoised computations such as reference NLLs, generations and embeddings)."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from evaluator.config import EvalConfig


@dataclass
class EvalContext:
    cfg: EvalConfig
    rows: dict[str, list[dict]]  # data config -> rows of the evaluated split, in order
    layouts: dict[str, str]  # data config -> "record" | "mcq"
    load_model: Callable[[], Any]
    progress: bool = True
    notes: dict[str, Any] = field(default_factory=dict)  # facts for the results file (format used, tokens)
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    _memo: dict = field(default_factory=dict)
    _model: Any = None

    def model(self):
        if self._model is None:
            with self.timer("model_load"):
                self._model = self.load_model()
        return self._model

    def memo(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]

    def passes(self, stage: str, rows: int, what: str, option: str) -> Any:
        """The `mosaic.memory.Passes` of a stage (reference_loss, calibration), one per run so that a size
        halved on running out of GPU memory holds for the stage's later configs too."""
        from mosaic.memory import Passes

        return self.memo(("passes", stage), lambda: Passes(rows, what, option))

    def note_passes(self, stage: str, passes: Any) -> None:
        """notes.out_of_memory[stage] = the passes' record, when a pass was halved."""
        if passes.record():
            self.notes.setdefault("out_of_memory", {})[stage] = passes.record()

    @contextmanager
    def timer(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start
