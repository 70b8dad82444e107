"""Real components for the agent's tests and benchmark: an Xvfb display with something drawn
on it, and a callvault server run as a subprocess from the repository's virtual environment.

Also loaded by benchmarks/agent_footprint.py (by path), so it imports nothing from pytest.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# Solid colours the e2e test looks for in screenshots.
ROOT_COLOUR = (0x33, 0x66, 0xCC)
WINDOW_COLOUR = (0x00, 0xFF, 0x00)
WINDOW_TITLE = "callvault e2e window 4242"
WINDOW_GEOMETRY = (100, 100)  # top-left corner, in screen pixels
SCREEN = (1024, 768)
# Debian packages that provide what the X tests run.
X_PACKAGES = "xvfb xdotool x11-xserver-utils xterm openbox"
X_TOOLS = ("Xvfb", "xdotool", "xsetroot", "xterm", "openbox")


def strict() -> bool:
    """CI sets CALLVAULT_E2E_STRICT=1: a missing X server or tool is then a failure."""
    return os.environ.get("CALLVAULT_E2E_STRICT", "") == "1"


def missing_x_tools() -> list[str]:
    return [tool for tool in X_TOOLS if shutil.which(tool) is None]


def callvault_command() -> str | None:
    """The `callvault` console script beside this Python, or on PATH."""
    beside = BIN / "callvault"
    if beside.exists():
        return str(beside)
    return shutil.which("callvault")


def agent_command() -> list[str]:
    """The agent as a subprocess: the installed console script, else `python -m`."""
    beside = BIN / "callvault-agent"
    return [str(beside)] if beside.exists() else [sys.executable, "-m", "callvault_agent"]


def hex_colour(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `check()` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10) -> None:
    """SIGTERM, then SIGKILL; only the process we started."""
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


@dataclass
class Desktop:
    """A running Xvfb with a window manager, a solid root colour and one titled window."""

    display: str
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("WAYLAND_DISPLAY",)}
        env["DISPLAY"] = self.display
        env.pop("XDG_SESSION_ID", None)  # not the developer's logind session
        return env

    def run(self, *args: str) -> None:
        subprocess.run(args, env=self.env, check=True, timeout=20, capture_output=True)

    def idle_reset(self) -> None:
        """Real input through XTEST: a mouse move (xdotool)."""
        self.run("xdotool", "mousemove", "--sync", "500", "400")
        self.run("xdotool", "mousemove_relative", "--", "3", "3")


@contextmanager
def desktop(screen: tuple[int, int] = SCREEN) -> Iterator[Desktop]:
    """Xvfb on a display it picks itself (-displayfd), openbox (EWMH), the drawing."""
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(
        [
            "Xvfb",
            "-displayfd",
            str(write_fd),
            "-screen",
            "0",
            f"{screen[0]}x{screen[1]}x24",
            "-nolisten",
            "tcp",
            "-s",
            "0",  # the server's own screen saver off: it would count as "locked"
        ],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    procs: list[subprocess.Popen[Any]] = [xvfb]
    try:
        with os.fdopen(read_fd) as pipe:
            number = pipe.readline().strip()
        if not number:
            raise RuntimeError("Xvfb did not start")
        desk = Desktop(display=f":{number}", procs=procs)
        wm = subprocess.Popen(
            ["openbox", "--sm-disable"],
            env=desk.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        desk.procs.append(wm)
        time.sleep(1.0)  # openbox paints the root once at start: draw after it
        desk.run("xsetroot", "-solid", hex_colour(ROOT_COLOUR))
        term = subprocess.Popen(
            [
                "xterm",
                "-T",
                WINDOW_TITLE,
                "-bg",
                hex_colour(WINDOW_COLOUR),
                "-fg",
                hex_colour(WINDOW_COLOUR),
                "-geometry",
                f"60x20+{WINDOW_GEOMETRY[0]}+{WINDOW_GEOMETRY[1]}",
                "-e",
                "sleep",
                "100000",
            ],
            env=desk.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        desk.procs.append(term)

        def window_in_front() -> bool:
            out = subprocess.run(
                ["xdotool", "getactivewindow", "getwindowname"],
                env=desk.env,
                capture_output=True,
                text=True,
                check=False,
            )
            return out.stdout.strip() == WINDOW_TITLE

        wait_for(window_in_front, 20, "the xterm window to be in front")
        yield desk
    finally:
        for proc in reversed(procs):
            stop_process(proc)


@dataclass
class Server:
    """A callvault server process with its own data folder; `start()`/`stop()` may repeat."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    project: str = "agente2e"
    username: str = "agentop"
    proc: subprocess.Popen[Any] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        for key in list(env):
            if key.startswith(("CALLVAULT_", "DJANGO_")):
                del env[key]
        env.update(
            CALLVAULT_DEBUG="1",
            CALLVAULT_DATA_DIR=str(self.data_dir),
            PYTHONUNBUFFERED="1",
        )
        # SQLite in the data folder, unless a (fresh, empty) database is named for the server.
        if os.environ.get("CALLVAULT_AGENT_E2E_DATABASE_URL"):
            env["CALLVAULT_DATABASE_URL"] = os.environ["CALLVAULT_AGENT_E2E_DATABASE_URL"]
        return env

    def command(self, *args: str, timeout: float = 180) -> str:
        """`callvault ARGS...`; returns stdout, fails with the output."""
        exe = callvault_command()
        assert exe, "the callvault command is not installed in this environment"
        proc = subprocess.run(
            [exe, *args],
            env=self.env,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"callvault {' '.join(args[:3])} failed ({proc.returncode}):\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
        return proc.stdout

    def manage(self, *args: str) -> str:
        return self.command("manage", *args)

    def setup(self) -> None:
        """Database, a project with its owner, and the member the agent is enrolled for."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.command("migrate")
        self.command(*self.createowner_args())

    def createowner_args(self) -> list[str]:
        return [
            "createowner",
            "--project",
            f"Agent e2e {self.project}",
            "--slug",
            self.project,
            "--username",
            self.username,
        ]

    def enrolment_code(self) -> str:
        out = self.manage(
            "monitoring",
            "enrolment-code",
            "--project",
            self.project,
            "--username",
            self.username,
        )
        return out.strip().splitlines()[-1].strip()

    def set_policy(self, **values: Any) -> None:
        """`callvault manage monitoring set-policy`; [min, max] for screenshots_per_interval."""
        pairs = [f"{k}={_policy_value(v)}" for k, v in values.items()]
        self.manage("monitoring", "set-policy", "--project", self.project, *pairs)

    def spans(self, date: str) -> list[dict[str, Any]]:
        """The member's spans of one UTC day."""
        out = self.manage(
            "monitoring",
            "spans",
            "--project",
            self.project,
            "--username",
            self.username,
            "--date",
            date,
            "--zone",
            "UTC",  # the day is the project's (Moscow) unless told; the tests count UTC days
        )
        return [json.loads(line) for line in out.splitlines() if line.strip().startswith("{")]

    def latest_screenshot(self, out: Path) -> dict[str, Any]:
        text = self.manage(
            "monitoring",
            "screenshot",
            "--latest",
            "--project",
            self.project,
            "--username",
            self.username,
            "--out",
            str(out),
        )
        return dict(json.loads(text.strip().splitlines()[-1]))

    def start(self) -> None:
        exe = callvault_command()
        assert exe, "the callvault command is not installed in this environment"
        self.log_path = self.data_dir / "server.log"
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [exe, "serve", "--bind", f"127.0.0.1:{self.port}", "--workers", "1"],
            env=self.env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_for(self.answers, 60, f"callvault to answer on {self.url}", interval=0.3)

    def answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"callvault serve exited:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(self.url + "/accounts/login/", timeout=2):  # noqa: S310
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, timeout=20)
            self.proc = None

    def log_tail(self, chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]


def _policy_value(value: Any) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list) and all(isinstance(v, int) for v in value):
        return ",".join(str(v) for v in value)  # screenshots_per_interval=MIN,MAX
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


@dataclass
class AgentProcess:
    """`callvault-agent run` as a subprocess with its own config and state folders."""

    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[Any] | None = None

    def __post_init__(self) -> None:
        self.env = {
            **self.env,
            "CALLVAULT_AGENT_CONFIG_DIR": str(self.home / "config"),
            "CALLVAULT_AGENT_STATE_DIR": str(self.home / "state"),
            "CALLVAULT_AGENT_NO_KEYRING": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.log_path = self.home / "agent.log"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*agent_command(), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def start(self, *args: str) -> subprocess.Popen[Any]:
        self.home.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [*agent_command(), "run", *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        return self.proc

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        stop_process(self.proc)
        code = self.proc.returncode
        self.proc = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
