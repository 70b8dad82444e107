"""Screenshots: checked by decoding, stored re-encoded and sealed with a thumbnail, read back
for the timeline (each full view recorded), and deleted after the policy's retention, with
the activity spans of the same age."""

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
from callvault.monitoring.heartbeats import CLOCK_SKEW, clock_ahead
from callvault.monitoring.models import ActivitySpan, Device, MonitoringPolicy, Screenshot
from callvault.monitoring.policy import in_working_hours
from callvault.vault.files import delete_sealed, read_sealed, save_sealed

log = logging.getLogger(__name__)

PURPOSE = "screenshot"
THUMB_PURPOSE = "screenshot.thumb"
FORMATS = {"WEBP": "image/webp", "JPEG": "image/jpeg"}
# Decoding is where a hostile file hurts: a WebP of 141 KB can claim 8192 x 8192 pixels and
# cost a gigabyte once decoded (Pillow decodes a WebP through libwebp's animation decoder:
# about 15 bytes a pixel at the peak, a JPEG about 3). The canvas is read from the header
# and checked before any pixel is decoded. Never more than an 8K screen, about 33 megapixels,
# nor a side longer than WebP allows at all...
MAX_SCREEN_PIXELS = 7680 * 4320
MAX_SIDE = 16383
# ...and no more than the widest desk the agent plausibly photographs whole (mss grabs all
# monitors as one picture): two 4K screens side by side, about 17 megapixels, shrunk by the
# policy's scale with room for rounding and for an agent that has not re-read the policy
# yet since the scale was lowered (it does within ten minutes).
PLAUSIBLE_SCREEN_PIXELS = 7680 * 2160
SCALE_MARGIN = 1.25
# Pillow's own guard, for the process: screenshots are the only images the server opens.
Image.MAX_IMAGE_PIXELS = MAX_SCREEN_PIXELS
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


def pixel_limit(policy: MonitoringPolicy) -> int:
    """The most pixels a screenshot under this policy can have."""
    scale = min(1.0, policy.screenshot_scale * SCALE_MARGIN)
    return min(MAX_SCREEN_PIXELS, int(PLAUSIBLE_SCREEN_PIXELS * scale * scale))


def _too_large(what: str, max_pixels: int) -> ScreenshotRefused:
    return ScreenshotRefused(
        415,
        "image",
        f"image: {what} is more than a screenshot of this project can have "
        f"({max_pixels} pixels, no side over {MAX_SIDE})",
    )


def _not_an_image() -> ScreenshotRefused:
    return ScreenshotRefused(
        415, "image", "image: not a WebP or JPEG image (it does not decode as one)"
    )


def decode(content: bytes, max_bytes: int, max_pixels: int = MAX_SCREEN_PIXELS) -> Decoded:
    """Check the upload really is a still WebP or JPEG image of a sane size: its canvas read
    from the header first, then decoded (only then are the pixels in memory)."""
    if len(content) > max_bytes:
        raise ScreenshotRefused(
            413, "image", f"image: larger than this project's limit of {max_bytes} bytes"
        )
    try:
        image = Image.open(io.BytesIO(content), formats=list(FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # Pillow's own guard saw the header's canvas first (the warning is an error where
        # warnings are, as in the tests).
        raise _too_large("the canvas", max_pixels) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise _not_an_image() from None
    width, height = image.size
    if width * height > max_pixels or max(width, height) > MAX_SIDE:
        raise _too_large(f"{width} x {height} pixels", max_pixels)
    if getattr(image, "n_frames", 1) != 1:
        raise ScreenshotRefused(415, "image", "image: an animation, not a screenshot")
    try:
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise _not_an_image() from None
    assert image.format is not None
    return Decoded(width, height, FORMATS[image.format], image)


def _pixels(image: Image.Image) -> Image.Image:
    """The decoded picture as plain RGB pixels with nothing else attached (no EXIF, XMP,
    ICC profile or comment: encoders copy what `info` holds)."""
    pixels = image if image.mode == "RGB" else image.convert("RGB")
    pixels.info = {}
    return pixels


def reencode(pixels: Image.Image, content_type: str, quality: int) -> bytes:
    """The screenshot as stored: encoded afresh from its pixels, in the format it came in,
    at the policy's quality; whatever else the upload carried (metadata, bytes after the
    image) is not kept, so nothing but pixels is ever served back."""
    out = io.BytesIO()
    if content_type == FORMATS["WEBP"]:
        pixels.save(out, "WEBP", quality=quality)
    else:
        pixels.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def thumbnail(image: Image.Image) -> bytes:
    """A small JPEG of the screenshot for the timeline (thumbnails of every screenshot of a
    day come to a few hundred kilobytes). reduce() first takes the big step by whole
    factors, cheaply; the filter then only works on a picture twice the thumbnail's size."""
    small = image if image.mode == "RGB" else image.convert("RGB")
    factor = max(1, small.width // (THUMB_WIDTH * 2))
    # thumbnail() works in place: never on the caller's picture.
    small = small.reduce(factor) if factor > 1 else small.copy()
    height = max(1, round(small.height * THUMB_WIDTH / max(1, small.width)))
    small.thumbnail((THUMB_WIDTH, height))
    small.info = {}
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
    ahead = (taken_at - (now or timezone.now())).total_seconds()
    if ahead > CLOCK_SKEW.total_seconds():
        raise FieldErrors.one("taken_at", clock_ahead(ahead))
    if not in_working_hours(policy, project, taken_at):
        raise FieldErrors.one("taken_at", "outside the policy's working hours")
    decoded = decode(content, policy.max_screenshot_bytes, pixel_limit(policy))
    pixels = _pixels(decoded.image)
    stored = reencode(pixels, decoded.content_type, policy.screenshot_quality)
    small = thumbnail(pixels)
    decoded.image.close()
    pixels.close()
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
                size=len(stored),
            )
            name, thumb = storage_names(shot)
            _save_fresh(name, stored, shot.project_id, PURPOSE)
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


def record_view(shot: Screenshot, *, username: str, thumbnail: bool = False) -> None:
    """Record that someone saw a screenshot: in full, or as a thumbnail fetched outside a
    recorded timeline view (views.screenshot_thumb)."""
    record_event(
        "screenshot.view",
        project_id=shot.project_id,
        object_type="screenshot",
        object_id=shot.pk,
        object_repr=f"screenshot of {username} at {shot.taken_at:%Y-%m-%d %H:%M:%S}",
        extra={
            "member": username,
            "taken_at": shot.taken_at.isoformat(),
            **({"thumbnail": True} if thumbnail else {}),
        },
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
        record_purge("screenshot.purge", policy, deleted, cutoff, oldest)
    return deleted


def purge_spans(policy: MonitoringPolicy, *, now: datetime | None = None) -> int:
    """Delete the project's activity spans that ended more than its retention ago (their
    window titles are what operators had open), in batches; one `activity_span.purge`
    event per project and run, like screenshots'."""
    cutoff = (now or timezone.now()) - timedelta(days=policy.retention_days)
    old = ActivitySpan.objects.filter(project_id=policy.project_id, ended_at__lt=cutoff)
    deleted = 0
    oldest: datetime | None = None
    while True:
        batch = list(old.order_by("started_at", "pk").values_list("pk", "started_at")[:PURGE_BATCH])
        if not batch:
            break
        oldest = oldest or batch[0][1]
        # A device whose newest span this is lets go of it (on_delete SET_NULL): its next
        # heartbeat starts a new span, as after any long silence.
        ActivitySpan.objects.filter(pk__in=[pk for pk, _at in batch]).delete()
        deleted += len(batch)
    if deleted:
        record_purge("activity_span.purge", policy, deleted, cutoff, oldest)
    return deleted


def record_purge(
    action: str,
    policy: MonitoringPolicy,
    deleted: int,
    cutoff: datetime,
    oldest: datetime | None,
) -> None:
    """One event for a retention run over a project: how many, up to when, the oldest."""
    what = "screenshots" if action == "screenshot.purge" else "activity"
    record_event(
        action,
        project_id=policy.project_id,
        object_type="monitoring_policy",
        object_id=policy.pk,
        object_repr=f"{what} of {policy.project}",
        extra={
            "deleted": deleted,
            "older_than": cutoff.isoformat(),
            "oldest": oldest.isoformat() if oldest else None,
            "retention_days": policy.retention_days,
        },
    )
