"""A small HTTP server on 127.0.0.1 that answers the agent API from a script, and records what
it received: real sockets and real urllib on the agent's side, for the error paths the real
callvault server cannot be made to produce on demand (5xx, dropped connections, 4xx per item).
The real server is exercised by test_e2e.py."""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

POLICY = {
    "version": 1,
    "heartbeat_seconds": 5,
    "idle_seconds": 120,
    "window_titles": True,
    "redact_patterns": [r"\d{6,}"],
    "screenshots_per_interval": [0, 0],
    "screenshot_interval_seconds": 600,
    "screenshot_scale": 0.5,
    "screenshot_blur": 0,
    "screenshot_format": "webp",
    "screenshot_quality": 60,
    "working_hours": None,
    "notice": "Monitoring is on (test)",
    "max_screenshot_bytes": 2000000,
}


@dataclass
class Answer:
    """What to answer: a status and JSON body, or None to drop the connection unanswered."""

    status: int | None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = 0.0  # the script's clock when it arrived

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, bytes]:
        """The fields of a multipart body."""
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + self.body)
        fields: dict[str, bytes] = {}
        for part in message.iter_parts():
            payload = part.get_payload(decode=True)
            assert isinstance(payload, bytes)
            fields[str(part.get_param("name", header="content-disposition"))] = payload
        return fields


@dataclass
class Script:
    """Per path, answers to give in turn; after them (and for other paths) the contract's."""

    policy: dict[str, Any] = field(default_factory=lambda: dict(POLICY))
    queued: dict[str, list[Answer]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    last_seq: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], float] = time.monotonic

    def then(self, path: str, *answers: Answer) -> None:
        self.queued.setdefault(path, []).extend(answers)

    def sent(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]

    def seqs(self) -> list[int]:
        """Every heartbeat seq the server accepted (status 200), in arrival order."""
        return [
            beat["seq"]
            for r in self.sent("/agent/v1/heartbeats")
            if r.headers.get("X-Answered") == "200"
            for beat in r.json()["heartbeats"]
        ]

    def answer(self, req: Received) -> Answer:
        queue = self.queued.get(req.path)
        if queue:
            return queue.pop(0)
        return self.default(req)

    def default(self, req: Received) -> Answer:
        version = {"X-Policy-Version": str(self.policy["version"])}
        if req.path == "/agent/v1/enrol":
            return Answer(201, {"device_id": 7, "token": "cvd_test_token", "policy": self.policy})
        if req.path == "/agent/v1/policy":
            return Answer(200, self.policy, version)
        if req.path == "/agent/v1/heartbeats":
            beats = req.json()["heartbeats"]
            fresh = [b for b in beats if b["seq"] > self.last_seq]
            self.last_seq = max([self.last_seq, *(b["seq"] for b in beats)])
            return Answer(200, {"accepted": len(fresh), "last_seq": self.last_seq}, version)
        if req.path == "/agent/v1/screenshots":
            return Answer(201, {"id": len(self.sent(req.path))}, version)
        return Answer(404, {"detail": "not found"})


@contextmanager
def scripted_server(script: Script) -> Iterator[str]:
    """Serve `script` on a free port of 127.0.0.1; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            req = Received(self.command, self.path, dict(self.headers), self.rfile.read(length))
            with script.lock:
                req.at = script.clock()
                answer = script.answer(req)
                req.headers["X-Answered"] = str(answer.status)
                script.received.append(req)
            if answer.status is None:
                self.close_connection = True
                self.connection.close()  # the connection drops: no answer at all
                return
            body = json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in answer.headers.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = handle_any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
