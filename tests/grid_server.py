"""A real OpenAI-compatible chat-completions server on 127.0.0.1 (free port, own thread) whose replies
are scripted per request, for the grid builder's tests."""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Scripted:
    """One scripted answer: a chat completion with `content`, or an error `status` (+ headers)."""

    content: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    usage: dict[str, int] | None = field(default_factory=lambda: {"prompt_tokens": 100, "completion_tokens": 50})


def base_theme(request: dict) -> str:
    """The base theme named in a grid-generation request (the key scripts use to tell items apart)."""
    user = next(m["content"] for m in request["messages"] if m["role"] == "user")
    return re.search(r"^Base theme: (.*)$", user, re.M).group(1)


@dataclass
class Seen:
    key: str
    request: dict
    headers: dict[str, str]
    time: float


class ScriptedServer:
    """`script(request, n)` answers the n-th (0-based) request with the same base theme."""

    def __init__(self, script: Callable[[dict, int], Scripted]) -> None:
        self.script = script
        self.seen: list[Seen] = []
        self._counts: Counter = Counter()
        self._lock = threading.Lock()

    def __enter__(self) -> ScriptedServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                if self.path != "/v1/chat/completions":
                    self.send_error(404)
                    return
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = base_theme(request)
                with server._lock:
                    n = server._counts[key]
                    server._counts[key] += 1
                    server.seen.append(Seen(key, request, dict(self.headers), time.time()))
                answer = server.script(request, n)
                time.sleep(answer.delay_s)
                if answer.status == 200:
                    body = {"id": "cmpl-test", "object": "chat.completion", "model": request["model"],
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": answer.content}}]}
                    if answer.usage is not None:
                        body["usage"] = {**answer.usage, "total_tokens": sum(answer.usage.values())}
                else:
                    body = {"error": {"message": f"scripted {answer.status}"}}
                data = json.dumps(body).encode()
                try:
                    self.send_response(answer.status)
                    for name, value in {"Content-Type": "application/json", **answer.headers}.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def requests_for(self, key: str) -> list[dict]:
        with self._lock:
            return [s.request for s in self.seen if s.key == key]
