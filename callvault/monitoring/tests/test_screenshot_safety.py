"""What an upload can do to the server: a small file claiming a huge canvas is refused from
its header before anything is decoded, the pixels allowed follow the policy's scale, the
bytes per device and minute are capped, and what is stored and served back is a fresh
encoding of the pixels only, with headers that keep a browser from running anything."""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from PIL import Image, ImageFile

from callvault.monitoring import agent_views, screenshots
from callvault.monitoring.models import Device, Screenshot
from callvault.monitoring.policy import do_update_policy, policy_for
from callvault.monitoring.screenshots import (
    MAX_SCREEN_PIXELS,
    PLAUSIBLE_SCREEN_PIXELS,
    ScreenshotRefused,
    decode,
    do_receive_screenshot,
    pixel_limit,
)
from callvault.monitoring.tests.support import enrol, image_bytes, post_shot
from callvault.vault.files import read_sealed


@pytest.fixture
def device(operator: Any) -> tuple[Device, str]:
    return enrol(operator)


def claiming(width: int, height: int) -> bytes:
    """A real 8 x 8 JPEG whose header claims another canvas: a few hundred bytes that would
    make a decoder allocate the claimed size (a decompression bomb)."""
    out = io.BytesIO()
    Image.new("RGB", (8, 8), "white").save(out, "JPEG")
    data = bytearray(out.getvalue())
    sof = data.index(b"\xff\xc0")  # baseline frame header: length, precision, height, width
    data[sof + 5 : sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def noise(width: int, height: int, fmt: str = "JPEG") -> bytes:
    """A picture that does not compress away."""
    out = io.BytesIO()
    bands = [Image.effect_noise((width, height), 100) for _ in range(3)]
    Image.merge("RGB", bands).save(out, fmt, quality=95)
    return out.getvalue()


def test_a_small_file_claiming_a_huge_canvas_is_refused_before_decoding(device, monkeypatch):
    loads: list[Any] = []
    original = ImageFile.ImageFile.load

    def load(self: Any) -> Any:
        loads.append(self)
        return original(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    bomb = claiming(8192, 8192)
    assert len(bomb) < 1000
    response = post_shot(device[1], bomb, content_type="image/jpeg")
    assert response.status_code == 415
    assert "more than a screenshot of this project can have" in response.json()["errors"]["image"]
    assert loads == []  # refused from the header: nothing was decoded
    assert not Screenshot.objects.exists()


def test_the_pixels_allowed_follow_the_policys_scale(device, project):
    """A 4K screen at full size is more than the agent sends under the default scale of
    0.5 (with room for rounding and a policy not yet re-read); at scale 1 it is fine, and
    two of them side by side are the most any policy allows."""
    policy = policy_for(project)
    assert policy.screenshot_scale == 0.5
    assert pixel_limit(policy) == int(PLAUSIBLE_SCREEN_PIXELS * 0.625**2)
    uhd = image_bytes(3840, 2160, fmt="JPEG")
    refused = post_shot(device[1], uhd, content_type="image/jpeg")
    assert refused.status_code == 415 and "3840 x 2160" in refused.json()["detail"]
    assert post_shot(device[1], image_bytes(2400, 1350, fmt="JPEG")).status_code == 201
    do_update_policy(policy, screenshot_scale=1.0)
    assert post_shot(device[1], uhd, content_type="image/jpeg").status_code == 201
    assert pixel_limit(policy_for(project)) == PLAUSIBLE_SCREEN_PIXELS < MAX_SCREEN_PIXELS


def test_no_canvas_beyond_the_largest_screen_whatever_the_limit_asked():
    with pytest.raises(ScreenshotRefused) as refused:
        decode(claiming(20000, 100), 2_000_000, max_pixels=10**9)
    assert refused.value.status == 415
    assert Image.MAX_IMAGE_PIXELS == MAX_SCREEN_PIXELS  # Pillow's own guard, for the process


def test_an_animation_is_no_screenshot(device):
    out = io.BytesIO()
    first, second = Image.new("RGB", (40, 30), "red"), Image.new("RGB", (40, 30), "blue")
    first.save(out, "WEBP", save_all=True, append_images=[second], duration=100)
    response = post_shot(device[1], out.getvalue())
    assert response.status_code == 415 and "animation" in response.json()["detail"]


def test_screenshot_bytes_per_device_and_minute_are_capped(device, project, monkeypatch):
    """Before the body is read: the agent keeps the screenshot and sends it again later."""
    do_update_policy(policy_for(project), max_screenshot_bytes=50_000)
    monkeypatch.setattr(agent_views, "SCREENSHOT_BUDGET", 2)  # 100 kB a minute
    picture = noise(180, 180)
    assert 35_000 < len(picture) < 50_000
    codes = [post_shot(device[1], picture).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    refused = post_shot(device[1], picture)
    assert refused.status_code == 429 and refused["Retry-After"] == "60"
    assert Screenshot.objects.count() == 2
    # Another device has a budget of its own.
    _other, token = enrol(device[0].membership, hostname="desk-2")
    assert post_shot(token, picture).status_code == 201


def test_what_is_stored_and_served_is_the_pixels_only(device, supervisor, project):
    """Metadata and bytes after the image are not kept: the upload is re-encoded from its
    decoded pixels, in its own format, at the policy's quality."""
    out = io.BytesIO()
    exif = Image.Exif()
    exif[0x010E] = "<svg onload=alert(1)> the description"
    Image.new("RGB", (64, 40), "red").save(out, "JPEG", exif=exif, comment=b"a comment")
    payload = out.getvalue() + b"<html><script>alert(document.cookie)</script></html>"
    response = post_shot(device[1], payload, content_type="image/jpeg")
    assert response.status_code == 201
    shot = Screenshot.objects.get(pk=response.json()["id"])
    client = Client(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(supervisor.user)
    served = client.get(f"/p/alpha/monitoring/screenshots/{shot.pk}/")
    body = b"".join(served.streaming_content)  # type: ignore[attr-defined]
    for planted in (b"<svg", b"<script>", b"a comment", b"Exif"):
        assert planted not in body
    with Image.open(io.BytesIO(body)) as image:
        assert (image.format, image.size) == ("JPEG", (64, 40))
        assert not image.info.get("exif") and "comment" not in image.info
    assert shot.size == len(body)
    assert served["Content-Type"] == "image/jpeg"
    assert served["Content-Security-Policy"].startswith("sandbox")
    assert served["X-Content-Type-Options"] == "nosniff"
    thumb = client.get(f"/p/alpha/monitoring/screenshots/{shot.pk}/thumb/")
    assert thumb["Content-Type"] == "image/jpeg"
    assert thumb["Content-Security-Policy"].startswith("sandbox")
    assert thumb["X-Content-Type-Options"] == "nosniff"


def test_a_webp_stays_a_webp_at_the_policys_quality(device, project):
    do_update_policy(policy_for(project), screenshot_quality=10)
    sent = noise(200, 120, "WEBP")
    device_row = Device.objects.select_related("project__monitoring_policy").get(pk=device[0].pk)
    shot = do_receive_screenshot(
        device_row, client_id=uuid.uuid4(), taken_at=timezone.now(), content=sent
    ).screenshot
    stored = b"".join(read_sealed(shot.storage_name, project_id=project.pk, purpose="screenshot"))
    assert stored[:4] == b"RIFF" and stored[8:12] == b"WEBP"
    assert shot.content_type == "image/webp"
    assert len(stored) < len(sent)  # quality 10 of noise is smaller than the agent's 95


def test_the_thumbnail_is_320_pixels_wide():
    with Image.open(io.BytesIO(image_bytes(1920, 1080))) as image:
        image.load()
        small = screenshots.thumbnail(image)
        assert image.size == (1920, 1080)  # the caller's picture is left alone
    with Image.open(io.BytesIO(small)) as thumb:
        assert (thumb.format, thumb.size) == ("JPEG", (320, 180))
