"""The SIP components the end-to-end suite drives, as plain functions: finding the tools,
free ports, the reference Kamailio, SIPp, dumpcap with tshark, and the check for the number in
what the operator's side saw. The fixtures that use them are in conftest.py.
"""

from __future__ import annotations

import io
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from django.core.management import call_command
from phonenumbers import PhoneMetadata

from tests.e2e.conftest import phone_patterns

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "deploy" / "kamailio" / "kamailio.cfg"
TABLES = REPO / "deploy" / "kamailio" / "dbtext"
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
PACKAGES = "kamailio kamailio-utils-modules sip-tester tshark"
# How long one SIP exchange may take before SIPp gives up (ms), and a whole SIPp run (s).
RECV_TIMEOUT_MS = 8000
RUN_TIMEOUT_S = 20


# --- Tools ----------------------------------------------------------------------------------


def _which(name: str) -> str | None:
    """A tool on PATH or in the sbin folders (kamailio lives in /usr/sbin)."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))


def _defines(values: dict[str, str | int | None]) -> list[str]:
    """-A arguments for the config's #!define settings (strings quoted, flags bare)."""
    args: list[str] = []
    for name, value in values.items():
        if value is None:
            args += ["-A", name]
        elif isinstance(value, int):
            args += ["-A", f"{name}={value}"]
        else:
            args += ["-A", f'{name}="{value}"']
    return args


def _module_problem(kamailio: str, tmp: Path) -> str | None:
    """Check the config as Kamailio parses it: a missing module is a reason to skip (or fail
    in strict mode); any other error is a broken config and fails here and now."""
    db = tmp / "check-db"
    shutil.copytree(TABLES, db, dirs_exist_ok=True)
    cmd = [kamailio, "-c", "-f", str(CONFIG), *_defines({"DBURL": f"text://{db}"})]
    checked = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    if checked.returncode == 0:
        return None
    output = checked.stdout + checked.stderr
    missing = re.search(r"could not find module <?([a-z_0-9]+)", output) or re.search(
        r"([a-z_0-9]+\.so).*(No such file|cannot open)", output
    )
    if missing:
        return f"Kamailio module {missing.group(1)} is missing (apt-get install {PACKAGES})"
    pytest.fail(f"{CONFIG} does not pass `kamailio -c`:\n{output[-3000:]}", pytrace=False)


def sip_unavailable(tmp: Path) -> tuple[dict[str, str], str | None]:
    """The tools' paths, and why these tests cannot run here (None when they can)."""
    found = {name: _which(name) for name in ("kamailio", "sipp", "dumpcap", "tshark")}
    missing = sorted(name for name, path in found.items() if path is None)
    tools = {name: path for name, path in found.items() if path is not None}
    if missing:
        return tools, (
            f"{', '.join(missing)} not found "
            f"(apt-get install -y --no-install-recommends {PACKAGES})"
        )
    # Listing the link types opens the interface, which needs the right to capture.
    opened = subprocess.run(
        [tools["dumpcap"], "-L", "-i", "lo"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if opened.returncode != 0 or "Data link types" not in opened.stdout:
        return tools, (
            "dumpcap may not capture on lo here (run as root, or "
            "setcap cap_net_raw,cap_net_admin+eip /usr/bin/dumpcap)"
        )
    return tools, _module_problem(tools["kamailio"], tmp)


# --- Ports and processes --------------------------------------------------------------------

_handed_out: set[int] = set()


def _udp_free(port: int) -> bool:
    """Nothing is bound to the UDP port (bound without SO_REUSEADDR, as a check must be:
    Kamailio binds with it, so an old instance would still answer on a reused port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A UDP port on 127.0.0.1 that is free now, with port+2 free too (SIPp's media socket
    uses it), never handed out before in this run, and without '555' in it (the fake numbers'
    digits, which would make a port look like a leak)."""
    for _ in range(200):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port in _handed_out or port > 65000 or "555" in str(port):
            continue
        if _udp_free(port) and _udp_free(port + 2):
            _handed_out.update({port, port + 2})
            return port
    raise RuntimeError("no free UDP port on 127.0.0.1")


def no_core(cmd: list[str]) -> list[str]:
    """The command run with core dumps off (`exec` keeps the PID ours)."""
    return ["/bin/sh", "-c", 'ulimit -c 0 && exec "$@"', "sh", *cmd]


def stop(process: subprocess.Popen[Any], *, grace: float = 5.0) -> None:
    """Stop a process we started, by its PID (Kamailio's main process stops its workers);
    if it does not go within the grace time, kill its process group, which is exactly it and
    its children (it was started in a session of its own), while its PID is still ours."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(grace)


def options_ping(port: int, timeout: float = 0.3) -> bool:
    """Whether a SIP server answers an OPTIONS on 127.0.0.1:port with 200."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(timeout)
        own = sock.getsockname()[1]
        tag = secrets.token_hex(6)
        request = (
            f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{own};branch=z9hG4bK{tag}\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:probe@127.0.0.1>;tag={tag}\r\n"
            f"To: <sip:127.0.0.1:{port}>\r\n"
            f"Call-ID: {tag}@127.0.0.1\r\n"
            "CSeq: 1 OPTIONS\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.sendto(request.encode(), ("127.0.0.1", port))
        try:
            answer = sock.recv(4096)
        except OSError:
            return False
    return answer.startswith(b"SIP/2.0 200")


# --- Kamailio -------------------------------------------------------------------------------


@dataclass
class Kamailio:
    """One running instance of the reference config."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    folder: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def start_kamailio(
    tools: dict[str, str],
    folder: Path,
    *,
    resolve_url: str,
    events_url: str,
    secret: str,
    carrier_port: int,
    topos: bool = True,
    settings: dict[str, str | int | None] | None = None,
) -> Kamailio:
    """Kamailio in the foreground (-DD: the main process stays ours and forks its workers)
    on a free port, its db_text tables copied from deploy/kamailio and its subscriber table
    written by `callvault manage telephony kamailio-subscribers`; returns once it answers
    OPTIONS. `settings` are more of the config's defines. The caller stops it."""
    db = folder / "db"
    shutil.copytree(TABLES, db)
    call_command(
        "telephony", "kamailio-subscribers", "--out", str(db / "subscriber"), stdout=io.StringIO()
    )
    port = free_port()
    defines: dict[str, str | int | None] = {
        "CARRIER": f"127.0.0.1:{carrier_port}",
        "CALLVAULT_RESOLVE_URL": resolve_url,
        "CALLVAULT_EVENTS_URL": events_url,
        "CALLVAULT_PBX_SECRET": secret,
        "CALLVAULT_TIMEOUT": 3,
        "DBURL": f"text://{db}",
        "CHILDREN": 2,
    }
    if not topos:
        defines["WITHOUT_TOPOS"] = None
    defines |= settings or {}
    cmd = [
        tools["kamailio"],
        "-f",
        str(CONFIG),
        "-DD",
        "-E",
        "-w",
        str(folder),
        "-A",
        f"SIP_LISTEN=udp:127.0.0.1:{port}",  # a bare proto:address:port, not a string
        *_defines(defines),
    ]
    log = folder / "kamailio.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            no_core(cmd), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    kamailio = Kamailio(port=port, process=process, log=log, folder=folder)
    deadline = time.monotonic() + 10
    while not options_ping(port):
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"Kamailio did not come up:\n{kamailio.log_text()[-3000:]}")
    return kamailio


# --- SIPp and the capture -------------------------------------------------------------------


@dataclass
class Sipp:
    """One SIPp run: its process, its message trace and its error log."""

    name: str
    process: subprocess.Popen[bytes]
    messages: Path
    errors: Path
    screen: Path

    def wait(self, timeout: float = RUN_TIMEOUT_S + 5) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            stop(self.process)
            pytest.fail(f"SIPp {self.name} did not finish:\n{self.report()}")

    def trace(self) -> str:
        return self.messages.read_text(errors="replace") if self.messages.exists() else ""

    def received(self) -> list[str]:
        """The messages SIPp received, as text."""
        chunks = re.split(r"^-{10,}.*$", self.trace(), flags=re.M)
        return [c.split("\n\n", 1)[1] for c in chunks if "message received" in c and "\n\n" in c]

    def report(self) -> str:
        """What to show when it went wrong: its errors and the end of its screen."""
        parts = []
        for path in (self.errors, self.screen):
            if path.exists():
                parts.append(f"--- {path.name}\n{path.read_text(errors='replace')[-2500:]}")
        return "\n".join(parts)


def start_sipp(
    tools: dict[str, str],
    folder: Path,
    name: str,
    scenario: Path,
    *,
    port: int,
    args: list[str],
    patience_ms: int = RECV_TIMEOUT_MS,
) -> Sipp:
    """SIPp on 127.0.0.1:port for one call, tracing every message it sends and receives."""
    media = free_port()
    messages, errors, screen = (folder / f"{name}.{kind}" for kind in ("msg", "err", "screen"))
    cmd = [
        tools["sipp"],
        "-sf",
        str(scenario),
        "-i",
        "127.0.0.1",
        "-p",
        str(port),
        "-mp",
        str(media),
        "-m",
        "1",
        "-nostdin",
        "-trace_msg",
        "-message_file",
        str(messages),
        "-trace_err",
        "-error_file",
        str(errors),
        "-recv_timeout",
        str(patience_ms),
        "-timeout",
        str(RUN_TIMEOUT_S),
        "-timeout_error",
        *args,
    ]
    with screen.open("wb") as out:
        process = subprocess.Popen(
            no_core(cmd), stdout=out, stderr=subprocess.STDOUT, cwd=folder, start_new_session=True
        )
    return Sipp(name=name, process=process, messages=messages, errors=errors, screen=screen)


@dataclass
class Capture:
    """dumpcap on lo, filtered to one UDP port."""

    process: subprocess.Popen[bytes]
    file: Path
    port: int
    tshark: str

    def stop(self) -> list[str]:
        """End the capture once everything sent so far is in the file; every UDP payload it
        holds but the sentinel, as text. libpcap hands packets over in blocks, so a capture
        stopped right after a short exchange can come out empty or cut short. A sentinel
        datagram sent last, once it is in the file, shows that everything before it is too."""
        sentinel = f"capture-sentinel-{secrets.token_hex(8)}".encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.sendto(sentinel, ("127.0.0.1", self.port))
        deadline = time.monotonic() + 5
        while sentinel not in self.file.read_bytes():
            if self.process.poll() is not None or time.monotonic() > deadline:
                stop(self.process)
                pytest.fail(f"dumpcap never wrote the sentinel to {self.file}")
            time.sleep(0.02)
        stop(self.process)
        fields = subprocess.run(
            [self.tshark, "-r", str(self.file), "-T", "fields", "-e", "udp.payload"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        payloads = []
        for line in fields.stdout.split():
            for chunk in line.split(","):
                payloads.append(bytes.fromhex(chunk).decode("latin-1"))
        assert sentinel.decode() in payloads, "tshark did not read the whole capture"
        return [payload for payload in payloads if payload != sentinel.decode()]


def start_capture(tools: dict[str, str], folder: Path, port: int) -> Capture:
    """dumpcap writing a pcapng of `udp port N` on lo; returns once it has opened the
    interface (packets from then on are captured, if handed over late)."""
    file = folder / f"port-{port}.pcapng"
    said = folder / f"dumpcap-{port}.err"
    with said.open("wb") as err:
        process = subprocess.Popen(
            no_core([tools["dumpcap"], "-i", "lo", "-f", f"udp port {port}", "-w", str(file)]),
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
    deadline = time.monotonic() + 10
    while b"File:" not in said.read_bytes():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            pytest.fail(f"dumpcap did not start capturing: {said.read_text(errors='replace')}")
        time.sleep(0.02)
    return Capture(process=process, file=file, port=port, tshark=tools["tshark"])


# --- Finding the number ---------------------------------------------------------------------


def number_forms(e164: str) -> list[str]:
    """The number as E.164, without '+', in the national form with its trunk prefix (8 for
    Russia, 1 for the fake North American numbers) and as its last 8 digits."""
    parsed = phonenumbers.parse(e164)
    nsn = phonenumbers.national_significant_number(parsed)
    region = phonenumbers.region_code_for_number(parsed)
    metadata = PhoneMetadata.metadata_for_region(region) if region else None
    trunk = (metadata.national_prefix if metadata else None) or ""
    return [e164, e164.lstrip("+"), trunk + nsn, nsn[-8:]]


def leaks(e164: str, text: str) -> list[str]:
    """Where the number appears in the text, in any of its forms, or in the written forms
    the browser tests look for (spaced, dashed, bracketed): 'form: ...context...' per hit."""
    hits = []
    patterns = [re.compile(re.escape(form)) for form in number_forms(e164)]
    for pattern in [*patterns, *phone_patterns(e164)]:
        for match in pattern.finditer(text):
            start = max(match.start() - 60, 0)
            hits.append(f"{pattern.pattern}: {text[start : match.end() + 20]!r}")
    return hits
