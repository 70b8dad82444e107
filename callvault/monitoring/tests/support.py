"""Helpers the monitoring tests share: enrolled devices, the agent's requests, images."""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.test import Client
from django.utils import timezone
from PIL import Image

from callvault.accounts.models import Membership
from callvault.monitoring.actions import do_create_enrolment_code, do_enrol_device, find_code
from callvault.monitoring.models import Device

UTC_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def enrol(member: Membership, hostname: str = "desk-1") -> tuple[Device, str]:
    """A device enrolled for the member through the actions; (device, token)."""
    _row, code = do_create_enrolment_code(member)
    row = find_code(code)
    assert row is not None
    done = do_enrol_device(row, hostname=hostname, platform="linux-x11", agent_version="0.1.0")
    return done.device, done.token


def agent(token: str) -> Client:
    """A client speaking as the agent with this token."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {token}")


def iso(moment: datetime) -> str:
    """UTC with Z, as the agent writes times."""
    return moment.astimezone(UTC).strftime(UTC_FORMAT)


def beat(
    seq: int,
    at: datetime,
    state: str = "active",
    app: str | None = "firefox",
    title: str | None = "Orders",
) -> dict[str, Any]:
    """One heartbeat as the agent sends it."""
    return {"seq": seq, "at": iso(at), "state": state, "app": app, "title": title}


def post_beats(token: str, beats: list[dict[str, Any]]) -> Any:
    """POST a batch of heartbeats."""
    return agent(token).post(
        "/agent/v1/heartbeats", json.dumps({"heartbeats": beats}), content_type="application/json"
    )


def image_bytes(width: int = 64, height: int = 40, fmt: str = "WEBP", colour: str = "red") -> bytes:
    """A real image of the given size and format."""
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, fmt)
    return out.getvalue()


def same_picture(stored: bytes, sent: bytes) -> bool:
    """Whether stored bytes are the sent picture (the server keeps a re-encoded copy, not
    the upload byte for byte): same format and size, colours within lossy rounding."""
    with Image.open(io.BytesIO(stored)) as a, Image.open(io.BytesIO(sent)) as b:
        if (a.format, a.size) != (b.format, b.size):
            return False
        middle = (a.width // 2, a.height // 2)
        left, right = a.convert("RGB").getpixel(middle), b.convert("RGB").getpixel(middle)
    assert isinstance(left, tuple) and isinstance(right, tuple)
    return all(abs(x - y) <= 12 for x, y in zip(left, right, strict=True))


def thumb_src(html: str, screenshot_id: int) -> str:
    """The thumbnail link a timeline page carries for a screenshot (with its token)."""
    import re
    from html import unescape

    found = re.search(rf'src="(/p/[^"]*/screenshots/{screenshot_id}/thumb/[^"]*)"', html)
    assert found is not None, "no thumbnail of that screenshot on the page"
    return unescape(found.group(1))


def post_shot(
    token: str,
    content: bytes,
    *,
    client_id: uuid.UUID | None = None,
    taken_at: datetime | None = None,
    name: str = "shot.webp",
    content_type: str = "image/webp",
) -> Any:
    """POST a screenshot as the agent does (multipart)."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    return agent(token).post(
        "/agent/v1/screenshots",
        {
            "image": SimpleUploadedFile(name, content, content_type=content_type),
            "taken_at": iso(taken_at or timezone.now()),
            "client_id": str(client_id or uuid.uuid4()),
            "width": "64",
            "height": "40",
        },
    )


def minutes_ago(n: float) -> datetime:
    """A moment n minutes before now."""
    return timezone.now() - timedelta(minutes=n)


def world_screenshot(member: Membership) -> int:
    """A screenshot of the member's, stored as the agent stores it (the endpoint matrix
    needs a real one for its screenshot pages)."""
    from callvault.monitoring.screenshots import do_receive_screenshot

    device, _token = enrol(member, hostname="matrix-pc")
    received = do_receive_screenshot(
        device, client_id=uuid.uuid4(), taken_at=timezone.now(), content=image_bytes()
    )
    return received.screenshot.pk


def drive_monitoring_paths(run: Any, owner: Membership) -> None:
    """For audit/tests/test_no_secrets_in_events.py: every path that writes an enrolment
    code's hash or a device token's, with the code and token noted as plaintexts that no
    event may hold. `run` is that test's Run."""
    import re

    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(owner.user)
    slug = owner.project.slug
    page = run.step(
        lambda: client.post(f"/p/{slug}/monitoring/codes/", {"membership": owner.pk, "hours": 2})
    )
    found = re.search(r'<code class="key">([0-9A-Z]{5}-[0-9A-Z]{5})</code>', page.content.decode())
    assert found is not None, "the code page showed no code"
    code = found.group(1)
    run.plaintexts.update({code, code.replace("-", "")})
    body = {"code": code, "hostname": "pc", "platform": "linux-x11", "agent_version": "1"}
    enrolled = run.step(
        lambda: Client().post("/agent/v1/enrol", json.dumps(body), content_type="application/json")
    )
    token = enrolled.json()["token"]
    run.plaintexts.add(token)
    run.step(
        lambda: Client().post("/agent/v1/enrol", json.dumps(body), content_type="application/json")
    )
    run.step(lambda: agent(token).get("/agent/v1/policy"))
    run.step(lambda: post_beats(token, [beat(1, minutes_ago(1))]))
    run.step(lambda: agent(token[:-4] + "AAAA").get("/agent/v1/policy"))
    device_id = enrolled.json()["device_id"]
    run.step(lambda: client.post(f"/p/{slug}/monitoring/devices/{device_id}/revoke/"))
    refused = run.step(lambda: agent(token).get("/agent/v1/policy"))
    assert refused.status_code == 401
