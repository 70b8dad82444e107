"""A small HTTP server on 127.0.0.1 that answers the agent API from a script, and records what
it received: real sockets and real urllib on the agent's side, for the error paths the real
callvault server cannot be made to produce on demand (5xx, dropped connections, 4xx per item).
The real server is exercised by test_e2e.py."""

from __future__ import annotations

import email.parser
import email.policy
import email.utils
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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
    """What to answer: a status and JSON body (or `raw` bytes of `content_type`: a proxy's
    page), or status None to drop the connection unanswered."""

    status: int | None
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes | None = None
    content_type: str = "application/json"


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


# The real server refuses heartbeats and screenshots further in its future than this.
CLOCK_SKEW = timedelta(minutes=10)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso(text: Any) -> datetime | None:
    """A time as the agent writes them; None for anything else (the tests send some)."""
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None


def too_late(text: Any, now: datetime) -> bool:
    moment = parse_iso(text)
    return moment is not None and moment > now + CLOCK_SKEW


@dataclass
class Script:
    """Per path, answers to give in turn; after them (and for other paths) the contract's.

    The server's clock is `wall` (real time when None) plus `skew`; it is in every answer's
    Date header and, with `server_time`, in its JSON answers, as the real server does."""

    policy: dict[str, Any] = field(default_factory=lambda: dict(POLICY))
    queued: dict[str, list[Answer]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)
    last_seq: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] | None = None
    skew: timedelta = timedelta(0)
    server_time: bool = False

    def now(self) -> datetime:
        return (self.wall() if self.wall is not None else datetime.now(UTC)) + self.skew

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
        now = self.now()
        if req.path == "/agent/v1/enrol":
            return Answer(201, {"device_id": 7, "token": "cvd_test_token", "policy": self.policy})
        if req.path == "/agent/v1/policy":
            return Answer(200, self.policy, version)
        if req.path == "/agent/v1/heartbeats":
            beats = req.json()["heartbeats"]
            for i, beat in enumerate(beats):
                if too_late(beat.get("at"), now):
                    return self.future(f"heartbeats[{i}].at", now)
            fresh = [b for b in beats if b["seq"] > self.last_seq]
            self.last_seq = max([self.last_seq, *(b["seq"] for b in beats)])
            return Answer(
                200, self.timed({"accepted": len(fresh), "last_seq": self.last_seq}, now), version
            )
        if req.path == "/agent/v1/screenshots":
            if too_late(req.form()["taken_at"].decode(), now):
                return self.future("taken_at", now)
            return Answer(201, {"id": len(self.sent(req.path)) + 1}, version)
        return Answer(404, {"detail": "not found"})

    def future(self, name: str, now: datetime) -> Answer:
        """The real server's 422 for a time too far in its future."""
        message = "in the future: check the PC's clock"
        body = {"detail": f"{name}: {message}", "errors": {name: message}}
        return Answer(422, self.timed(body, now))

    def timed(self, body: dict[str, Any], now: datetime) -> dict[str, Any]:
        return {**body, "server_time": iso(now)} if self.server_time else body


@contextmanager
def scripted_server(script: Script) -> Iterator[str]:
    """Serve `script` on a free port of 127.0.0.1; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def date_time_string(self, timestamp: float | None = None) -> str:
            return email.utils.format_datetime(script.now().astimezone(UTC), usegmt=True)

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
            body = answer.raw if answer.raw is not None else json.dumps(answer.body).encode()
            self.send_response(answer.status)
            self.send_header("Content-Type", answer.content_type)
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
