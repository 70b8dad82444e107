"""Screenshots: checked by decoding, sealed at rest with a thumbnail, read back for the
timeline (each full view recorded), and deleted after the policy's retention."""

from __future__ import annotations

import io
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone
from PIL import Image, UnidentifiedImageError

from callvault.audit.recorder import record_event
from callvault.lib.errors import FieldErrors
from callvault.monitoring.models import Device, MonitoringPolicy, Screenshot
from callvault.monitoring.policy import in_working_hours
from callvault.vault.files import delete_sealed, read_sealed, save_sealed

log = logging.getLogger(__name__)

PURPOSE = "screenshot"
THUMB_PURPOSE = "screenshot.thumb"
FORMATS = {"WEBP": "image/webp", "JPEG": "image/jpeg"}
# Decoding is where a hostile file would hurt: a small file can claim a huge canvas.
# 8K by 8K is more than any screen the agent photographs.
MAX_PIXELS = 8192 * 8192
THUMB_WIDTH = 320
THUMB_QUALITY = 70


class ScreenshotRefused(Exception):
    """An upload that is not stored: `status` 413 (too large) or 415 (not a WebP or JPEG
    image); `field` names the part at fault."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Decoded:
    """What decoding found out about an upload."""

    width: int
    height: int
    content_type: str
    image: Image.Image


def decode(content: bytes, max_bytes: int) -> Decoded:
    """Check the upload really is a WebP or JPEG image of a sane size, by decoding it."""
    if len(content) > max_bytes:
        raise ScreenshotRefused(
            413, "image", f"image: larger than this project's limit of {max_bytes} bytes"
        )
    try:
        image = Image.open(io.BytesIO(content), formats=list(FORMATS))
        if image.width * image.height > MAX_PIXELS:
            raise ScreenshotRefused(415, "image", "image: the picture's canvas is too large")
        image.load()
    except ScreenshotRefused:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise ScreenshotRefused(
            415, "image", "image: not a WebP or JPEG image (it does not decode as one)"
        ) from None
    assert image.format is not None
    return Decoded(image.width, image.height, FORMATS[image.format], image)


def thumbnail(image: Image.Image) -> bytes:
    """A small JPEG of the screenshot for the timeline (thumbnails of every screenshot of a
    day come to a few hundred kilobytes)."""
    small = image.convert("RGB")
    height = max(1, round(small.height * THUMB_WIDTH / max(1, small.width)))
    small.thumbnail((THUMB_WIDTH, height))
    out = io.BytesIO()
    small.save(out, "JPEG", quality=THUMB_QUALITY)
    return out.getvalue()


def storage_names(shot: Screenshot) -> tuple[str, str]:
    """Where the sealed file and its thumbnail live: no person, host or time in the names."""
    base = f"screenshots/{shot.project_id}/{shot.device_id}/{shot.pk}"
    return f"{base}.sealed", f"{base}.thumb.sealed"


@dataclass(frozen=True)
class Received:
    """The stored screenshot, and whether this upload stored it (False: a repeat)."""

    screenshot: Screenshot
    created: bool


def parse_client_id(value: str | None) -> uuid.UUID:
    """The agent's id for the screenshot."""
    try:
        return uuid.UUID(str(value or ""))
    except ValueError:
        raise FieldErrors.one("client_id", "a UUID") from None


def do_receive_screenshot(
    device: Device,
    *,
    client_id: uuid.UUID,
    taken_at: datetime,
    content: bytes,
    now: datetime | None = None,
) -> Received:
    """Store one screenshot of the device, sealed, with its thumbnail. A repeat of a
    client_id answers with the first one and stores nothing; a refused upload (too large,
    not an image, screenshots off, outside working hours) stores nothing either."""
    first = Screenshot.objects.filter(device_id=device.pk, client_id=client_id).first()
    if first is not None:
        return Received(first, False)
    project = device.project
    policy: MonitoringPolicy = project.monitoring_policy
    if policy.screenshots_max == 0:
        raise FieldErrors.one("image", "screenshots are off in this project's policy")
    if taken_at > (now or timezone.now()) + timedelta(minutes=10):
        raise FieldErrors.one("taken_at", "in the future: check the PC's clock")
    if not in_working_hours(policy, project, taken_at):
        raise FieldErrors.one("taken_at", "outside the policy's working hours")
    decoded = decode(content, policy.max_screenshot_bytes)
    small = thumbnail(decoded.image)
    saved: list[str] = []
    try:
        with transaction.atomic():
            shot = Screenshot.objects.create(
                device_id=device.pk,
                membership_id=device.membership_id,
                project_id=device.project_id,
                taken_at=taken_at,
                client_id=client_id,
                width=decoded.width,
                height=decoded.height,
                content_type=decoded.content_type,
                size=len(content),
            )
            name, thumb = storage_names(shot)
            _save_fresh(name, content, shot.project_id, PURPOSE)
            saved.append(name)
            _save_fresh(thumb, small, shot.project_id, THUMB_PURPOSE)
            saved.append(thumb)
            shot.storage_name, shot.thumb_storage_name = name, thumb
            shot.save(update_fields=["storage_name", "thumb_storage_name"])
    except IntegrityError:
        # The same client_id arrived twice at once: the other request stored it.
        _forget(saved)
        first = Screenshot.objects.filter(device_id=device.pk, client_id=client_id).first()
        if first is None:
            raise
        return Received(first, False)
    except BaseException:
        _forget(saved)
        raise
    return Received(shot, True)


def _save_fresh(name: str, content: bytes, project_id: int, purpose: str) -> None:
    """Seal a file under the name of a row created in this transaction. A file already
    there can only be left over from a transaction that rolled back after writing it (the
    row id is ours; SQLite hands a rolled-back id out again): it is replaced."""
    try:
        save_sealed(name, content, project_id=project_id, purpose=purpose)
    except FileExistsError:
        log.warning("replacing %s, left over from a rolled-back screenshot", name)
        delete_sealed(name)
        save_sealed(name, content, project_id=project_id, purpose=purpose)


def _forget(names: list[str]) -> None:
    """Delete files written for a row that was rolled back."""
    for name in names:
        try:
            delete_sealed(name)
        except OSError:
            log.warning("could not delete the orphaned file %s", name, exc_info=True)


def open_screenshot(shot: Screenshot, *, thumb: bool = False) -> Iterator[bytes]:
    """The decrypted image (or thumbnail), in pieces. Recording the view is the caller's."""
    if thumb:
        return read_sealed(
            shot.thumb_storage_name, project_id=shot.project_id, purpose=THUMB_PURPOSE
        )
    return read_sealed(shot.storage_name, project_id=shot.project_id, purpose=PURPOSE)


def record_view(shot: Screenshot, *, username: str) -> None:
    """Record that someone saw a screenshot in full (the thumbnails' page records itself)."""
    record_event(
        "screenshot.view",
        project_id=shot.project_id,
        object_type="screenshot",
        object_id=shot.pk,
        object_repr=f"screenshot of {username} at {shot.taken_at:%Y-%m-%d %H:%M:%S}",
        extra={"member": username, "taken_at": shot.taken_at.isoformat()},
    )


# --- Retention ------------------------------------------------------------------------------

PURGE_BATCH = 500


def purge_project(policy: MonitoringPolicy, *, now: datetime | None = None) -> int:
    """Delete the project's screenshots older than its retention, files first, then rows;
    one `screenshot.purge` event per project and run with how many and up to when."""
    cutoff = (now or timezone.now()) - timedelta(days=policy.retention_days)
    old = Screenshot.objects.filter(project_id=policy.project_id, taken_at__lt=cutoff)
    deleted = 0
    oldest: datetime | None = None
    while True:
        batch = list(
            old.order_by("taken_at", "pk").values_list(
                "pk", "taken_at", "storage_name", "thumb_storage_name"
            )[:PURGE_BATCH]
        )
        if not batch:
            break
        oldest = oldest or batch[0][1]
        for _pk, _at, name, thumb in batch:
            for stored in (name, thumb):
                if stored:
                    delete_sealed(stored)
        deleted += Screenshot.objects.filter(pk__in=[row[0] for row in batch]).delete()[0]
    if deleted:
        record_event(
            "screenshot.purge",
            project_id=policy.project_id,
            object_type="monitoring_policy",
            object_id=policy.pk,
            object_repr=f"screenshots of {policy.project}",
            extra={
                "deleted": deleted,
                "older_than": cutoff.isoformat(),
                "oldest": oldest.isoformat() if oldest else None,
                "retention_days": policy.retention_days,
            },
        )
    return deleted
