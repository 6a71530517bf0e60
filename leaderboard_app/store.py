"""The leaderboard's store: one SQLite file in WAL mode, versioned schema, parameterised SQL only.

`PRAGMA user_version` holds the schema version; `MIGRATIONS[i]` takes a database from version i to
i + 1 inside one write transaction, so two processes opening an old file never migrate it twice.
Every write runs in `BEGIN IMMEDIATE` (one writer at a time, others wait up to `busy_timeout`);
duplicate submissions (DESIGN §11) are refused by a UNIQUE index on the dedup key, so concurrent
uploads of the same results cannot both land. Requests (the scoring queue) live in `scoring_queue.py`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from leaderboard_app.records import Labels, Outcome, ResultRow, Submission
from mosaic.errors import MosaicError

_V1 = """
CREATE TABLE requests (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    model TEXT NOT NULL, adapter TEXT, method TEXT, k INTEGER, selector TEXT,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL, updated REAL NOT NULL,
    claimed_by TEXT, claim_token TEXT, claim_expires REAL,
    result_id INTEGER, error TEXT,
    log TEXT NOT NULL DEFAULT '', output_tail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX requests_by_status ON requests (status, id);
CREATE TABLE results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    suite TEXT NOT NULL, split TEXT NOT NULL,
    model_id TEXT NOT NULL, model_revision TEXT, weights_hash TEXT, adapter_hash TEXT,
    base_model TEXT NOT NULL, num_parameters INTEGER,
    method TEXT, k INTEGER, selector TEXT,
    created TEXT NOT NULL, data_fingerprint TEXT NOT NULL, eval_config_hash TEXT NOT NULL,
    dedup_key TEXT NOT NULL UNIQUE,
    results_json TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    hidden INTEGER NOT NULL DEFAULT 0,
    origin TEXT NOT NULL CHECK (origin IN ('uploaded', 'evaluated')),
    request_id INTEGER REFERENCES requests (id)
);
CREATE INDEX results_by_suite ON results (suite, hidden);
"""

# v2: bookkeeping for the optional Hub sync. `rev` counts changes that a mirror must see (triggers
# bump it, so no write path can forget); `synced_rev` is the last revision uploaded. Deleted results
# leave a tombstone so the mirror learns about the deletion too.
_V2 = """
ALTER TABLE results ADD COLUMN rev INTEGER NOT NULL DEFAULT 1;
ALTER TABLE results ADD COLUMN synced_rev INTEGER NOT NULL DEFAULT 0;
ALTER TABLE requests ADD COLUMN rev INTEGER NOT NULL DEFAULT 1;
ALTER TABLE requests ADD COLUMN synced_rev INTEGER NOT NULL DEFAULT 0;
CREATE TABLE deleted_results (
    id INTEGER PRIMARY KEY, suite TEXT NOT NULL, deleted_at REAL NOT NULL, synced INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER results_rev AFTER UPDATE OF hidden ON results
BEGIN UPDATE results SET rev = rev + 1 WHERE id = NEW.id; END;
CREATE TRIGGER requests_rev AFTER UPDATE OF status, attempts, result_id, error ON requests
BEGIN UPDATE requests SET rev = rev + 1 WHERE id = NEW.id; END;
CREATE TRIGGER results_tombstone AFTER DELETE ON results
BEGIN
    INSERT OR REPLACE INTO deleted_results (id, suite, deleted_at)
    VALUES (OLD.id, OLD.suite, (julianday('now') - 2440587.5) * 86400.0);
END;
"""

# v3: tombstones keep the deleted result's dedup key, so a deleted result is not stored again (not by
# the start-up preload of reference results, nor by a user re-submitting the file).
_V3 = """
ALTER TABLE deleted_results ADD COLUMN dedup_key TEXT;
CREATE INDEX deleted_results_by_key ON deleted_results (dedup_key);
DROP TRIGGER results_tombstone;
CREATE TRIGGER results_tombstone AFTER DELETE ON results
BEGIN
    INSERT OR REPLACE INTO deleted_results (id, suite, deleted_at, dedup_key)
    VALUES (OLD.id, OLD.suite, (julianday('now') - 2440587.5) * 86400.0, OLD.dedup_key);
END;
"""

MIGRATIONS: list[str] = [_V1, _V2, _V3]
SCHEMA_VERSION = len(MIGRATIONS)

_INSERT_RESULT = ("INSERT INTO results (suite, split, model_id, model_revision, weights_hash, adapter_hash, "
                  "base_model, num_parameters, method, k, selector, created, data_fingerprint, eval_config_hash, "
                  "dedup_key, results_json, submitted_at, origin, request_id) "
                  "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _statements(script: str) -> list[str]:
    """Split a migration script into statements (triggers keep their inner `;`)."""
    out, buf = [], ""
    for line in script.strip().splitlines():
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {buf!r}")
    return out


class Store:
    """The SQLite file behind one leaderboard. Cheap to construct; one connection per operation,
    so it is safe to share between threads (Gradio runs handlers in a thread pool)."""

    def __init__(self, path: str | Path, *, target_version: int = SCHEMA_VERSION) -> None:
        self.path = Path(path)
        if self.path.exists() and self.path.is_dir():
            raise MosaicError(f"{self.path}: is a folder; --db takes a SQLite file path")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.version = target_version  # an older target (tests of migrations) writes as that version did
        self._migrate(target_version)

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            raise MosaicError(f"{self.path}: cannot open the leaderboard database ({exc})") from exc
        conn.row_factory = sqlite3.Row
        try:
            conn.execute("PRAGMA busy_timeout = 60000")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA synchronous = NORMAL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that holds the database's write lock from its first statement."""
        with self.connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _migrate(self, target: int) -> None:
        with self.connect() as conn:
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise MosaicError(f"{self.path}: cannot switch the database to WAL mode (got {mode!r})")
        with self.write() as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise MosaicError(f"{self.path}: database schema version {version} is newer than this "
                                  f"mosaic-bench understands ({SCHEMA_VERSION}); upgrade mosaic-bench")
            for step in range(version, target):
                for statement in _statements(MIGRATIONS[step]):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(step) + 1:d}")  # a pragma takes no parameters

    def schema_version(self) -> int:
        with self.connect() as conn:
            return conn.execute("PRAGMA user_version").fetchone()[0]

    # --- results -------------------------------------------------------------------------------

    def add_result(self, sub: Submission, origin: str, request_id: int | None = None,
                   conn: sqlite3.Connection | None = None) -> Outcome:
        """Store a validated submission, or name the stored result it duplicates. Pass `conn` to
        run inside a caller's write transaction (the worker completes a request atomically)."""
        if conn is None:
            with self.write() as own:
                return self.add_result(sub, origin, request_id, own)
        dup = conn.execute("SELECT id FROM results WHERE dedup_key = ?", (sub.dedup_key,)).fetchone()
        if dup is not None:
            return Outcome(False, f"duplicate of result #{dup['id']}: same model id and weights/revision, adapter, "
                                  "data fingerprint and evaluation config", dup["id"], {"duplicate": True})
        gone = None if self.version < 3 else conn.execute(
            "SELECT id FROM deleted_results WHERE dedup_key = ? ORDER BY id DESC LIMIT 1", (sub.dedup_key,)).fetchone()
        if gone is not None:
            return Outcome(False, f"the same result (#{gone['id']}) was deleted by an admin; it is not stored again",
                           None, {"deleted": True})
        cur = conn.execute(
            _INSERT_RESULT,
            (sub.suite, sub.split, sub.model_id, sub.model_revision, sub.weights_hash, sub.adapter_hash,
             sub.base_model, sub.num_parameters, sub.labels.method, sub.labels.k, sub.labels.selector, sub.created,
             sub.data_fingerprint, sub.eval_config_hash, sub.dedup_key, sub.results_json, time.time(), origin,
             request_id))
        message = f"stored as result #{cur.lastrowid} ({sub.suite} / {sub.split})"
        if sub.warnings:
            more = f" (and {len(sub.warnings) - 3} more warnings)" if len(sub.warnings) > 3 else ""
            message += "; warning: " + "; warning: ".join(sub.warnings[:3]) + more
        return Outcome(True, message, cur.lastrowid, {"warnings": list(sub.warnings)} if sub.warnings else {})

    def results(self, suite: str | None = None, include_hidden: bool = False) -> list[ResultRow]:
        sql = "SELECT * FROM results WHERE (? IS NULL OR suite = ?) AND (? OR hidden = 0) ORDER BY id"
        with self.connect() as conn:
            return [_result(r) for r in conn.execute(sql, (suite, suite, int(include_hidden)))]

    def result(self, result_id: int) -> ResultRow | None:
        with self.connect() as conn:
            row = conn.execute("SELECT * FROM results WHERE id = ?", (result_id,)).fetchone()
        return None if row is None else _result(row)

    def set_hidden(self, result_id: int, hidden: bool) -> bool:
        with self.write() as conn:
            return conn.execute("UPDATE results SET hidden = ? WHERE id = ? AND hidden != ?",
                                (int(hidden), result_id, int(hidden))).rowcount == 1

    def delete_result(self, result_id: int) -> bool:
        with self.write() as conn:
            conn.execute("UPDATE requests SET result_id = NULL WHERE result_id = ?", (result_id,))
            return conn.execute("DELETE FROM results WHERE id = ?", (result_id,)).rowcount == 1

    # --- Hub sync bookkeeping ------------------------------------------------------------------

    def unsynced_results(self) -> list[ResultRow]:
        with self.connect() as conn:
            return [_result(r) for r in conn.execute("SELECT * FROM results WHERE synced_rev < rev ORDER BY id")]

    def mark_result_synced(self, result_id: int, rev: int) -> None:
        with self.write() as conn:
            conn.execute("UPDATE results SET synced_rev = ? WHERE id = ? AND synced_rev < ?", (rev, result_id, rev))

    def unsynced_deletions(self) -> list[tuple[int, str, float]]:
        with self.connect() as conn:
            return [(r["id"], r["suite"], r["deleted_at"])
                    for r in conn.execute("SELECT * FROM deleted_results WHERE synced = 0 ORDER BY id")]

    def mark_deletion_synced(self, result_id: int) -> None:
        with self.write() as conn:
            conn.execute("UPDATE deleted_results SET synced = 1 WHERE id = ?", (result_id,))


def _result(r: sqlite3.Row) -> ResultRow:
    sub = Submission(
        suite=r["suite"], split=r["split"], model_id=r["model_id"], model_revision=r["model_revision"],
        weights_hash=r["weights_hash"], adapter_hash=r["adapter_hash"], base_model=r["base_model"],
        num_parameters=r["num_parameters"], labels=Labels(r["method"], r["k"], r["selector"]), created=r["created"],
        data_fingerprint=r["data_fingerprint"], eval_config_hash=r["eval_config_hash"], dedup_key=r["dedup_key"],
        results_json=r["results_json"])
    return ResultRow(id=r["id"], submission=sub, submitted_at=r["submitted_at"], hidden=bool(r["hidden"]),
                     origin=r["origin"], request_id=r["request_id"], rev=r["rev"], synced_rev=r["synced_rev"])
