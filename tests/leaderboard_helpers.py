"""Shared pieces of the leaderboard tests: one real results file per test session (from `mosaic eval`
on the tiny random model), variants of it, and the app / worker as the user runs them (subprocesses
of the `mosaic` command on 127.0.0.1 and a free port)."""

from __future__ import annotations

import copy
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ADMIN_TOKEN = "test-admin-token-0123456789"
HOSTILE_NAMES = ("<img src=x onerror=alert(1)>", "'); DROP TABLE results;--")
WORKER_EVAL_ARGS = "--max-items 1 --configs mosaic --metrics ref_loss --bootstrap-resamples 50"
_RESULTS: dict[str, dict] = {}


def mosaic(*args, env=None, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mosaic.cli", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def real_results(tiny_model_dir: Path, folder: Path) -> dict:
    """A results file from `mosaic eval` (quick preset, 2 items), computed once per test process."""
    if "quick" not in _RESULTS:
        out = folder / "tiny-results.json"
        proc = mosaic("eval", "--model", tiny_model_dir, "--preset", "quick", "--max-items", 2,
                      "--bootstrap-resamples", 200, "--out", out, "--no-progress", timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        _RESULTS["quick"] = json.loads(out.read_text())
    return copy.deepcopy(_RESULTS["quick"])


def variant(results: dict, model_id: str, shift: float = 0.0, **model_fields) -> dict:
    """The same evaluation under another model id (a different submission), numbers moved by `shift`
    (lower loss, higher everything else) so tables and plots have something to order."""
    from evaluator.metrics import REGISTRY

    out = copy.deepcopy(results)
    out["model"] = {**out["model"], "id": model_id, **model_fields}
    for m in out["metrics"].values():
        sign = -1.0 if not m["higher_is_better"] else 1.0
        lo, hi = REGISTRY[m["metric"]].value_range
        ests = (m, *m["per_domain"].values())
        if not all(lo <= x + sign * shift <= hi for e in ests for x in [e["value"], *(e["ci95"] or [])]):
            continue  # the leaderboard refuses numbers outside a metric's range: leave this one as it is
        for est in ests:
            est["value"] += sign * shift
            if est["ci95"]:
                est["ci95"] = [c + sign * shift for c in est["ci95"]]
    return out


def write(path: Path, results: dict) -> Path:
    path.write_text(json.dumps(results), encoding="utf-8")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class RunningApp:
    url: str
    db: Path
    proc: subprocess.Popen
    log: Path

    def client(self) -> SessionPerCall:
        return SessionPerCall(self.url)


@dataclass
class SessionPerCall:
    """gradio_client with a new session for every call. Calls on one Client share one event stream; when
    the server closes it after a job, a job submitted before the client has read that close is cancelled
    (CancelledError) - a client-side race, not the app's, that a busy CI machine can hit."""

    url: str

    def session(self):
        from gradio_client import Client

        # httpx's default 5 s would fail a call on a busy machine, and cut the session's heartbeat stream
        return Client(self.url, verbose=False, download_files=False, analytics_enabled=False,
                      httpx_kwargs={"timeout": 120})

    def predict(self, *args, api_name: str):
        return self.session().predict(*args, api_name=api_name)


@contextmanager
def running_app(db: Path, model_roots: tuple[Path, ...] = (), token: str | None = ADMIN_TOKEN,
                timeout: float = 120):
    """`mosaic leaderboard serve` on a free port; yields once the page answers, stops it afterwards."""
    port = free_port()
    log = db.with_suffix(".serve.log")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "MOSAIC_LEADERBOARD_TOKEN": token or ""}
    cmd = [sys.executable, "-m", "mosaic.cli", "leaderboard", "serve", "--db", str(db), "--host", "127.0.0.1",
           "--port", str(port)]
    for root in model_roots:
        cmd += ["--model-root", str(root)]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"the app exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (OSError, http.client.HTTPException):  # not up yet (a self-connect reads a bad status line)
                pass
            if time.time() > deadline:
                raise AssertionError(f"the app did not answer within {timeout} s:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield RunningApp(url, db, proc, log)
    finally:
        _stop(proc)


def start_worker(db: Path, model_root: Path, *extra: str, lease: float = 4.0) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "mosaic.cli", "leaderboard", "worker", "--db", str(db), "--model-root",
           str(model_root), "--lease", str(lease), "--poll", "0.3", "--eval-args", WORKER_EVAL_ARGS, *extra]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
