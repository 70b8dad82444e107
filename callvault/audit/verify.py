"""`callvault audit verify`: recompute every chain from the events and hold it against the
signed checkpoints and prune records. Reads in keyset batches; trusts no table but the events.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.conf import settings
from django.db import connection
from django.utils import timezone

from callvault.audit import chain, checkpoints, retention, signing
from callvault.audit.models import ChainHead, Checkpoint

LINK_COLUMNS = "l.chain_key, l.seq, l.event_id, l.content_hash, l.chain_hash"
# chain key -> seq -> the signed heads claiming the chain's hash at that seq
Signed = dict[int, dict[int, list[checkpoints.SignedHead]]]


@dataclass(frozen=True)
class Problem:
    """Something that does not add up, at the first place it shows in a chain."""

    chain_key: int
    seq: int | None
    event_id: int | None
    message: str

    def __str__(self) -> str:
        where = f"chain {self.chain_key}"
        if self.seq is not None:
            where += f" seq {self.seq}"
        if self.event_id is not None:
            where += f" event {self.event_id}"
        return f"{where}: {self.message}"


@dataclass
class Report:
    """What verify found: counts, and the first problem of every chain."""

    chains: int = 0
    links: int = 0
    checkpoints: int = 0
    prune_records: int = 0
    unsealed: int = 0
    pending: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class _Walk:
    """The walk's state in one chain."""

    key: int
    seq: int  # the last seq accounted for, by a link or a prune record
    hash: str
    broken: bool = False


class _Firsts:
    """Keeps the first problem per chain."""

    def __init__(self) -> None:
        self.by_chain: dict[int, Problem] = {}

    def __call__(self, problem: Problem) -> None:
        self.by_chain.setdefault(problem.chain_key, problem)


Fail = Callable[[Problem], None]


def trusted_keys(extra: list[Ed25519PublicKey]) -> dict[str, Ed25519PublicKey]:
    """The public keys signatures are checked against: the configured key's and any given."""
    keys = {signing.fingerprint(key): key for key in extra}
    if signing.key_path().exists():
        public = signing.load_private_key().public_key()
        keys[signing.fingerprint(public)] = public
    return keys


def verify(
    *,
    keys: dict[str, Ed25519PublicKey],
    checkpoint_files: list[Path] | None = None,
    batch_size: int = 10_000,
    now: datetime | None = None,
) -> Report:
    """Check every chain, the checkpoints and prune records, and events outside the chain."""
    report = Report()
    fail = _Firsts()
    # Read before the links: the sealer may extend a chain while we walk it, never shorten it.
    heads = dict(ChainHead.objects.values_list("chain_key", "seq"))
    starts = retention.chain_starts(keys, fail, report)
    signed = _signed_heads(keys, checkpoint_files or [], fail, report)
    seen: set[int] = set()
    walk: _Walk | None = None
    for link in _links(batch_size):
        if walk is None or walk.key != link[0]:
            if walk is not None:
                _finish(walk, signed, heads, fail)
            walk = _start(link[0], starts)
            seen.add(walk.key)
        report.links += 1
        if not walk.broken:
            _check_link(walk, link, signed, fail)
    if walk is not None:
        _finish(walk, signed, heads, fail)
    for key in sorted((set(starts) | set(signed)) - seen):
        _finish(_start(key, starts), signed, heads, fail)
        seen.add(key)
    _check_unlinked(report, fail, now or timezone.now())
    report.chains = len(seen)
    report.problems = [fail.by_chain[key] for key in sorted(fail.by_chain)]
    return report


def _start(key: int, starts: dict[int, tuple[int, str]]) -> _Walk:
    seq, hash_ = starts.get(key, (0, chain.GENESIS))
    return _Walk(key, seq, hash_)


def _signed_heads(
    keys: dict[str, Ed25519PublicKey], files: list[Path], fail: Fail, report: Report
) -> Signed:
    """Every checkpoint, stored or in a file; a bad signature is a problem of its chain."""
    heads = [checkpoints.check_checkpoint(cp, keys) for cp in Checkpoint.objects.iterator()]
    for path in files:
        heads += checkpoints.read_document(path, keys)
    signed: Signed = defaultdict(lambda: defaultdict(list))
    for head in heads:
        if not head.valid:
            fail(
                Problem(
                    head.chain_key,
                    head.seq,
                    None,
                    f"the checkpoint of {head.created_at} ({head.source}) is not signed by a "
                    "trusted key (forged, or signed with a key verify was not given)",
                )
            )
            continue
        signed[head.chain_key][head.seq].append(head)
    report.checkpoints = len(heads)
    return signed


def _links(batch_size: int) -> Iterator[tuple[Any, ...]]:
    """Links joined with their events (NULLs if deleted), in chain and seq order, in batches."""
    key, seq = -(2**62), 0
    while True:
        with connection.cursor() as cursor:
            cursor.execute(
                f"SELECT {LINK_COLUMNS}, {chain.EVENT_COLUMNS} FROM audit_chainlink l "  # noqa: S608
                "LEFT JOIN audit_auditevent e ON e.id = l.event_id "
                "WHERE (l.chain_key, l.seq) > (%s, %s) ORDER BY l.chain_key, l.seq LIMIT %s",
                [key, seq, batch_size],
            )
            rows = cursor.fetchall()
        yield from rows
        if len(rows) < batch_size:
            return
        key, seq = rows[-1][0], rows[-1][1]


def _check_link(walk: _Walk, link: tuple[Any, ...], signed: Signed, fail: Fail) -> None:
    key, seq, event_id, _content, hash_ = link[:5]
    message = _link_problem(walk, link)
    if message is None:
        walk.seq, walk.hash = seq, hash_
        message = _checkpoint_problem(walk, signed)
    if message is not None:
        walk.broken = True
        fail(Problem(key, seq, event_id, message))


def _link_problem(walk: _Walk, link: tuple[Any, ...]) -> str | None:
    key, seq, _event_id, content, hash_ = link[:5]
    if seq != walk.seq + 1:
        return (
            f"seqs {walk.seq + 1}..{seq - 1} are missing "
            "(deleted without a signed prune record, or links reordered)"
        )
    if link[5] is None:
        return "the event is missing (deleted)"
    event = chain.canonical_event(link[5:])
    if chain.chain_key(event["project_id"]) != key:
        return "the event's project was changed (it belongs to another chain)"
    if chain.content_hash(event) != content:
        return "the event was changed (its content no longer matches its link)"
    if chain.link_hash(walk.hash, seq, content) != hash_:
        return "the chain hash is wrong (links edited, inserted or reordered)"
    return None


def _checkpoint_problem(walk: _Walk, signed: Signed) -> str | None:
    for head in signed.get(walk.key, {}).get(walk.seq, ()):
        if head.hash != walk.hash:
            return (
                f"the chain differs from the checkpoint signed at {head.created_at} "
                f"({head.source}): rewritten at or before this seq"
            )
    return None


def _finish(walk: _Walk, signed: Signed, heads: dict[int, int], fail: Fail) -> None:
    """At a chain's end: a signed head, or the sealer's head, beyond it means a cut tail."""
    if walk.broken:
        return
    beyond = [seq for seq in signed.get(walk.key, {}) if seq > walk.seq]
    if beyond:
        head = signed[walk.key][max(beyond)][0]
        fail(
            Problem(
                walk.key,
                walk.seq + 1,
                None,
                f"the chain ends at seq {walk.seq} but was signed up to seq {head.seq} at "
                f"{head.created_at} ({head.source}): its tail was cut",
            )
        )
        return
    last = heads.get(walk.key)
    if last is not None and last > walk.seq:
        message = f"the chain ends at seq {walk.seq}, its head says {last}: its tail was cut"
        fail(Problem(walk.key, walk.seq + 1, None, message))


def _check_unlinked(report: Report, fail: Fail, now: datetime) -> None:
    """Events with no link: the unsealed window, late commits, or inserted outside the chain."""
    watermark = max(ChainHead.objects.values_list("last_event_id", flat=True), default=0)
    old = now - timedelta(seconds=settings.AUDIT_SEAL_GRACE)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT e.id, e.project_id, e.created_at FROM audit_auditevent e WHERE NOT EXISTS "
            "(SELECT 1 FROM audit_chainlink l WHERE l.event_id = e.id) ORDER BY e.id"
        )
        for event_id, project_id, created_at in cursor:
            if event_id > watermark:
                report.unsealed += 1
            elif chain.created_datetime(created_at) > old:
                report.pending += 1
            else:
                fail(
                    Problem(
                        chain.chain_key(project_id),
                        None,
                        event_id,
                        "the event is not in the chain (inserted behind the sealer)",
                    )
                )
