"""The leaderboard's actions, independent of the UI: submit a results file, queue a model, admin.

The Gradio app (app.py) and its API call these; every answer is an `Outcome` whose message is
plain text. Nothing here imports gradio.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leaderboard_app.policy import DEFAULT_MAX_UPLOAD_BYTES, ModelPolicy, parse_labels, token_ok
from leaderboard_app.records import UPLOADED, Outcome, Request, ResultRow, SubmissionRejected
from leaderboard_app.scoring_queue import RequestQueue
from leaderboard_app.store import Store
from leaderboard_app.submission import Benchmark, load_benchmark, parse_results
from mosaic.errors import MosaicError

REFERENCE_RESULTS = Path(__file__).resolve().parent / "reference_results"  # shipped GPU baselines
HIDE, UNHIDE, DELETE, RERUN = "hide result", "unhide result", "delete result", "re-run request"
ADMIN_ACTIONS = (HIDE, UNHIDE, DELETE, RERUN)
MAX_ROW_ID = 2**63 - 1  # SQLite INTEGER


def row_id(value: Any) -> int | None:
    """A result or request id as typed (text or number), or None when it cannot be one."""
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip()) if isinstance(value, str) else int(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return number if 1 <= number <= MAX_ROW_ID else None


@dataclass
class Leaderboard:
    store: Store
    benchmarks: dict[str, Benchmark]
    policy: ModelPolicy = ModelPolicy()
    admin_token: str | None = None
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES

    @classmethod
    def open(cls, db: str | Path, benchmarks: list[str], model_roots: list[str] | None = None,
             admin_token: str | None = None, max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES) -> Leaderboard:
        by_suite: dict[str, Benchmark] = {}
        for source in benchmarks:
            bench = load_benchmark(source)
            if bench.suite in by_suite:
                raise MosaicError(f"--benchmark {by_suite[bench.suite].source} and --benchmark {source} are both "
                                  f"suite {bench.suite!r} (results name their suite by folder or repo name); "
                                  "rank one of them, or rename a folder")
            by_suite[bench.suite] = bench
        return cls(Store(db), by_suite, ModelPolicy.from_paths(model_roots), admin_token, max_upload_bytes)

    @property
    def queue(self) -> RequestQueue:
        return RequestQueue(self.store)

    @property
    def suites(self) -> list[str]:
        return list(self.benchmarks)

    def rows(self, suite: str) -> list[ResultRow]:
        return self.store.results(suite)

    def submit_file(self, path: str | None, method: Any = None, k: Any = None, selector: Any = None) -> Outcome:
        """Validate an uploaded results file and store it (or say why not)."""
        if not path:
            return Outcome(False, "choose a results JSON file first")
        try:
            labels = parse_labels(method, k, selector)
        except SubmissionRejected as exc:
            return Outcome(False, str(exc))
        try:
            size = os.path.getsize(path)
            if size > self.max_upload_bytes:
                raise SubmissionRejected(f"the results file is {size:,} bytes; the upload limit is "
                                         f"{self.max_upload_bytes:,}")
            raw = Path(path).read_bytes()
            sub = parse_results(raw, self.benchmarks, labels, self.max_upload_bytes)
        except SubmissionRejected as exc:
            return Outcome(False, str(exc))
        except OSError as exc:
            return Outcome(False, f"cannot read the uploaded file ({exc.strerror})")
        except Exception as exc:  # a file the checks did not foresee: refuse it, and keep the bug visible
            print(f"leaderboard: unexpected error while checking {path}:", file=sys.stderr)
            traceback.print_exc(file=sys.stderr)
            return Outcome(False, f"not accepted: the results file could not be checked ({type(exc).__name__}: "
                                  f"{str(exc)[:200]}); it was not stored. If it was written by `mosaic eval`, "
                                  "please report this")
        return self.store.add_result(sub, UPLOADED)

    def preload(self, folder: str | Path) -> list[tuple[str, Outcome]]:
        """Submit every results JSON directly inside `folder` (by name), exactly as an upload; a file
        already on the board answers with its duplicate Outcome, so preloading again is harmless, and a
        result an admin deleted stays deleted. A bad file is refused like an upload; the others go on."""
        folder = Path(folder)
        files = sorted(folder.glob("*.json")) if folder.is_dir() else []
        if not files:
            raise MosaicError(f"--preload {folder}: not a folder holding results JSON files (*.json)")
        return [(f.name, self.submit_file(str(f))) for f in files]

    def queue_model(self, model: Any, adapter: Any = None, method: Any = None, k: Any = None,
                    selector: Any = None) -> Outcome:
        try:
            spec = self.policy.check_model(model)
            adapter_spec = self.policy.check_adapter(adapter)
            labels = parse_labels(method, k, selector)
        except SubmissionRejected as exc:
            return Outcome(False, str(exc))
        return self.queue.enqueue(spec, adapter_spec, labels)

    def request(self, request_id: Any) -> Request | None:
        number = row_id(request_id)
        return None if number is None else self.queue.get(number)

    def admin(self, token: Any, action: Any, target: Any) -> Outcome:
        """Hide, unhide or delete a result, or re-run a request; only with the admin token."""
        if self.admin_token is None:
            return Outcome(False, "admin actions are disabled: the server was started without an admin token")
        if not token_ok(token, self.admin_token):
            return Outcome(False, "wrong or missing admin token")
        if action not in ADMIN_ACTIONS:
            return Outcome(False, f"unknown action {str(action)[:40]!r} (actions: {', '.join(ADMIN_ACTIONS)})")
        target_id = row_id(target)
        if target_id is None:
            return Outcome(False, f"give the id of the result or request (a whole number from 1 to {MAX_ROW_ID}), "
                                  f"not {str(target)[:40]!r}")
        if action == RERUN:
            return self.queue.rerun(target_id)
        if self.store.result(target_id) is None:
            return Outcome(False, f"no result #{target_id}")
        if action == DELETE:
            done = self.store.delete_result(target_id)
            return Outcome(done, f"result #{target_id} deleted" if done else f"no result #{target_id}", target_id)
        hidden = action == HIDE
        changed = self.store.set_hidden(target_id, hidden)
        state = "hidden" if hidden else "shown"
        return Outcome(True, f"result #{target_id} {state}" if changed else f"result #{target_id} was already {state}",
                       target_id)
