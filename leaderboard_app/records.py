"""Typed records that cross the leaderboard's boundaries: store <-> app, store <-> worker, store <-> sync."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

from mosaic.errors import MosaicError

# Request life cycle: pending -> running -> done | failed (an admin re-run puts it back to pending).
PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
STATUSES = (PENDING, RUNNING, DONE, FAILED)
UPLOADED, EVALUATED = "uploaded", "evaluated"  # where a stored result came from


class SubmissionRejected(MosaicError):
    """A results file or a queue request the leaderboard refuses; the message says why."""


class ClaimLost(MosaicError):
    """A worker's claim on a request expired and was taken over (or the request was re-run)."""


@dataclass(frozen=True)
class Labels:
    """Training labels shown beside the numbers: from the adapter's training card, else from the submitter."""

    method: str | None = None
    k: int | None = None
    selector: str | None = None


@dataclass(frozen=True)
class Submission:
    """A validated results file, reduced to the fields the store indexes; `results_json` is the file itself."""

    suite: str
    split: str
    model_id: str
    model_revision: str | None
    weights_hash: str | None
    adapter_hash: str | None
    base_model: str
    num_parameters: int | None
    labels: Labels
    created: str
    data_fingerprint: str
    eval_config_hash: str
    dedup_key: str
    results_json: str
    warnings: tuple[str, ...] = ()  # accepted but worth saying (not stored): told to the submitter


@dataclass(frozen=True)
class ResultRow:
    """One stored result."""

    id: int
    submission: Submission
    submitted_at: float
    hidden: bool
    origin: str  # UPLOADED | EVALUATED
    request_id: int | None
    rev: int = 1
    synced_rev: int = 0

    @cached_property
    def results(self) -> dict[str, Any]:
        return json.loads(self.submission.results_json)


@dataclass(frozen=True)
class Request:
    """A queued model-scoring request."""

    id: int
    model: str
    adapter: str | None
    labels: Labels
    status: str
    attempts: int
    created: float
    updated: float
    claimed_by: str | None = None
    claim_token: str | None = None
    claim_expires: float | None = None
    result_id: int | None = None
    error: str | None = None
    log: str = ""
    output_tail: str = ""
    rev: int = 1
    synced_rev: int = 0

    def public(self) -> dict[str, Any]:
        """What anyone may see (no claim token)."""
        out = asdict(self)
        out.pop("claim_token")
        out["labels"] = asdict(self.labels)
        return out


@dataclass(frozen=True)
class Outcome:
    """The answer to a submission, queue request or admin action, for the UI and the API alike."""

    ok: bool
    message: str
    id: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "id": self.id, "message": self.message, **self.extra}
