"""The `callvault-agent` command: enroll, run, status, forget."""

from __future__ import annotations

import argparse
import getpass
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import IO

from callvault_agent import __version__
from callvault_agent.api import Client, Unreachable, check_server_url
from callvault_agent.config import Enrolment, Store, state_dir
from callvault_agent.notice import Notifier, describe
from callvault_agent.platforms import PlatformError, detect, platform_name
from callvault_agent.policy import PolicyError, parse_policy
from callvault_agent.queue import Outbox
from callvault_agent.runner import Agent, Options, Revoked, load_policy, save_policy

log = logging.getLogger("callvault_agent")

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REVOKED = 3
REVOKED_MESSAGE = (
    "callvault-agent: the server refused this device ({detail}): it was revoked or its token is "
    "no longer valid. Monitoring has STOPPED. Ask your administrator for a new enrolment code "
    "and run `callvault-agent enroll` again."
)


def queue_path() -> Path:
    return state_dir() / "queue.sqlite3"


def policy_path() -> Path:
    return state_dir() / "policy.json"


def enroll(args: argparse.Namespace) -> int:
    """Exchange a one-time code for a device token and the project's policy."""
    try:
        server = check_server_url(args.server, allow_http=args.allow_http)
    except ValueError as exc:
        print(f"callvault-agent: {exc}", file=sys.stderr)
        return EXIT_USAGE
    code = args.code or getpass.getpass("Enrolment code: ").strip()
    client = Client(server, cafile=args.ca_file)
    try:
        reply = client.enrol(code, args.hostname or socket.gethostname(), platform_name())
    except Unreachable as exc:
        print(f"callvault-agent: cannot reach {server}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    body = reply.body if isinstance(reply.body, dict) else {}
    if reply.is_redirect:
        print(
            f"callvault-agent: {server} answers with a redirect ({reply.detail()}): enrol with "
            "the server's own address (redirects are never followed: the token would go along)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if reply.status != 201 or not isinstance(body.get("token"), str):
        print(
            f"callvault-agent: enrolment refused ({reply.status}): {reply.detail()}",
            file=sys.stderr,
        )
        return EXIT_USAGE if 400 <= reply.status < 500 else EXIT_FAILED
    store = Store()
    enrolment = store.save(
        Enrolment(
            server=server,
            device_id=int(body["device_id"]),
            token=body["token"],
            cafile=args.ca_file,
        )
    )
    # A new device starts a new sequence; what an earlier enrolment queued is not this one's.
    for path in (queue_path(), policy_path()):
        path.unlink(missing_ok=True)
    where = {
        "keyring": "the OS key store",
        "dpapi": f"{store.sealed_token_path} (encrypted with DPAPI)",
    }.get(enrolment.kept_in, f"{store.token_path} (0600)")
    print(f"Enrolled as device {enrolment.device_id} at {server}; the token is in {where}.")
    try:
        policy = parse_policy(body.get("policy"))
        save_policy(policy_path(), body.get("policy"))
        print("\n".join(describe(policy, server)))
    except PolicyError as exc:
        print(f"(the policy came with a problem: {exc}; `run` reads it again)")
    print("Start monitoring with: callvault-agent run")
    return 0


@contextmanager
def single_instance(path: Path) -> Iterator[bool]:
    """Holds a lock file while the agent runs: True when this is the only running agent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle: IO[bytes] = path.open("a+b")
    try:
        try:
            if sys.platform == "win32":
                import msvcrt

                msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
            else:
                import fcntl

                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        handle.close()


def run(args: argparse.Namespace) -> int:
    """Monitor until stopped (Ctrl+C, SIGTERM) or revoked."""
    enrolment = Store().load()
    if enrolment is None:
        print(
            "callvault-agent: this PC is not enrolled: "
            "run `callvault-agent enroll --server URL --code CODE` first",
            file=sys.stderr,
        )
        return EXIT_USAGE
    with single_instance(state_dir() / "agent.lock") as alone:
        if not alone:
            print(
                "callvault-agent: another agent is already running for this user", file=sys.stderr
            )
            return EXIT_FAILED
        try:
            platform = detect()
        except PlatformError as exc:
            print(f"callvault-agent: {exc}", file=sys.stderr)
            return EXIT_FAILED
        outbox = Outbox(queue_path())
        stop = threading.Event()

        def on_signal(signum: int, frame: FrameType | None) -> None:
            stop.set()

        signal.signal(signal.SIGINT, on_signal)
        signal.signal(signal.SIGTERM, on_signal)
        client = Client(enrolment.server, enrolment.token, cafile=enrolment.cafile)
        policy = load_policy(policy_path())
        if policy is None:
            print(
                "callvault-agent: waiting for the server's policy: nothing is collected until then"
            )
        notifier = Notifier(every_seconds=args.notice_minutes * 60)
        agent = Agent(
            client,
            outbox,
            platform,
            policy=policy,
            policy_cache=policy_path(),
            notifier=notifier,
            options=Options(backoff_cap=args.max_backoff),
        )
        try:
            agent.run(stop)
        except Revoked as exc:
            print(REVOKED_MESSAGE.format(detail=exc), file=sys.stderr, flush=True)
            return EXIT_REVOKED
        finally:
            notifier.close()
            outbox.close()
            platform.close()
        print("callvault-agent: stopped; monitoring is off.", flush=True)
        return 0


def status(args: argparse.Namespace) -> int:
    """Enrolment, queue and what the desktop reports now; the token is never shown."""
    store = Store()
    enrolment = store.load()
    if enrolment is None:
        print("not enrolled")
    else:
        where = {
            "keyring": "OS key store",
            "dpapi": f"{store.sealed_token_path} (DPAPI)",
        }.get(enrolment.kept_in, str(store.token_path))
        print(f"enrolled: device {enrolment.device_id} at {enrolment.server} (token: {where})")
    if queue_path().exists():
        outbox = Outbox(queue_path())
        try:
            print(
                f"queued: {outbox.heartbeat_count()} heartbeat(s), "
                f"{outbox.screenshot_count()} screenshot(s) ({outbox.screenshot_bytes()} bytes)"
            )
        finally:
            outbox.close()
    policy = load_policy(policy_path())
    print(f"policy: version {policy.version}" if policy else "policy: none yet")
    try:
        platform = detect()
    except PlatformError as exc:
        print(f"desktop: {exc}")
        return 0
    try:
        window = platform.foreground()
        print(
            f"desktop ({platform.name}): idle {platform.idle_seconds():.0f} s, "
            f"locked {'yes' if platform.locked() else 'no'}, "
            f"in front: {window.app if window else None!r} {window.title if window else None!r}"
        )
    finally:
        platform.close()
    return 0


def forget(args: argparse.Namespace) -> int:
    """Remove the token, the enrolment, the queue and the cached policy from this PC."""
    removed = Store().forget()
    for path in (queue_path(), policy_path()):
        if path.exists():
            path.unlink()
            removed.append(str(path))
    if removed:
        print("removed:\n  " + "\n  ".join(removed))
        print("The server still lists this device until an administrator revokes it.")
    else:
        print("nothing to remove: this PC is not enrolled")
    return 0


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        prog="callvault-agent",
        description="Reports this PC's activity and screenshots to callvault, openly.",
    )
    main_parser.add_argument(
        "--version", action="version", version=f"callvault-agent {__version__}"
    )
    main_parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = main_parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("enroll", help="enrol this PC with a one-time code from an administrator")
    p.add_argument("--server", required=True, help="the callvault URL, e.g. https://crm.example")
    p.add_argument("--code", help="the enrolment code (asked for when left out)")
    p.add_argument("--hostname", help="the name this PC is listed under (default: its hostname)")
    p.add_argument("--ca-file", help="a CA certificate file for a server with a private CA")
    p.add_argument(
        "--allow-http", action="store_true", help="allow plain http to another machine (unsafe)"
    )
    p.set_defaults(handler=enroll)

    p = sub.add_parser("run", help="monitor until stopped")
    p.add_argument(
        "--notice-minutes", type=float, default=30, help="repeat the notice this often (30)"
    )
    p.add_argument(
        "--max-backoff", type=float, default=120, help="longest wait between retries, s (120)"
    )
    p.set_defaults(handler=run)

    p = sub.add_parser("status", help="show the enrolment, the queue and the desktop's state")
    p.set_defaults(handler=status)
    p = sub.add_parser("forget", help="remove the token, the queue and the settings from this PC")
    p.set_defaults(handler=forget)
    return main_parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    level = logging.DEBUG if args.verbose else logging.INFO
    if os.environ.get("CALLVAULT_AGENT_LOG"):
        level = getattr(logging, os.environ["CALLVAULT_AGENT_LOG"].upper(), level)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return int(args.handler(args))
