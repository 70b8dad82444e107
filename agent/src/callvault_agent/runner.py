"""The run loop: heartbeats, screenshots at planned moments, the policy kept fresh, the outbox
sent oldest first with back-off. One thread; it sleeps until the next thing is due."""

from __future__ import annotations

import json
import logging
import random
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from callvault_agent import capture
from callvault_agent.api import Client, Reply, Unreachable
from callvault_agent.notice import Notifier
from callvault_agent.platforms import Platform
from callvault_agent.policy import Policy, PolicyError, parse_policy
from callvault_agent.queue import Backoff, Heartbeat, Outbox
from callvault_agent.redact import Redactor
from callvault_agent.timekeeping import TimeKeeper, steady_clock

log = logging.getLogger(__name__)

BATCH = 500  # the server's limit per heartbeat request
# Statuses that say "not now" rather than "never": the item is kept and sent again later.
# 403: this address is outside the project's allowed networks (it may move back in);
# 404/405: the server is not (yet) the one that knows this endpoint (a proxy, an old version).
RETRY_LATER = frozenset({403, 404, 405, 408, 409, 425, 429})
_INDEX = re.compile(r"heartbeats\[(\d+)\]")
_FUTURE_AT = re.compile(r"heartbeats\[(\d+)\]\.at")
# How often one item's time is moved for a server that finds it in its future (a PC clock
# that was ahead when it was stamped) before it is given up: the first move normally does it.
MAX_RETIMES = 3
# A screenshot moment missed by more than this (the PC slept) is skipped, and an interval
# overdue by more starts afresh, so missed moments are not all taken at once on waking.
LATE_SECONDS = 60.0


class Revoked(Exception):
    """The server no longer knows this device's token (401): the agent must stop."""


@dataclass
class Options:
    """Knobs of the loop (the policy sets everything the project decides)."""

    notice_seconds: float = 1800.0
    policy_refresh_seconds: float = 600.0
    backoff_base: float = 2.0
    backoff_cap: float = 120.0
    max_queue_bytes: int = 200 * 1024 * 1024
    max_batches_per_step: int = 20
    max_screenshots_per_step: int = 5


def utc_iso(moment: datetime) -> str:
    """2026-11-29T09:00:05.120Z"""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_utc(value: Any) -> datetime | None:
    """An ISO 8601 moment as the agent writes them (2026-11-29T09:00:05.120Z), else None."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def future_field(body: Any) -> str | None:
    """The field an error answer refuses as "in the future" (this PC's clock was ahead of the
    server's): from its `errors` map, else from its detail ("heartbeats[3].at: in the
    future: check the PC's clock")."""
    if not isinstance(body, dict):
        return None
    errors = body.get("errors")
    if isinstance(errors, dict):
        for name, message in errors.items():
            if "in the future" in str(message):
                return str(name)
    detail = body.get("detail")
    for part in detail.split("; ") if isinstance(detail, str) else []:
        name, sep, message = part.partition(": ")
        if sep and "in the future" in message:
            return name.strip()
    return None


def _count(body: Any, key: str) -> int | None:
    """A whole number >= 0 under `key` of a JSON object, else None."""
    value = body.get(key) if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return None
    return value


def _is_taken(body: Any) -> bool:
    """The server's answer to heartbeats: {"accepted": 20, "last_seq": 120}."""
    return _count(body, "accepted") is not None and _count(body, "last_seq") is not None


def _is_stored(body: Any) -> bool:
    """The server's answer to a screenshot: {"id": 77}."""
    return _count(body, "id") is not None


def _is_policy(body: Any) -> bool:
    version = body.get("version") if isinstance(body, dict) else None
    return isinstance(version, int) and not isinstance(version, bool)


def _is_error(reply: Reply) -> bool:
    """An error in the server's form: a JSON object with its `detail`."""
    body = reply.body
    return reply.status >= 400 and isinstance(body, dict) and isinstance(body.get("detail"), str)


def _not_ours(reply: Reply) -> str:
    kind = reply.headers.get("Content-Type") or "no type"
    return (
        f"an answer that is not callvault's came back (HTTP {reply.status}, {kind[:60]}: "
        "a proxy, portal or maintenance page?)"
    )


def bad_heartbeat_index(body: Any) -> int | None:
    """Which item of a batch the server refused: from `heartbeats[3].state` in the detail, or
    from a validation error's location list (["body", "heartbeats", 3, "state"])."""
    match = _INDEX.search(json.dumps(body))
    if match:
        return int(match.group(1))
    details = body.get("detail") if isinstance(body, dict) else None
    for error in details if isinstance(details, list) else []:
        loc = error.get("loc") if isinstance(error, dict) else None
        if isinstance(loc, list) and "heartbeats" in loc:
            after = loc[loc.index("heartbeats") + 1 :]
            if after and isinstance(after[0], int):
                return after[0]
    return None


class Agent:
    """Everything the running agent holds."""

    def __init__(
        self,
        client: Client,
        outbox: Outbox,
        platform: Platform,
        *,
        policy: Policy | None,
        policy_cache: Path | None = None,
        notifier: Notifier | None = None,
        options: Options | None = None,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        shooter: Callable[[Policy], capture.Shot] = capture.take,
        rng: random.Random | None = None,
    ) -> None:
        self.client = client
        self.outbox = outbox
        self.platform = platform
        self.policy_cache = policy_cache
        self.notifier = notifier or Notifier()
        self.options = options or Options()
        self.clock = clock or steady_clock()
        # Timestamps and working hours: this PC's clock, or the server's when it is off.
        self.time = TimeKeeper(self.clock, wall)
        self.shooter = shooter
        self.rng = rng or random.Random()
        self.heartbeat_backoff = self._backoff()
        self.screenshot_backoff = self._backoff()
        self.policy: Policy | None = None
        self.redactor = Redactor(())
        self.policy_due = 0.0
        self.heartbeat_due = 0.0
        self.interval_end = 0.0
        self.shots: list[float] = []
        # After a batch refused without naming the item: send this many one at a time.
        self.single_left = 0
        self.was_working: bool | None = None
        if policy is not None:
            self.apply_policy(policy)

    def _backoff(self) -> Backoff:
        return Backoff(self.options.backoff_base, self.options.backoff_cap, self.clock, self.rng)

    # policy

    def apply_policy(self, policy: Policy) -> None:
        old = self.policy
        self.policy = policy
        self.redactor = Redactor(policy.redact_patterns)
        now = self.clock()
        if old is None or (
            old.screenshot_interval_seconds,
            old.screenshots_min,
            old.screenshots_max,
        ) != (
            policy.screenshot_interval_seconds,
            policy.screenshots_min,
            policy.screenshots_max,
        ):
            self.interval_end = now  # plan afresh from now
            self.shots = []
        if old is None or old.heartbeat_seconds != policy.heartbeat_seconds:
            self.heartbeat_due = now

    def refresh_policy(self) -> None:
        """Read the policy from the server; on failure keep the one we have and try again soon."""
        now = self.clock()
        retry = min(60.0, self.options.policy_refresh_seconds)
        try:
            reply = self._ask(self.client.policy, _is_policy)
        except Unreachable as exc:
            self.policy_due = now + max(retry, self.heartbeat_backoff.wait())
            log.warning("cannot read the policy (%s): keeping the one we have", exc)
            return
        if reply.status == 401:
            raise Revoked(reply.detail())
        if reply.status != 200 or not isinstance(reply.body, dict):
            self.policy_due = now + retry
            why = reply.detail() if reply.status != 200 else _not_ours(reply)
            log.warning("the server answered %s to the policy request: %s", reply.status, why)
            return
        try:
            policy = parse_policy(reply.body)
        except PolicyError as exc:
            self.policy_due = now + retry
            log.error("the server's policy cannot be followed (%s): keeping the one we have", exc)
            return
        self.policy_due = now + self.options.policy_refresh_seconds
        if policy != self.policy:
            log.info("policy version %s", policy.version)
            self.apply_policy(policy)
        if self.policy_cache is not None:
            save_policy(self.policy_cache, reply.body)

    def _ask(self, call: Callable[[], Reply], expected: Callable[[Any], bool]) -> Reply:
        """One request. An answer that is the server's own (a success of the `expected`
        shape, or an error in its JSON form) checks this PC's clock and the policy version;
        anything else (a proxy's, a portal's page) is taken for nothing."""
        sent = self.clock()
        reply = call()
        received = self.clock()
        if expected(reply.body) if reply.status in (200, 201) else _is_error(reply):
            self.time.observe(reply, sent, received)
            self._seen_version(reply)
        return reply

    def _seen_version(self, reply: Reply) -> None:
        version = reply.policy_version
        if version is not None and self.policy is not None and version != self.policy.version:
            self.policy_due = self.clock()

    # the loop

    def run(self, stop: threading.Event) -> None:
        """Until `stop` is set; raises Revoked when the server refuses the device."""
        while not stop.is_set():
            stop.wait(self.step())

    def step(self) -> float:
        """Do whatever is due; return the seconds until something else is."""
        now = self.clock()
        if now >= self.policy_due:
            self.refresh_policy()
        policy = self.policy
        if policy is None:
            self.flush()
            return max(1.0, self.policy_due - self.clock())
        self.notifier.tick(policy, self.client.server, now)
        working = policy.in_working_hours(self.time.now())
        if working != self.was_working:
            if not working:
                print("callvault-agent: outside working hours: nothing is collected", flush=True)
            self.was_working = working
        if now >= self.heartbeat_due:
            if working:
                self.record_heartbeat(policy)
            # Behind by more than a beat (a suspended PC): start again from now.
            self.heartbeat_due = max(self.heartbeat_due + policy.heartbeat_seconds, now)
        self.screenshots_due(policy, now, working)
        self.flush()
        return self.sleep_time()

    def sleep_time(self) -> float:
        now = self.clock()
        due = [self.heartbeat_due, self.policy_due, now + self.notifier.due_in(now)]
        if self.shots:
            due.append(self.shots[0])
        elif self.policy is not None and self.policy.screenshots_enabled:
            due.append(self.interval_end)
        if self.outbox.heartbeat_count():
            due.append(now + self.heartbeat_backoff.wait())
        if self.outbox.screenshot_count():
            due.append(now + self.screenshot_backoff.wait())
        return min(max(0.05, min(due) - now), 60.0)

    # heartbeats

    def sample(self, policy: Policy) -> dict[str, Any]:
        """The heartbeat for this moment: state, and the foreground window unless locked."""
        locked = self.platform.locked()
        idle = self.platform.idle_seconds()
        state = "locked" if locked else "idle" if idle >= policy.idle_seconds else "active"
        app = title = None
        # "Window titles off" withholds the program too: the policy covers the whole window.
        if not locked and policy.window_titles:
            window = self.platform.foreground()
            if window is not None:
                app = self.redactor(window.app)
                title = self.redactor(window.title)
        return {"at": utc_iso(self.time.now()), "state": state, "app": app, "title": title}

    def record_heartbeat(self, policy: Policy) -> None:
        try:
            item = self.sample(policy)
        except Exception:  # a desktop that cannot answer now must not stop the agent
            log.exception("could not read the desktop's state: heartbeat skipped")
            return
        self.outbox.add_heartbeat(item)

    # screenshots

    def screenshots_due(self, policy: Policy, now: float, working: bool) -> None:
        if not policy.screenshots_enabled:
            self.shots = []
            return
        if not self.shots and now >= self.interval_end:
            late = now - self.interval_end > LATE_SECONDS
            start = now if late else self.interval_end
            self.shots = capture.plan_interval(
                start,
                policy.screenshot_interval_seconds,
                policy.screenshots_min,
                policy.screenshots_max,
                self.rng,
            )
            self.interval_end = start + policy.screenshot_interval_seconds
        while self.shots and self.shots[0] <= now:
            moment = self.shots.pop(0)
            if working and now - moment <= LATE_SECONDS:
                self.take_screenshot(policy)

    def take_screenshot(self, policy: Policy) -> None:
        if self.outbox.screenshot_bytes() > self.options.max_queue_bytes:
            log.warning("the screenshot queue is full (server unreachable?): screenshot skipped")
            return
        try:
            if self.platform.locked():
                return  # nothing of the operator's on a locked screen
            taken_at = utc_iso(self.time.now())
            shot = self.shooter(policy)
        except Exception:  # a failed grab must not stop heartbeats
            log.exception("screenshot failed")
            return
        self.outbox.add_screenshot(
            taken_at=taken_at,
            width=shot.width,
            height=shot.height,
            mime=shot.mime,
            image=shot.image,
        )

    # sending

    def flush(self) -> None:
        """Send what is queued, oldest first: heartbeats, then screenshots, each channel with
        its own back-off, until done, a failure, or the step's share."""
        channels = (
            (self.heartbeat_backoff, self.send_heartbeats, self.options.max_batches_per_step),
            (self.screenshot_backoff, self.send_screenshot, self.options.max_screenshots_per_step),
        )
        for backoff, send, share in channels:
            if not backoff.ready():
                continue
            try:
                for _ in range(share):
                    if not send():
                        break
            except Unreachable as exc:
                self._retry_later(backoff, f"the server is unreachable ({exc})")
                return  # the other channel would find it unreachable too
            except _RetryLater as later:
                self._retry_later(backoff, str(later), later.at_least)
                continue
            if backoff.failures:
                log.warning("the server takes items again: the queue is being sent")
            backoff.succeeded()

    def send_heartbeats(self) -> bool:
        """One batch; True when there may be more to send now."""
        batch = self.outbox.heartbeats(1 if self.single_left else BATCH)
        if not batch:
            return False
        self.single_left = max(0, self.single_left - 1)
        reply = self._ask(lambda: self.client.heartbeats([h.item for h in batch]), _is_taken)
        if reply.status == 200:
            if not _is_taken(reply.body):
                # Not the server's answer: nothing says the heartbeats arrived.
                raise _RetryLater(_not_ours(reply), reply.retry_after)
            last_seq = reply.body["last_seq"]
            if last_seq > batch[-1].seq:
                # The server has numbers this queue never sent: ours were ignored as repeats.
                log.warning("the server is ahead of the queue (seq %s): renumbering", last_seq)
                self.outbox.renumber_after(last_seq)
                return True
            self.outbox.remove_heartbeats([h.seq for h in batch])
            return True
        _check_refusal(reply)
        future = _FUTURE_AT.fullmatch(future_field(reply.body) or "")
        if future is not None and int(future.group(1)) < len(batch):
            self._retime_heartbeats(batch, int(future.group(1)), reply)
            return True
        index = bad_heartbeat_index(reply.body)
        if index is not None and 0 <= index < len(batch):
            bad = batch[index]
        elif len(batch) == 1:
            bad = batch[0]
        else:
            self.single_left = len(batch)  # which one? send them one at a time
            log.warning(
                "the server refused a batch (%s %s): sending one by one",
                reply.status,
                reply.detail(),
            )
            return True
        log.error(
            "the server refused heartbeat %s for good (%s %s): dropped",
            bad.seq,
            reply.status,
            reply.detail(),
        )
        self.outbox.remove_heartbeats([bad.seq])
        self.single_left = 0
        return True

    def _retime_heartbeats(self, batch: list[Heartbeat], index: int, reply: Reply) -> None:
        """The server finds heartbeat `index` in its future: this PC's clock was ahead when
        it was stamped. Move it, and every later one of the batch stamped at or after it (the
        server would refuse those too), by the clock's error; seq numbers stay."""
        bad = batch[index]
        stamped = parse_utc(bad.item.get("at"))
        if stamped is None or bad.retimed >= MAX_RETIMES:
            log.error(
                "the server still finds heartbeat %s in its future after %d correction(s) of "
                "its time (%s): dropped",
                bad.seq,
                bad.retimed,
                reply.detail(),
            )
            self.outbox.remove_heartbeats([bad.seq])
            return
        shift = self._correction(stamped, reply)
        times: dict[int, str] = {}
        for beat in batch[index:]:
            at = parse_utc(beat.item.get("at"))
            if at is not None and at >= stamped:
                times[beat.seq] = utc_iso(at + shift)
        self.outbox.retime_heartbeats(times)
        log.warning(
            "the server finds heartbeat %s in its future (this PC's clock was off): %d "
            "heartbeat(s) moved by %+.0f s and sent again",
            bad.seq,
            len(times),
            shift.total_seconds(),
        )

    def _correction(self, stamped: datetime, reply: Reply) -> timedelta:
        """How far to move an item the server found in its future: by this PC's clock error
        as now known, and at least back to the server's present (where it cannot be late)."""
        server_now = reply.server_time or reply.date or self.time.now()
        shift = self.time.skew()
        if stamped.timestamp() + shift > server_now.timestamp():
            shift = server_now.timestamp() - stamped.timestamp()
        return timedelta(seconds=shift)

    def send_screenshot(self) -> bool:
        shot = self.outbox.oldest_screenshot()
        if shot is None:
            return False
        reply = self._ask(
            lambda: self.client.screenshot(
                image=shot.image,
                mime=shot.mime,
                taken_at=shot.taken_at,
                client_id=shot.client_id,
                width=shot.width,
                height=shot.height,
            ),
            _is_stored,
        )
        if reply.status in (200, 201):
            if not _is_stored(reply.body):
                raise _RetryLater(_not_ours(reply), reply.retry_after)
            self.outbox.remove_screenshot(shot.id)
            return True
        _check_refusal(reply)
        stamped = parse_utc(shot.taken_at)
        in_future = future_field(reply.body) == "taken_at"
        if in_future and stamped is not None and shot.retimed < MAX_RETIMES:
            shift = self._correction(stamped, reply)
            self.outbox.retime_screenshot(shot.id, utc_iso(stamped + shift))
            log.warning(
                "the server finds screenshot %s in its future (this PC's clock was off): "
                "moved by %+.0f s and sent again",
                shot.client_id,
                shift.total_seconds(),
            )
            return True
        log.error(
            "the server refused screenshot %s for good (%s %s): dropped",
            shot.client_id,
            reply.status,
            reply.detail(),
        )
        self.outbox.remove_screenshot(shot.id)
        return True

    def _retry_later(self, backoff: Backoff, why: str, at_least: float = 0.0) -> None:
        delay = backoff.failed(at_least)
        log.warning(
            "%s: %d heartbeat(s) and %d screenshot(s) kept, next try in %.0f s",
            why,
            self.outbox.heartbeat_count(),
            self.outbox.screenshot_count(),
            delay,
        )


def _check_refusal(reply: Reply) -> None:
    """Raise Revoked for 401 and _RetryLater for a 'not now' answer; return for 'never'."""
    if reply.status == 401:
        raise Revoked(reply.detail())
    if reply.status in RETRY_LATER or reply.status >= 500 or reply.status < 400:
        raise _RetryLater(
            f"the server answered {reply.status}: {reply.detail()}", reply.retry_after
        )


class _RetryLater(Exception):
    """Ends a channel's flush; its items stay queued until its back-off allows a new try."""

    def __init__(self, why: str, at_least: float) -> None:
        super().__init__(why)
        self.at_least = at_least


def save_policy(path: Path, document: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document), encoding="utf-8")
    tmp.replace(path)


def load_policy(path: Path) -> Policy | None:
    """The last policy the server sent, so the agent can start while the server is away."""
    try:
        return parse_policy(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None
