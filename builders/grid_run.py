"""The generate -> validate -> re-queue loop of the grid builder.

Requests run in a thread pool (`generator.concurrency` in flight); replies are parsed and
validated on the calling thread as they arrive: structure, then the per-item embedding checks
(theme consistency, cell diversity). A failed attempt is journaled and its item re-queued with
the failure fed back into the prompt, up to `max_retries` times. Once the queue is empty the
cross-item check (near-duplicate responses across items) runs over every accepted item; the
later item of a near-duplicate pair is revoked and re-queued the same way, and the loop goes
on until a cross-item pass flags nothing. Every outcome is one journal record, written before
the next is decided, so a killed build resumes exactly (builders/grid_journal.py).
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

import numpy as np

from builders.generators import FatalGenerationError, GenerationError, Generator
from builders.grid import Failure, GridRules, check_semantics, parse_item
from builders.grid_journal import Journal, Ledger, failures_json
from builders.grid_prompt import build_messages, parse_reply
from builders.grid_themes import Theme
from mosaic.errors import MosaicError

REPLY_HEAD = 400  # characters of a rejected reply kept in the journal, for diagnosis


@dataclass(frozen=True)
class Task:
    theme: Theme
    attempt: int
    feedback: list[Failure]


def attempt_seed(seed: int, item_id: str, attempt: int) -> int:
    """A 31-bit sampling seed, a pure function of (build seed, item, attempt)."""
    digest = hashlib.sha256(f"{seed}\x00{item_id}\x00{attempt}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class CachedEmbed:
    """Memoises an embedding function per text, so end-of-run checks reuse per-item embeddings."""

    def __init__(self, embed: Callable[[list[str]], np.ndarray]) -> None:
        self.embed, self.cache = embed, {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self.cache))
        if missing:
            self.cache.update(zip(missing, self.embed(missing)))
        return np.stack([self.cache[t] for t in texts]) if texts else np.zeros((0, 384), dtype=np.float32)


class GridRun:
    def __init__(self, themes: list[Theme], rules: GridRules, generator: Generator, journal: Journal,
                 ledger: Ledger, embed: Callable[[list[str]], np.ndarray], max_retries: int, seed: int,
                 progress: Any = None) -> None:
        self.themes, self.rules, self.generator, self.journal = themes, rules, generator, journal
        self.ledger, self.embed, self.max_retries, self.seed = ledger, embed, max_retries, seed
        self.progress = progress
        self.order = {t.id: i for i, t in enumerate(themes)}

    def _log(self, record: dict[str, Any]) -> None:
        self.journal.append(record)
        self.ledger.apply(record, str(self.journal.path))
        if self.progress is not None:
            t, counts = self.ledger.tally, [self.ledger.state(i).status for i in self.order]
            self.progress.n = sum(s != "pending" for s in counts)
            self.progress.set_postfix(accepted=counts.count("accepted"), rejected=counts.count("rejected"),
                                      retries=t.retries, tokens=t.prompt_tokens + t.completion_tokens)

    def run(self) -> None:
        pending = deque(Task(t, self.ledger.state(t.id).attempts + 1, self.ledger.state(t.id).failures)
                        for t in self.themes if self.ledger.state(t.id).status == "pending")
        pool = ThreadPoolExecutor(max_workers=self.generator.concurrency, thread_name_prefix="grid-gen")
        try:
            while True:
                self._drain(pool, pending)
                pending.extend(self._cross_check())
                if not pending:
                    break
        except FatalGenerationError as exc:
            done = sum(self.ledger.state(t.id).status != "pending" for t in self.themes)
            raise MosaicError(f"generator failed: {exc}. The journal {self.journal.path} keeps the {done} finished "
                              "item(s): fix the problem and rerun with --resume") from None
        finally:  # on an error, do not wait for requests still in flight: the journal is already consistent
            pool.shutdown(wait=False, cancel_futures=True)

    def _drain(self, pool: ThreadPoolExecutor, pending: deque[Task]) -> None:
        in_flight: dict[Future, Task] = {}
        while pending or in_flight:
            while pending and len(in_flight) < self.generator.concurrency:
                task = pending.popleft()
                messages = build_messages(task.theme, task.theme.rules(self.rules), task.feedback)
                seed = attempt_seed(self.seed, task.theme.id, task.attempt)
                in_flight[pool.submit(self.generator.generate, messages, seed)] = task
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for fut in sorted(done, key=lambda f: self.order[in_flight[f].theme.id]):
                retry = self._settle(in_flight.pop(fut), fut)
                if retry is not None:
                    pending.append(retry)

    def _settle(self, task: Task, fut: Future) -> Task | None:
        """Validate one finished request, journal the attempt; the retry task if the item goes back in the queue."""
        rules = task.theme.rules(self.rules)
        record: dict[str, Any] = {"kind": "attempt", "item": task.theme.id, "attempt": task.attempt, "usage": None}
        try:
            reply = fut.result()
        except FatalGenerationError:
            raise
        except GenerationError as exc:
            failures = [Failure("generator_error", str(exc))]
        else:
            record["usage"] = {"prompt_tokens": reply.prompt_tokens, "completion_tokens": reply.completion_tokens}
            record["finish_reason"] = reply.finish_reason
            item, raw, failures = parse_reply(reply.text, task.theme, rules, reply.finish_reason)
            if item is not None and not failures:
                failures = check_semantics([item], rules, self.embed).get(item.id, [])
            if failures:
                record["reply_head"] = reply.text[:REPLY_HEAD]
            else:
                record["item_data"] = raw
        status = "accepted" if not failures else "retry" if task.attempt <= self.max_retries else "rejected"
        self._log({**record, "status": status, "failures": failures_json(failures)})
        return Task(task.theme, task.attempt + 1, failures) if status == "retry" else None

    def _cross_check(self) -> list[Task]:
        """Near-duplicate responses across accepted items: revoke the later item of each pair."""
        accepted = [t for t in self.themes if self.ledger.state(t.id).status == "accepted"]
        if len(accepted) < 2:
            return []
        items = [parse_item(self.ledger.state(t.id).item) for t in accepted]
        found = check_semantics(items, self.rules, self.embed)
        retries = []
        for theme in accepted:
            failures = [f for f in found.get(theme.id, []) if f.reason == "near_duplicate_across_items"]
            if not failures:
                continue
            attempts = self.ledger.state(theme.id).attempts
            status = "retry" if attempts <= self.max_retries else "rejected"
            self._log({"kind": "cross_check", "item": theme.id, "status": status,
                       "failures": failures_json(failures)})
            if status == "retry":
                retries.append(Task(theme, attempts + 1, failures))
        return retries
