"""`--generator http`: any OpenAI-compatible chat-completions server (vLLM `serve`, TGI, hosted APIs).

POST {base_url}/chat/completions with the messages; the reply is `choices[0].message.content`,
tokens come from `usage`. Stdlib only (urllib). A request that times out, cannot connect, or
gets 429 / 5xx is retried with jittered exponential backoff, waiting what a `Retry-After`
header asks for instead (at most MAX_RETRY_AFTER_S). 401 / 403 / 404 stop the build (every request
would fail the same way); other 4xx fail only the item's attempt, which the build re-queues.
"""

from __future__ import annotations

import argparse
import email.utils
import http.client
import json
import os
import random
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass

from builders.generators import FatalGenerationError, GenerationError, Generator, GeneratorSpec, Reply, Sampling
from mosaic.errors import MosaicError

KEY_ENV = ("MOSAIC_API_KEY", "OPENAI_API_KEY")
MAX_RETRY_AFTER_S = 600.0
FATAL_STATUS = (401, 403, 404)


@dataclass(frozen=True)
class HTTPConfig:
    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 300.0
    retries: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0
    concurrency: int = 4
    json_mode: bool = False


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delta-seconds or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    return min(max(when - (time.time() if now is None else now), 0.0), MAX_RETRY_AFTER_S)


def backoff_s(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Equal-jitter exponential backoff: a uniform draw in [d/2, d], d = min(cap, base * 2**attempt)."""
    delay = min(cap, base * 2 ** attempt)
    return rng.uniform(delay / 2, delay)


class HTTPGenerator(Generator):
    def __init__(self, config: HTTPConfig, sampling: Sampling, *, sleep: Callable[[float], None] = time.sleep,
                 rng: random.Random | None = None) -> None:
        self.config, self.sampling, self.sleep = config, sampling, sleep
        self.rng = rng or random.Random()
        self.url = config.base_url.rstrip("/") + "/chat/completions"
        self.model_id = config.model
        self.concurrency = config.concurrency
        self.description = f"http {self.url} model {config.model}"

    def _post(self, body: dict) -> tuple[int, dict[str, str], bytes]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.config.api_key:
            headers["Authorization"] = f"Bearer {self.config.api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, dict(exc.headers or {}), exc.read()

    def generate(self, messages: list[dict[str, str]], seed: int) -> Reply:
        body = {"model": self.config.model, "messages": messages, "temperature": self.sampling.temperature,
                "top_p": self.sampling.top_p, "max_tokens": self.sampling.max_new_tokens, "seed": seed}
        if self.config.json_mode:
            body["response_format"] = {"type": "json_object"}
        tries = self.config.retries + 1
        for attempt in range(tries):
            wait = None
            try:
                status, headers, payload = self._post(body)
            except (TimeoutError, urllib.error.URLError, ConnectionError, http.client.HTTPException) as exc:
                problem = f"{type(exc).__name__}: {getattr(exc, 'reason', None) or exc}"
            else:
                if status == 200:
                    return self._reply(payload)
                text = payload.decode("utf-8", "replace")[:300].strip()
                problem = f"HTTP {status} from {self.url}: {text}"
                if status in FATAL_STATUS:
                    raise FatalGenerationError(problem)
                if status != 429 and status < 500:
                    raise GenerationError(problem)
                wait = retry_after_s({k.lower(): v for k, v in headers.items()}.get("retry-after"))
            if attempt + 1 == tries:
                raise GenerationError(f"{problem} (gave up after {tries} tries)")
            if wait is None:
                wait = backoff_s(attempt, self.config.backoff_s, self.config.max_backoff_s, self.rng)
            self.sleep(wait)
        raise AssertionError("unreachable")

    def _reply(self, payload: bytes) -> Reply:
        try:
            data = json.loads(payload)
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise GenerationError(f"malformed chat-completions response from {self.url} "
                                  f"({type(exc).__name__}: {exc}): {payload[:200]!r}") from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        tokens = [usage.get(k) if isinstance(usage.get(k), int) else None for k in ("prompt_tokens",
                                                                                     "completion_tokens")]
        return Reply(text=text, prompt_tokens=tokens[0], completion_tokens=tokens[1],
                     finish_reason=choice.get("finish_reason"))


def add_arguments(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--base-url", metavar="URL",
                   help="chat-completions server, e.g. http://127.0.0.1:8000/v1 (vLLM serve) or "
                        "https://api.openai.com/v1; POSTs to URL/chat/completions")
    g.add_argument("--api-key", metavar="KEY", help=f"bearer token (default: ${KEY_ENV[0]}, then ${KEY_ENV[1]}; "
                                                    "none for local servers)")
    g.add_argument("--concurrency", type=int, metavar="N", help="requests in flight (default 4)")
    g.add_argument("--timeout", type=float, metavar="S", help="seconds to wait on a socket read (default 300)")
    g.add_argument("--http-retries", type=int, metavar="N",
                   help="retries of one request on timeout, 429 or 5xx, before the item's attempt fails (default 5)")
    g.add_argument("--json-mode", action="store_true", default=None,
                   help='send response_format {"type": "json_object"} (servers that support it)')


def create(args: argparse.Namespace, sampling: Sampling) -> HTTPGenerator:
    if not args.base_url:
        raise MosaicError("--generator http needs --base-url (e.g. http://127.0.0.1:8000/v1)")
    if not args.model:
        raise MosaicError("--generator http needs --model (the model name the server serves)")
    key = args.api_key or next((os.environ[k] for k in KEY_ENV if os.environ.get(k)), None)
    defaults = HTTPConfig(args.base_url, args.model)
    config = HTTPConfig(args.base_url, args.model, api_key=key,
                        timeout_s=args.timeout if args.timeout is not None else defaults.timeout_s,
                        retries=args.http_retries if args.http_retries is not None else defaults.retries,
                        concurrency=args.concurrency if args.concurrency is not None else defaults.concurrency,
                        json_mode=bool(args.json_mode))
    if config.concurrency < 1 or config.retries < 0 or config.timeout_s <= 0:
        raise MosaicError("--concurrency must be >= 1, --http-retries >= 0 and --timeout > 0")
    return HTTPGenerator(config, sampling)


GENERATOR = GeneratorSpec("http", "OpenAI-compatible chat-completions server", add_arguments, create)
