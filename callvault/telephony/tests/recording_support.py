"""Helpers the recording and review tests share: a storage folder of the test's own, a PBX,
calls, real audio bytes, and a small HTTP server to fetch recordings from."""

from __future__ import annotations

import contextlib
import io
import math
import struct
import threading
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from django.test import Client

from callvault.accounts.models import Membership, Project
from callvault.orders.models import Order
from callvault.telephony.models import Call, CallDirection, CallState, ProviderKind
from callvault.telephony.recordings import do_store_recording


def own_media(settings: Any, tmp_path: Any) -> Any:
    """Point the product's FileSystemStorage at a folder of the test's own (for a fixture)."""
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
    }
    return tmp_path / "media"


def wav_bytes(seconds: float = 2.0, rate: int = 8000) -> bytes:
    """A real WAV file: a 440 Hz tone, 16-bit mono (2 s = 32 KB of samples)."""
    frames = b"".join(
        struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate)))
        for i in range(int(seconds * rate))
    )
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return out.getvalue()


MP3_HEAD = b"ID3\x04\x00\x00\x00\x00\x00\x00" + b"\xff\xfb\x90\x64" + bytes(400)
OGG_HEAD = b"OggS\x00\x02" + bytes(400)


def make_call(project: Project, order: Order | None, member: Membership | None) -> Call:
    """A finished outgoing call about the order, made by the member."""
    return Call.objects.create(
        project=project,
        order=order,
        member=member.user if member else None,
        member_name=member.user.username if member else "",
        provider=ProviderKind.SIP_TOKEN,
        direction=CallDirection.OUTBOUND,
        state=CallState.ENDED,
        duration_seconds=42,
    )


def store(call: Call, data: bytes) -> Any:
    """A recording stored as the PBX's upload would be."""
    return do_store_recording(call, io.BytesIO(data))


def pbx_client(secret: str | None) -> Client:
    """A client that speaks as a PBX with the given secret (or none)."""
    return Client(headers={"Authorization": f"Bearer {secret}"} if secret else {})


def upload_url(call_id: int) -> str:
    return f"/pbx/v1/calls/{call_id}/recording"


def play_url(project: Project, call_id: int) -> str:
    return f"/p/{project.slug}/calls/{call_id}/recording/"


class AudioServer:
    """A real HTTP server in a thread: /rec.wav, a redirect to it, a huge declared file, a
    slow one and a page of text; it remembers the paths it was asked for."""

    def __init__(self, audio: bytes) -> None:
        self.audio = audio
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(self.path)
                if self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", "/rec.wav")
                    self.end_headers()
                    return
                body = {
                    "/rec.wav": server.audio,
                    "/text": b"<html>not audio</html>" * 10,
                }.get(self.path)
                if self.path == "/huge":
                    self.send_response(200)
                    self.send_header("Content-Length", str(10**12))
                    self.end_headers()
                    return
                if self.path == "/chunked-huge":
                    self.send_response(200)
                    self.end_headers()  # no length: the fetch must count for itself
                    try:
                        for _ in range(64):
                            self.wfile.write(server.audio)
                    except OSError:
                        pass
                    return
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str, host: str = "127.0.0.1", scheme: str = "http") -> str:
        return f"{scheme}://{host}:{self.port}{path}"


@contextlib.contextmanager
def running_audio_server() -> Iterator[AudioServer]:
    """An AudioServer serving one second of WAV, stopped afterwards (for a fixture)."""
    server = AudioServer(wav_bytes(1.0))
    server.thread.start()
    try:
        yield server
    finally:
        server.httpd.shutdown()
        server.httpd.server_close()
