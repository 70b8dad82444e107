"""The agent's footprint on an operator's PC: CPU and memory of `callvault-agent run` against a
live callvault server, on a virtual X screen (Xvfb), over a run of --seconds.

    .venv/bin/python benchmarks/agent_footprint.py                      # 600 s, realistic
    .venv/bin/python benchmarks/agent_footprint.py --preset fast --seconds 120

The agent process's CPU time (utime + stime) and resident memory (VmRSS, VmHWM) come from
/proc every second. Targets (issue 7): under 1% of one core on average, under 80 MB resident.
Needs Debian's xvfb, xdotool, x11-xserver-utils, xterm and openbox (as the agent's e2e test).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CPU_TARGET = 1.0  # % of one core
RSS_TARGET = 80.0  # MB
PRESETS: dict[str, dict[str, Any]] = {
    # What a project would set: a heartbeat every 5 s, 1-3 screenshots per 10 minutes.
    "realistic": {
        "heartbeat_seconds": 5,
        "idle_seconds": 120,
        "screenshots_per_interval": [1, 3],
        "screenshot_interval_seconds": 600,
        "screenshot_scale": 0.5,
        "screenshot_format": "webp",
        "screenshot_quality": 60,
    },
    # The most the server allows: a heartbeat every 2 s, 20 screenshots a minute.
    "fast": {
        "heartbeat_seconds": 2,
        "idle_seconds": 30,
        "screenshots_per_interval": [20, 20],
        "screenshot_interval_seconds": 60,
        "screenshot_scale": 0.5,
        "screenshot_format": "webp",
        "screenshot_quality": 60,
    },
}


def load_harness() -> ModuleType:
    """The agent tests' harness (Xvfb, server, agent processes), loaded by path."""
    path = REPO / "agent" / "tests" / "harness.py"
    spec = importlib.util.spec_from_file_location("agent_harness", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["agent_harness"] = module
    spec.loader.exec_module(module)
    return module


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) in MB: resident now, and the peak so far."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) / 1024
    return values["VmRSS"], values["VmHWM"]


def measure(pid: int, seconds: float, warmup: float) -> dict[str, float]:
    """Sample once a second; CPU % over the run after the warm-up, and over the whole run."""
    start_wall, start_cpu = time.monotonic(), cpu_seconds(pid)
    warm_wall = warm_cpu = None
    max_rss = 0.0
    while (elapsed := time.monotonic() - start_wall) < seconds:
        time.sleep(1.0)
        rss, _peak = memory_mb(pid)
        max_rss = max(max_rss, rss)
        if warm_wall is None and elapsed >= warmup:
            warm_wall, warm_cpu = time.monotonic(), cpu_seconds(pid)
    end_wall, end_cpu = time.monotonic(), cpu_seconds(pid)
    _rss, peak = memory_mb(pid)
    assert warm_wall is not None and warm_cpu is not None
    return {
        "seconds": end_wall - start_wall,
        "cpu_percent": 100 * (end_cpu - start_cpu) / (end_wall - start_wall),
        "steady_cpu_percent": 100 * (end_cpu - warm_cpu) / (end_wall - warm_wall),
        "cpu_seconds": end_cpu - start_cpu,
        "max_rss_mb": max_rss,
        "peak_rss_mb": peak,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=600, help="length of the run (600)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="realistic")
    parser.add_argument("--screen", default="1920x1080", help="the virtual screen (1920x1080)")
    parser.add_argument("--warmup", type=float, default=10, help="start-up left out (10 s)")
    args = parser.parse_args(argv)
    harness = load_harness()
    missing = harness.missing_x_tools()
    if missing or harness.callvault_command() is None:
        print(f"cannot run: missing {missing or ['the callvault command']}", file=sys.stderr)
        return 2
    width, height = (int(n) for n in args.screen.split("x"))
    policy = PRESETS[args.preset]
    with tempfile.TemporaryDirectory(prefix="agent-footprint-") as tmp:
        server = harness.Server(data_dir=Path(tmp) / "server")
        server.setup()
        server.set_policy(**policy, window_titles=True, redact_patterns=r"\d{6,}")
        server.start()
        try:
            with harness.desktop((width, height)) as desk:
                agent = harness.AgentProcess(home=Path(tmp) / "agent", env=desk.env)
                done = agent.cli(
                    "enroll", "--server", server.url, "--code", server.enrolment_code()
                )
                if done.returncode != 0:
                    raise RuntimeError(done.stdout + done.stderr)
                desk.idle_reset()
                proc = agent.start()
                try:
                    figures = measure(proc.pid, args.seconds, args.warmup)
                finally:
                    agent.stop()
                status = agent.cli("status").stdout
                warnings = [line for line in agent.log().splitlines() if " WARNING " in line]
                shots = stored_screenshots(server, Path(tmp) / "latest.img")
        finally:
            server.stop()
    print(f"agent footprint: preset {args.preset} ({policy}), screen {args.screen}")
    print(f"  run: {figures['seconds']:.0f} s, agent CPU time {figures['cpu_seconds']:.2f} s")
    cpu, steady = figures["cpu_percent"], figures["steady_cpu_percent"]
    rss = max(figures["max_rss_mb"], figures["peak_rss_mb"])
    print(
        f"  CPU: {cpu:.2f}% of one core on average ({steady:.2f}% after {args.warmup:.0f} s): "
        f"target < {CPU_TARGET}%: {'met' if cpu < CPU_TARGET else 'NOT met'}"
    )
    print(
        f"  memory: max RSS {rss:.1f} MB: target < {RSS_TARGET:.0f} MB: "
        f"{'met' if rss < RSS_TARGET else 'NOT met'}"
    )
    print(f"  delivered: {shots} screenshot(s); at the end {status.splitlines()[1]}")
    if warnings:
        print(f"  the agent warned {len(warnings)} time(s), last: {warnings[-1]}")
    return 0


def stored_screenshots(server: Any, out: Path) -> int:
    """How many screenshots the fresh server stored: the newest one's id."""
    try:
        return int(server.latest_screenshot(out)["id"])
    except RuntimeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
