"""The PBX hands over a call's recording: uploaded (multipart) or fetched from a URL it gives.

The fetch tests run against a real HTTP server in a thread on 127.0.0.1 (plain HTTP, so the
host is put on the allow-list; https itself is not exercised here: no certificate authority).
"""

from __future__ import annotations

import io
import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from callvault.audit.models import AuditEvent
from callvault.telephony.models import Recording
from callvault.telephony.outbound import is_public
from callvault.telephony.recordings import (
    FetchRefused,
    download,
    fetch_recording,
    storage_name,
)
from callvault.telephony.setup_actions import do_create_pbx, do_revoke_pbx
from callvault.telephony.tests.call_support import LOCAL
from callvault.telephony.tests.recording_support import (
    MP3_HEAD,
    OGG_HEAD,
    make_call,
    own_media,
    pbx_client,
    running_audio_server,
    upload_url,
    wav_bytes,
)
from callvault.vault.files import read_sealed
from callvault.vault.phones import seal


@pytest.fixture(autouse=True)
def media(settings, tmp_path):
    return own_media(settings, tmp_path)


@pytest.fixture
def pbx(project):
    """The project's PBX and its secret."""
    return do_create_pbx(project, "office", networks=LOCAL)


@pytest.fixture
def audio_server():
    with running_audio_server() as server:
        yield server


@pytest.fixture
def call(project, order, operator):
    return make_call(project, order, operator)


def post_file(secret, call_id, data, name="rec.wav", content_type="audio/wav"):
    upload = SimpleUploadedFile(name, data, content_type=content_type)
    return pbx_client(secret).post(upload_url(call_id), {"file": upload})


def post_json(secret, call_id, body):
    return pbx_client(secret).post(upload_url(call_id), body, content_type="application/json")


def stored_files(media_root):
    return sorted(p for p in media_root.rglob("*") if p.is_file())


def plaintext(recording):
    return b"".join(
        read_sealed(recording.storage_name, project_id=recording.project_id, purpose="recording")
    )


def digits_of(e164):
    """The forms a number could leave in a name: the whole, and its last 7 and 4 digits."""
    raw = e164.lstrip("+")
    return [raw, raw[-7:], raw[-4:]]


# --- uploads --------------------------------------------------------------------------------


def test_an_upload_is_stored_sealed_and_named_by_the_call_only(media, pbx, call, phone):
    audio = wav_bytes(3.0)
    # PBXs name files after the caller: that name must not reach storage.
    response = post_file(pbx[1], call.pk, audio, name=f"{phone[1]}-out.wav")
    assert response.status_code == 201, response.content
    assert response.json() == {"ok": True}
    recording = Recording.objects.get(call=call)
    assert recording.storage_name == f"recordings/{call.project_id}/{call.pk}.sealed"
    assert (recording.content_type, recording.size) == ("audio/wav", len(audio))
    (path,) = stored_files(media)
    name = str(path.relative_to(media))
    assert name == recording.storage_name
    for digits in digits_of(phone[1]):
        assert digits not in name
    raw = path.read_bytes()
    assert raw != audio and b"RIFF" not in raw and audio[1000:1100] not in raw
    assert plaintext(recording) == audio


def test_the_store_is_recorded_as_the_pbx(media, pbx, call):
    post_file(pbx[1], call.pk, wav_bytes(0.5))
    recording = Recording.objects.get(call=call)
    event = AuditEvent.objects.get(action="recording.store")
    assert (event.actor_kind, event.actor_name) == ("pbx", "PBX office")
    assert (event.object_type, event.object_id) == ("call", str(call.pk))
    assert event.changes == {
        f"recording {recording.pk}": [None, f"audio/wav, {recording.size} bytes"]
    }


@pytest.mark.parametrize(
    ("head", "content_type"), [(MP3_HEAD, "audio/mpeg"), (OGG_HEAD, "audio/ogg")]
)
def test_mp3_and_ogg_are_accepted_by_their_first_bytes(media, pbx, call, head, content_type):
    # The declared type is not believed: the bytes decide.
    response = post_file(pbx[1], call.pk, head, name="x.bin", content_type="text/plain")
    assert response.status_code == 201
    assert Recording.objects.get(call=call).content_type == content_type


@pytest.mark.parametrize(
    "secret", [None, "cvp_nothing_here", "Basic abc"], ids=["none", "unknown", "garbage"]
)
def test_an_upload_without_a_valid_secret_is_refused(media, pbx, call, secret):
    response = post_file(secret, call.pk, wav_bytes(0.2))
    assert response.status_code == 401
    assert not Recording.objects.exists() and not stored_files(media)


def test_a_wrong_secret_with_a_real_prefix_is_refused(media, pbx, call):
    good = pbx[1]
    response = post_file(good[:-4] + "AAAA", call.pk, wav_bytes(0.2))
    assert response.status_code == 401
    assert not Recording.objects.exists()


def test_a_revoked_pbx_may_not_upload(media, pbx, call):
    do_revoke_pbx(pbx[0])
    assert post_file(pbx[1], call.pk, wav_bytes(0.2)).status_code == 401
    assert not stored_files(media)


def test_a_browser_session_is_no_credential(media, owner, call):
    from conftest import login

    response = login(owner).post(upload_url(call.pk), {"file": SimpleUploadedFile("a.wav", b"")})
    assert response.status_code == 401


def test_another_projects_pbx_gets_404_for_the_call(media, other_project, call):
    _, secret = do_create_pbx(other_project, "theirs", networks=LOCAL)
    response = post_file(secret, call.pk, wav_bytes(0.2))
    assert response.status_code == 404
    assert not Recording.objects.exists() and not stored_files(media)


def test_an_unknown_call_is_404(media, pbx, call):
    assert post_file(pbx[1], call.pk + 1000, wav_bytes(0.2)).status_code == 404


def test_a_file_that_is_not_audio_is_refused_and_nothing_is_stored(media, pbx, call):
    response = post_file(pbx[1], call.pk, b"%PDF-1.7 " + bytes(500), name="rec.wav")
    assert response.status_code == 415
    assert response.json() == {"ok": False, "error": "the file is not WAV, MP3 or Ogg audio"}
    assert not Recording.objects.exists() and not stored_files(media)
    assert not AuditEvent.objects.filter(action="recording.store").exists()


def test_a_file_over_the_limit_is_refused_and_nothing_is_stored(media, settings, pbx, call):
    settings.RECORDING_MAX_BYTES = 20_000
    response = post_file(pbx[1], call.pk, wav_bytes(2.0))  # 32 KB
    assert response.status_code == 413
    assert "size limit" in response.json()["error"]
    assert not Recording.objects.exists() and not stored_files(media)


def test_a_body_far_over_the_limit_is_refused_before_it_is_read(media, settings, pbx, call):
    settings.RECORDING_MAX_BYTES = 1_000
    response = post_file(pbx[1], call.pk, wav_bytes(10.0))  # 160 KB: over limit + slack
    assert response.status_code == 413
    assert not stored_files(media)


def test_a_file_of_exactly_the_limit_is_accepted(media, settings, pbx, call):
    audio = wav_bytes(1.0)
    settings.RECORDING_MAX_BYTES = len(audio)
    assert post_file(pbx[1], call.pk, audio).status_code == 201


def test_an_upload_without_the_file_field_names_it(media, pbx, call):
    response = pbx_client(pbx[1]).post(upload_url(call.pk), {"audio": "x"})
    assert response.status_code == 422
    assert response.json()["field"] == "file"


def test_another_body_type_is_refused(media, pbx, call):
    response = pbx_client(pbx[1]).post(
        upload_url(call.pk), wav_bytes(0.2), content_type="audio/wav"
    )
    assert response.status_code == 415


def test_a_second_recording_for_the_call_is_refused_and_the_first_kept(media, pbx, call):
    first = wav_bytes(0.5)
    assert post_file(pbx[1], call.pk, first).status_code == 201
    response = post_file(pbx[1], call.pk, wav_bytes(0.7))
    assert response.status_code == 409
    assert plaintext(Recording.objects.get(call=call)) == first
    assert len(stored_files(media)) == 1


def test_a_file_left_by_an_interrupted_upload_is_replaced(media, pbx, call):
    # A file without its row: the upload before was cut off between the file and the commit.
    default_storage.save(storage_name(call), SimpleUploadedFile("x", b"half a file"))
    audio = wav_bytes(0.5)
    assert post_file(pbx[1], call.pk, audio).status_code == 201
    assert plaintext(Recording.objects.get(call=call)) == audio


def test_only_post_is_answered(media, pbx, call):
    assert pbx_client(pbx[1]).get(upload_url(call.pk)).status_code == 405


# --- fetching from a URL ----------------------------------------------------------------------


@pytest.fixture
def fetch_from_localhost(settings):
    settings.RECORDING_FETCH_HOSTS = ["127.0.0.1"]


def test_a_url_is_fetched_in_the_background_and_stored(
    media, pbx, call, audio_server, fetch_from_localhost
):
    response = post_json(pbx[1], call.pk, {"url": audio_server.url("/rec.wav")})
    assert response.status_code == 202, response.content
    assert audio_server.requests == ["/rec.wav"]
    recording = Recording.objects.get(call=call)
    assert plaintext(recording) == audio_server.audio
    assert recording.storage_name == f"recordings/{call.project_id}/{call.pk}.sealed"
    event = AuditEvent.objects.get(action="recording.store")
    assert (event.actor_kind, event.object_id) == ("pbx", str(call.pk))


def test_the_url_reaches_no_log_no_record_and_no_file_name(
    media, pbx, call, audio_server, fetch_from_localhost, phone, caplog
):
    digits = phone[1].lstrip("+")
    caplog.set_level(logging.DEBUG)
    post_json(pbx[1], call.pk, {"url": audio_server.url(f"/missing/{digits}.wav")})
    assert audio_server.requests == [f"/missing/{digits}.wav"]
    assert not Recording.objects.exists()
    assert "refused" in caplog.text  # the failure is logged...
    assert digits not in caplog.text and digits[-7:] not in caplog.text  # ...not the URL
    for event in AuditEvent.objects.all():
        assert digits[-7:] not in f"{event.changes} {event.extra}"


def test_a_redirect_is_not_followed(media, pbx, call, audio_server, fetch_from_localhost):
    response = post_json(pbx[1], call.pk, {"url": audio_server.url("/redirect")})
    assert response.status_code == 202
    assert audio_server.requests == ["/redirect"]  # never went on to /rec.wav
    assert not Recording.objects.exists() and not stored_files(media)


def test_a_redirect_is_refused_by_the_download(audio_server, fetch_from_localhost, tmp_path):
    with open(tmp_path / "out", "wb") as out, pytest.raises(FetchRefused, match="redirect"):
        download(audio_server.url("/redirect"), out)


def test_a_private_address_is_refused_before_connecting(settings, audio_server, tmp_path):
    settings.RECORDING_FETCH_HOSTS = []
    # https, so only the address check can refuse it; localhost is the loopback.
    url = audio_server.url("/rec.wav", host="localhost", scheme="https")
    with open(tmp_path / "out", "wb") as out, pytest.raises(FetchRefused, match="private"):
        download(url, out)
    assert audio_server.requests == []


def test_the_task_refuses_a_private_address_and_stores_nothing(
    media, settings, pbx, call, audio_server
):
    settings.RECORDING_FETCH_HOSTS = []
    url = audio_server.url("/rec.wav", host="localhost", scheme="https")
    response = post_json(pbx[1], call.pk, {"url": url})
    assert response.status_code == 202
    assert audio_server.requests == []
    assert not Recording.objects.exists()


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("192.168.0.10", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("::1", False),
        ("::ffff:127.0.0.1", False),
        ("fd00::1", False),
        ("0.0.0.0", False),  # noqa: S104 (an address to refuse, not to bind)
        ("8.8.8.8", True),
        ("2001:4860:4860::8888", True),
    ],
)
def test_which_addresses_count_as_public(address, public):
    assert is_public(address) is public


def test_private_addresses_can_be_allowed_for_tests(settings, audio_server, tmp_path):
    settings.RECORDING_FETCH_HOSTS = []
    settings.RECORDING_FETCH_ALLOW_PRIVATE = True
    url = audio_server.url("/rec.wav", host="localhost", scheme="https")
    # Past the address check now: it fails at TLS (the server speaks plain HTTP).
    with open(tmp_path / "out", "wb") as out, pytest.raises(FetchRefused, match="fetch failed"):
        download(url, out)


@pytest.mark.parametrize(
    "url",
    [
        "http://recordings.example/rec.wav",  # plain http to a host not on the allow-list
        "ftp://recordings.example/rec.wav",
        "https://user:pass@recordings.example/rec.wav",
        "https:///rec.wav",
        "https://recordings.example:99999/rec.wav",
        "",
        "https://recordings.example/" + "a" * 2000,
    ],
)
def test_a_url_the_fetch_would_refuse_is_refused_at_once(media, pbx, call, url):
    response = post_json(pbx[1], call.pk, {"url": url})
    assert response.status_code == 422
    assert response.json()["field"] == "url"
    assert "recordings.example" not in response.content.decode()


def test_a_body_that_is_not_json_is_refused(media, pbx, call):
    response = pbx_client(pbx[1]).post(upload_url(call.pk), "{", content_type="application/json")
    assert response.status_code == 422


@pytest.mark.parametrize("path", ["/huge", "/chunked-huge"])
def test_a_fetch_over_the_limit_is_refused(
    media, settings, pbx, call, audio_server, fetch_from_localhost, path
):
    settings.RECORDING_MAX_BYTES = 100_000
    post_json(pbx[1], call.pk, {"url": audio_server.url(path)})
    assert audio_server.requests == [path]
    assert not Recording.objects.exists() and not stored_files(media)


def test_a_fetched_file_that_is_not_audio_is_refused(
    media, pbx, call, audio_server, fetch_from_localhost
):
    post_json(pbx[1], call.pk, {"url": audio_server.url("/text")})
    assert not Recording.objects.exists() and not stored_files(media)


def test_a_fetch_that_takes_too_long_is_given_up(settings, tmp_path, fetch_from_localhost):
    import socket

    settings.RECORDING_FETCH_TIMEOUT = 0.5
    # A server that accepts and then says nothing.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with (
            open(tmp_path / "out", "wb") as out,
            pytest.raises(FetchRefused, match="longer than the timeout"),
        ):
            download(f"http://127.0.0.1:{port}/rec.wav", out)


def test_a_url_for_a_call_with_a_recording_is_refused(media, pbx, call, audio_server):
    post_file(pbx[1], call.pk, wav_bytes(0.2))
    response = post_json(pbx[1], call.pk, {"url": audio_server.url("/rec.wav", scheme="https")})
    assert response.status_code == 409


def test_the_task_drops_a_fetch_for_a_revoked_pbx(media, pbx, call, audio_server):
    do_revoke_pbx(pbx[0])
    sealed = seal(audio_server.url("/rec.wav"), project_id=call.project_id, field="recording_url")
    assert fetch_recording.call(call_id=call.pk, pbx_id=pbx[0].pk, sealed_url=sealed) == 0
    assert audio_server.requests == []


def test_the_queued_url_is_sealed(media, settings, pbx, call):
    from django_tasks import default_task_backend

    # A queue that keeps what it is given, as the database queue does, without running it.
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.dummy.DummyBackend"}}
    url = "https://recordings.example/calls/rec.wav"
    assert post_json(pbx[1], call.pk, {"url": url}).status_code == 202
    (queued,) = default_task_backend.results  # type: ignore[attr-defined]
    assert queued.kwargs["call_id"] == call.pk
    assert "recordings.example" not in str(queued.kwargs)
    assert re.match(r"^cv1:k\d+:", queued.kwargs["sealed_url"])


class _Trickle(BaseHTTPRequestHandler):
    """Answers a byte at a time, 0.3 s apart: in the headers (/headers) or in the body."""

    def do_GET(self) -> None:
        body = b"RIFF" + bytes(4) + b"WAVE" + bytes(8)
        head = (
            b"HTTP/1.1 200 OK\r\nContent-Type: audio/wav\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        slow, fast = (head, b"") if self.path == "/headers" else (body, head)
        try:
            self.wfile.write(fast)
            for byte in slow:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.3)
            if self.path == "/headers":
                self.wfile.write(body)
        except OSError:
            pass  # the fetch gave up and closed the connection

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize("path", ["/body", "/headers"])
def test_a_server_that_trickles_is_given_up_at_the_deadline(settings, path):
    """Each byte comes well within a read's own wait, so only the whole fetch's deadline,
    applied to every receive (headers included), stops it: 1 s, not the 6 s it drips for."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings.RECORDING_FETCH_TIMEOUT = 1
    settings.RECORDING_FETCH_HOSTS = ["127.0.0.1"]
    started = time.monotonic()
    try:
        with pytest.raises(FetchRefused, match="longer than the timeout"):
            download(f"http://127.0.0.1:{server.server_address[1]}{path}", io.BytesIO())
        assert time.monotonic() - started < 3
    finally:
        server.shutdown()
        server.server_close()


# --- the fetch on record --------------------------------------------------------------------


def test_a_queued_fetch_is_recorded_and_so_is_its_failure(
    media, pbx, call, audio_server, fetch_from_localhost, phone
):
    digits = phone[1].lstrip("+")
    post_json(pbx[1], call.pk, {"url": audio_server.url(f"/missing/{digits}.wav")})
    queued = AuditEvent.objects.get(action="recording.fetch_queued")
    failed = AuditEvent.objects.get(action="recording.fetch_failed")
    for event in (queued, failed):
        assert (event.actor_kind, event.object_type, event.object_id) == (
            "pbx",
            "call",
            str(call.pk),
        )
        assert digits[-7:] not in f"{event.changes} {event.extra}"
    assert failed.extra["reason"] == "the server answered 404"


def test_a_fetch_refused_at_once_is_recorded(media, pbx, call):
    response = post_json(pbx[1], call.pk, {"url": "http://recordings.example/rec.wav"})
    assert response.status_code == 422
    failed = AuditEvent.objects.get(action="recording.fetch_failed")
    assert failed.object_id == str(call.pk) and "https" in failed.extra["reason"]
    assert "recordings.example" not in str(failed.extra)
    assert not AuditEvent.objects.filter(action="recording.fetch_queued").exists()


def test_a_fetch_for_a_revoked_pbx_is_recorded_as_failed(media, pbx, call, audio_server):
    do_revoke_pbx(pbx[0])
    sealed = seal(audio_server.url("/rec.wav"), project_id=call.project_id, field="recording_url")
    fetch_recording.call(call_id=call.pk, pbx_id=pbx[0].pk, sealed_url=sealed)
    failed = AuditEvent.objects.get(action="recording.fetch_failed")
    assert failed.extra["reason"] == "the PBX was revoked"
