"""Screenshots: when to take them (random moments in each interval) and how (mss grab, then
Pillow scale, optional blur, WebP or JPEG within the server's size limit)."""

from __future__ import annotations

import io
import random
from dataclasses import dataclass

from PIL import Image, ImageFilter

from callvault_agent.policy import Policy

MIME = {"webp": "image/webp", "jpeg": "image/jpeg"}
LOWEST_QUALITY = 20


@dataclass(frozen=True)
class Shot:
    """An encoded screenshot ready to queue."""

    image: bytes
    mime: str
    width: int
    height: int


def plan_interval(
    start: float, interval: float, low: int, high: int, rng: random.Random
) -> list[float]:
    """k in [low, high] moments at uniformly random offsets in [start, start + interval), sorted.

    Random rather than regular, so nobody can time what the screen shows to the schedule.
    """
    count = rng.randint(low, high) if high > 0 else 0
    return sorted(start + rng.uniform(0, interval) for _ in range(count))


def grab_screen() -> Image.Image:
    """The whole virtual screen (every monitor) as an RGB image."""
    import mss

    with mss.MSS() as screen:
        raw = screen.grab(screen.monitors[0])
    # Decoded after the grabber is closed (its shared-memory segment freed) and from the raw
    # buffer itself (`.bgra` would copy it): at 1920x1080 each copy is 8 MB of peak memory.
    return Image.frombytes("RGB", raw.size, raw.raw, "raw", "BGRX")


def scaled_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The size after scaling, never below one pixel."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def process(image: Image.Image, policy: Policy) -> Shot:
    """Scale, blur and encode per policy. When the result is over the server's limit, lower
    the quality, then the size, until it fits (the server would refuse it for good)."""
    scale = policy.screenshot_scale
    quality = policy.screenshot_quality
    while True:
        size = scaled_size(image.width, image.height, scale)
        shot = (
            image
            if size == image.size
            else image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        )
        if policy.screenshot_blur > 0:
            shot = shot.filter(ImageFilter.GaussianBlur(policy.screenshot_blur))
        data = encode(shot, policy.screenshot_format, quality)
        if len(data) <= policy.max_screenshot_bytes or size == (1, 1):
            return Shot(data, MIME[policy.screenshot_format], shot.width, shot.height)
        if quality > LOWEST_QUALITY:
            quality = max(LOWEST_QUALITY, quality - 20)
        else:
            scale *= 0.7


def encode(image: Image.Image, fmt: str, quality: int) -> bytes:
    out = io.BytesIO()
    if fmt == "webp":
        image.save(out, "WEBP", quality=quality, method=4)
    else:
        image.save(out, "JPEG", quality=quality, optimize=True)
    return out.getvalue()


def take(policy: Policy) -> Shot:
    """Grab the screen and process it per policy."""
    return process(grab_screen(), policy)
