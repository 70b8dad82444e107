"""Screenshots: random moments within each interval, and scaling, blur and encoding per policy."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image, ImageStat

from callvault_agent.capture import plan_interval, process, scaled_size
from callvault_agent.policy import Policy, parse_policy
from test_policy import CONTRACT_EXAMPLE


def test_plan_interval_takes_k_in_bounds_at_moments_inside_the_interval() -> None:
    rng = random.Random(11)
    counts = set()
    for i in range(500):
        start = 1000.0 + 600 * i
        moments = plan_interval(start, 600, 1, 3, rng)
        counts.add(len(moments))
        assert 1 <= len(moments) <= 3
        assert moments == sorted(moments)
        assert all(start <= m < start + 600 for m in moments)
    assert counts == {1, 2, 3}


def test_plan_interval_offsets_are_spread_uniformly() -> None:
    rng = random.Random(5)
    offsets = [m for _ in range(2000) for m in plan_interval(0.0, 600, 1, 1, rng)]
    quarters = [sum(1 for o in offsets if q * 150 <= o < (q + 1) * 150) for q in range(4)]
    assert all(400 <= q <= 600 for q in quarters), quarters  # 500 each, expected


def test_zero_screenshots_plans_none() -> None:
    assert plan_interval(0.0, 600, 0, 0, random.Random(1)) == []


def picture() -> Image.Image:
    """Left half white, right half black: a sharp edge to see the blur on."""
    image = Image.new("RGB", (400, 300), "black")
    image.paste((255, 255, 255), (0, 0, 200, 300))
    return image


def policy(**changes: object) -> Policy:
    return parse_policy({**CONTRACT_EXAMPLE, **changes})


def red(image: Image.Image, xy: tuple[int, int]) -> int:
    pixel = image.convert("RGB").getpixel(xy)
    assert isinstance(pixel, tuple)
    return int(pixel[0])


@pytest.mark.parametrize(("fmt", "mime"), [("webp", "image/webp"), ("jpeg", "image/jpeg")])
def test_it_scales_and_encodes_in_the_policys_format(fmt: str, mime: str) -> None:
    shot = process(picture(), policy(screenshot_format=fmt, screenshot_scale=0.5))
    assert shot.mime == mime
    decoded = Image.open(io.BytesIO(shot.image))
    assert decoded.format == fmt.upper()
    assert decoded.size == (shot.width, shot.height) == (200, 150)
    assert red(decoded, (20, 75)) > 240
    assert red(decoded, (180, 75)) < 15


def test_blur_softens_the_edge() -> None:
    sharp = Image.open(io.BytesIO(process(picture(), policy(screenshot_blur=0)).image))
    soft = Image.open(io.BytesIO(process(picture(), policy(screenshot_blur=8)).image))
    band = (90, 0, 110, 150)  # around the edge at x = 100

    def spread(image: Image.Image) -> float:
        return float(ImageStat.Stat(image.convert("L").crop(band)).stddev[0])

    assert spread(soft) < spread(sharp) * 0.8
    # and the middle of each half keeps its colour
    assert red(soft, (20, 75)) > 230


def test_an_image_over_the_limit_gets_smaller_until_it_fits() -> None:
    rng = random.Random(2)
    noise = Image.frombytes("RGB", (600, 400), bytes(rng.getrandbits(8) for _ in range(720000)))
    big = process(noise, policy(screenshot_quality=90, max_screenshot_bytes=10**9))
    limit = len(big.image) // 4
    small = process(noise, policy(screenshot_quality=90, max_screenshot_bytes=limit))
    assert len(small.image) <= limit
    assert Image.open(io.BytesIO(small.image)).size == (small.width, small.height)


def test_scaled_size_rounds_and_never_reaches_zero() -> None:
    assert scaled_size(1024, 768, 0.5) == (512, 384)
    assert scaled_size(1366, 768, 0.3) == (410, 230)
    assert scaled_size(3, 3, 0.05) == (1, 1)
