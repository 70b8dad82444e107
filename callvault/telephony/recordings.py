"""Call recordings: storing what the PBX sends (or a URL it gives), who may play them, the
audited plays, call quality reviews, and retention.

A recording is sealed at rest (callvault/vault/files.py) under a name made of the project
and call ids only: `recordings/<project id>/<call id>.sealed`. PBXs often name their files
after the caller's number; that name (and the URL a PBX gives) never reaches storage, logs
or the record. A stored recording is never replaced: it is evidence.
"""

from __future__ import annotations

import http.client
import io
import logging
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from typing import IO, Any, BinaryIO

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.http import Http404
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django_tasks import task

from callvault.accounts.models import Membership, Project
from callvault.audit.context import Actor, acting_as, current, system_run
from callvault.audit.recorder import record_event
from callvault.lib.errors import FieldErrors
from callvault.orders.models import Order
from callvault.telephony import outbound
from callvault.telephony.models import Call, CallReview, Pbx, Recording, TelephonySettings
from callvault.vault.files import delete_sealed, read_sealed, save_sealed
from callvault.vault.logfilter import redact
from callvault.vault.phones import open_phone, seal

log = logging.getLogger(__name__)

AUDIT_ACTIONS = {
    "recording.fetch_queued": gettext_lazy("Recording fetch queued"),
    "recording.fetch_failed": gettext_lazy("Recording fetch failed"),
    "recording.store": gettext_lazy("Recording stored"),
    "recording.play": gettext_lazy("Recording played"),
    "recording.purge": gettext_lazy("Recording deleted after retention"),
    "call_review.create": gettext_lazy("Call reviewed"),
}

PURPOSE = "recording"
# The field name a fetch URL is sealed under while it waits in the task queue.
URL_FIELD = "recording_url"
# One listening is one event: the plays of a member within this window (the player's many
# Range requests, a seek, a replay) are recorded once.
PLAY_WINDOW = timedelta(minutes=10)
DEFAULT_MAX_BYTES = 200 * 1024 * 1024
DEFAULT_FETCH_TIMEOUT = 300
# Each connect/read waits at most this long; the whole fetch at most the fetch timeout.
FETCH_SOCKET_TIMEOUT = 30
URL_MAX_LENGTH = 2000


# --- settings (callvault/settings.py: CALLVAULT_RECORDING_*) ---------------------------------


def max_bytes() -> int:
    """The largest recording accepted, in bytes."""
    return int(getattr(settings, "RECORDING_MAX_BYTES", DEFAULT_MAX_BYTES))


def fetch_hosts() -> frozenset[str]:
    """Hosts a recording may be fetched from over plain HTTP and at private addresses."""
    return frozenset(h.lower() for h in getattr(settings, "RECORDING_FETCH_HOSTS", []))


def fetch_allows_private() -> bool:
    """Whether any host may resolve to a private or loopback address (tests)."""
    return bool(getattr(settings, "RECORDING_FETCH_ALLOW_PRIVATE", False))


def fetch_timeout() -> float:
    """How long a whole fetch may take, in seconds."""
    return float(getattr(settings, "RECORDING_FETCH_TIMEOUT", DEFAULT_FETCH_TIMEOUT))


# --- what a recording is --------------------------------------------------------------------


@dataclass(frozen=True)
class AudioKind:
    """An accepted audio format: its media type and the extension of its download name."""

    content_type: str
    extension: str


WAV = AudioKind("audio/wav", "wav")
MP3 = AudioKind("audio/mpeg", "mp3")
OGG = AudioKind("audio/ogg", "ogg")
EXTENSIONS = {k.content_type: k.extension for k in (WAV, MP3, OGG)}


def sniff_audio(head: bytes) -> AudioKind | None:
    """The format by its first bytes (what the sender claims is not believed)."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return WAV
    if head[:4] == b"OggS":
        return OGG
    if head[:3] == b"ID3":
        return MP3
    # An MPEG audio frame: 11 sync bits, a version that is not reserved, layer I-III (ADTS
    # AAC has the same sync but layer 0).
    frame = len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0
    if frame and (head[1] >> 3) & 3 != 1 and (head[1] >> 1) & 3 != 0:
        return MP3
    return None


def storage_name(call: Call) -> str:
    """Where a call's recording is stored: ids only, never a number or a name."""
    return f"recordings/{int(call.project_id)}/{int(call.pk)}.sealed"


def download_name(recording: Recording) -> str:
    """The neutral name a browser is given for the recording."""
    return f"call-{recording.call_id}.{EXTENSIONS.get(recording.content_type, 'bin')}"


class RecordingRefused(Exception):
    """A recording that is not stored; `status` is the HTTP answer and `message` says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _describe(recording: Recording) -> str:
    return f"{recording.content_type}, {recording.size} bytes"


# --- storing --------------------------------------------------------------------------------


def do_store_recording(call: Call, content: BinaryIO) -> Recording:
    """Seal the audio under the call's name and record `recording.store` (actor: whoever
    the context names, the PBX). Refuses a format that is not WAV, MP3 or Ogg (415), a file
    over the size limit (413) and a second recording for the call (409)."""
    kind = sniff_audio(content.read(16))
    content.seek(0, io.SEEK_END)
    size = content.tell()
    content.seek(0)
    if kind is None:
        raise RecordingRefused(415, "the file is not WAV, MP3 or Ogg audio")
    if size > max_bytes():
        raise RecordingRefused(413, "the file is larger than the recording size limit")
    name = storage_name(call)
    try:
        with transaction.atomic():
            if Recording.objects.filter(call_id=call.pk).exists():
                raise RecordingRefused(409, "the call already has a recording")
            # The row first: its unique call claims the name, so a concurrent upload for the
            # same call waits at its own insert and then fails it, never touching the file.
            recording = Recording.objects.create(
                call=call,
                project_id=call.project_id,
                storage_name=name,
                content_type=kind.content_type,
                size=size,
            )
            try:
                # A file without a row is what an upload cut off before its commit left.
                delete_sealed(name)
                stored = save_sealed(name, content, project_id=call.project_id, purpose=PURPOSE)
                if stored != size:
                    raise RecordingRefused(400, "the file changed while it was stored")
                record_event(
                    "recording.store",
                    project_id=call.project_id,
                    object_type="call",
                    object_id=call.pk,
                    object_repr=str(call),
                    changes={f"recording {recording.pk}": [None, _describe(recording)]},
                )
            except BaseException:
                # Still under the claim: nobody else can have written this name meanwhile.
                delete_sealed(name)
                raise
    except IntegrityError:
        raise RecordingRefused(409, "the call already has a recording") from None
    return recording


# --- fetching from a URL the PBX gives ------------------------------------------------------


def check_fetch_url(url: str) -> None:
    """Refuse a URL the fetch would refuse anyway (before it is queued): https, or plain
    http to an allowed host; no user name or password in it. The message never quotes it."""
    if not isinstance(url, str) or not url or len(url) > URL_MAX_LENGTH:
        raise FieldErrors.one("url", f"a URL of at most {URL_MAX_LENGTH} characters is required")
    problem = outbound.url_problem(url, fetch_hosts(), allow_private=fetch_allows_private())
    if problem:
        raise FieldErrors.one("url", problem)


def queue_fetch(call: Call, pbx: Pbx, url: str) -> None:
    """Check the URL and queue its fetch, recorded as `recording.fetch_queued`; refuses
    (recorded as `recording.fetch_failed`) a URL the fetch would refuse and a call that
    already has a recording.

    The URL waits in the task queue sealed: a PBX may name its files after the number."""
    try:
        if Recording.objects.filter(call=call).exists():
            raise RecordingRefused(409, "the call already has a recording")
        check_fetch_url(url)
    except FieldErrors as exc:
        _fetch_failed(call, "; ".join(str(e) for e in exc.errors.values()))
        raise
    except RecordingRefused as exc:
        _fetch_failed(call, exc.message)
        raise
    sealed = seal(url, project_id=call.project_id, field=URL_FIELD)
    with transaction.atomic():
        record_event(
            "recording.fetch_queued",
            project_id=call.project_id,
            object_type="call",
            object_id=call.pk,
            object_repr=str(call),
        )
        fetch_recording.enqueue(call_id=call.pk, pbx_id=pbx.pk, sealed_url=sealed)


class FetchRefused(Exception):
    """The fetch was not made or not finished; the message never quotes the URL."""


def download(url: str, into: IO[bytes]) -> int:
    """GET the URL into a file: no redirects, size-capped, within the fetch timeout (every
    connect, send and receive waits at most for the time left: outbound.Deadline)."""
    check_fetch_url(url)
    deadline = outbound.Deadline(fetch_timeout(), per_op=FETCH_SOCKET_TIMEOUT)
    headers = {"Accept": "audio/*", "User-Agent": "callvault"}
    try:
        with outbound.request(
            "GET",
            url,
            headers=headers,
            deadline=deadline,
            allowed_hosts=fetch_hosts(),
            allow_private=fetch_allows_private(),
        ) as response:
            return _receive(response, into)
    except outbound.OutboundRefused as exc:
        raise FetchRefused(str(exc)) from None
    except TimeoutError:
        raise FetchRefused("the fetch took longer than the timeout") from None
    except (OSError, http.client.HTTPException) as exc:
        # The exception's text may quote the URL: only its kind is kept.
        raise FetchRefused(f"the fetch failed ({type(exc).__name__})") from None


def _receive(response: http.client.HTTPResponse, into: IO[bytes]) -> int:
    if 300 <= response.status < 400:
        raise FetchRefused("the server answered with a redirect, which is not followed")
    if response.status != 200:
        raise FetchRefused(f"the server answered {response.status}")
    declared = response.getheader("Content-Length")
    if declared and declared.isdigit() and int(declared) > max_bytes():
        raise FetchRefused("the file is larger than the recording size limit")
    total = 0
    # read1: what has arrived, without waiting for a whole chunk.
    while chunk := response.read1(64 * 1024):
        total += len(chunk)
        if total > max_bytes():
            raise FetchRefused("the file is larger than the recording size limit")
        into.write(chunk)
    return total


def _fetch_failed(call: Call, reason: str) -> None:
    log.warning("recording fetch for call %s refused: %s", call.pk, reason)
    record_event(
        "recording.fetch_failed",
        project_id=call.project_id,
        object_type="call",
        object_id=call.pk,
        object_repr=str(call),
        extra={"reason": redact(reason)[:200]},
    )


@task()
def fetch_recording(call_id: int, pbx_id: int, sealed_url: str) -> int:
    """Fetch a recording from the URL a PBX gave and store it as the PBX's upload; the
    bytes stored (0 when refused: recorded as `recording.fetch_failed` with the reason,
    never the URL)."""
    call = Call.objects.filter(pk=call_id).first()
    pbx = Pbx.objects.filter(pk=pbx_id).first()
    if call is None or pbx is None or pbx.project_id != call.project_id:
        log.warning("recording fetch for call %s dropped: the call or its PBX is gone", call_id)
        return 0
    with acting_as(Actor.pbx(pbx.pk, pbx.name)):
        if pbx.revoked_at is not None:
            _fetch_failed(call, "the PBX was revoked")
            return 0
        url = open_phone(sealed_url, project_id=call.project_id, field=URL_FIELD)
        with tempfile.TemporaryFile() as spool:
            try:
                download(url, spool)
                spool.seek(0)
                recording = do_store_recording(call, spool)
            except (FetchRefused, RecordingRefused) as exc:
                _fetch_failed(call, str(exc))
                return 0
            except FieldErrors as exc:
                _fetch_failed(call, "; ".join(str(e) for e in exc.errors.values()))
                return 0
    return int(recording.size)


# --- who may listen -------------------------------------------------------------------------


def visible_calls(member: Membership) -> QuerySet[Call]:
    """The project's calls about orders the member may see (calls without an order: to
    members who see every order)."""
    calls = Call.objects.filter(project_id=member.project_id)
    orders = Order.objects.visible_to(member).values("pk")
    if member.can_view_all_orders:
        return calls.filter(Q(order__in=orders) | Q(order__isnull=True))
    return calls.filter(order__in=orders)


def access_listener(member: Membership) -> Membership:
    """The member if they may listen to recordings and review calls; 404 otherwise."""
    if not member.is_active or not member.can_listen_recordings:
        raise Http404
    return member


def access_recording_by_call_id(member: Membership, call_id: int) -> Recording:
    """A call's recording the member may play; 404 alike for missing and not theirs."""
    access_listener(member)
    try:
        return Recording.objects.select_related("call").get(
            call__in=visible_calls(member), call_id=call_id
        )
    except Recording.DoesNotExist:
        raise Http404 from None


def record_play(member: Membership, recording: Recording) -> bool:
    """Record `recording.play` unless this member's listening of it is already on record
    (within PLAY_WINDOW); True when an event was written."""
    key = f"recording-play:{recording.pk}:{member.user_id}"
    if not cache.add(key, 1, timeout=int(PLAY_WINDOW.total_seconds())):
        return False
    try:
        record_event(
            "recording.play",
            project_id=recording.project_id,
            object_type="call",
            object_id=recording.call_id,
            object_repr=str(recording.call),
            extra={"recording": recording.pk},
        )
    except BaseException:
        cache.delete(key)  # not on record: the next request must try again
        raise
    return True


def open_recording(recording: Recording, start: int, end: int) -> Any:
    """The plaintext bytes [start, end) of the recording, decrypted as they are sent."""
    return read_sealed(
        recording.storage_name,
        project_id=recording.project_id,
        purpose=PURPOSE,
        start=start,
        end=end,
    )


# --- call quality review --------------------------------------------------------------------


def telephony_settings(project: Project | int) -> TelephonySettings:
    """The project's telephony settings, or the defaults when it has none yet (unsaved)."""
    project_id = project if isinstance(project, int) else project.pk
    found = TelephonySettings.objects.filter(project_id=project_id).first()
    return found or TelephonySettings(project_id=project_id)


def checklist_items(project: Project | int) -> list[str]:
    """The project's review checklist, one item per non-empty line."""
    lines = telephony_settings(project).review_checklist.splitlines()
    return list(dict.fromkeys(line.strip() for line in lines if line.strip()))


def score_of(answers: dict[str, bool]) -> int:
    """The percent of checklist items checked, rounded half up."""
    if not answers:
        return 0
    checked = sum(1 for v in answers.values() if v)
    return (200 * checked + len(answers)) // (2 * len(answers))


@transaction.atomic
def do_create_call_review(
    call: Call, *, checked: list[str], comment: str, acting: Membership
) -> CallReview:
    """Score a call against the project's checklist: the items as they read now, each
    checked or not; recorded as `call_review.create` (the comment with numbers redacted)."""
    access_listener(acting)
    items = checklist_items(call.project_id)
    if not items:
        raise FieldErrors.one("checked", _("The project has no review checklist."))
    unknown = set(checked) - set(items)
    if unknown:
        raise FieldErrors.one("checked", _("An item that is not on the checklist was sent."))
    comment = comment.strip()
    if len(comment) > 2000:
        raise FieldErrors.one("comment", _("At most 2000 characters."))
    answers = {item: item in checked for item in items}
    review = CallReview.objects.create(
        call=call,
        project_id=call.project_id,
        reviewer=acting.user,
        reviewer_name=acting.user.get_username(),
        checklist=answers,
        score=score_of(answers),
        comment=comment,
    )
    summary = f"{review.score}%"
    if comment:
        summary += f": {redact(comment)[:200]}"
    record_event(
        "call_review.create",
        project_id=call.project_id,
        object_type="call",
        object_id=call.pk,
        object_repr=str(call),
        changes={f"review {review.pk}": [None, summary]},
        extra={"checked": sum(answers.values()), "items": len(answers)},
    )
    return review


# --- retention ------------------------------------------------------------------------------


def do_purge_recording(recording: Recording) -> None:
    """Delete a recording (row and file), recorded as `recording.purge`; the file goes
    once the row's deletion has committed."""
    name, pk, call_id = recording.storage_name, recording.pk, recording.call_id
    described = _describe(recording)
    with transaction.atomic():
        recording.delete()
        # After the write it records (the SQLite bypass triggers are claimed by the event).
        record_event(
            "recording.purge",
            project_id=recording.project_id,
            object_type="call",
            object_id=call_id,
            object_repr=f"call {call_id}",
            changes={f"recording {pk}": [described, None]},
            extra={"recorded_at": recording.created_at.isoformat()},
        )
        transaction.on_commit(lambda: delete_sealed(name))


@task()
def purge_old_recordings() -> int:
    """Delete recordings older than their project's retention (maintenance); how many.

    One `recording.purge` event per recording, all of one run under one request id."""
    now = timezone.now()
    purged = 0
    with system_run("task purge_old_recordings", request_id=current().request_id):
        for project_id in (
            Recording.objects.order_by().values_list("project_id", flat=True).distinct()
        ):
            days = telephony_settings(project_id).recording_retention_days
            if not days:
                continue  # 0: kept until someone deletes them
            old = Recording.objects.filter(
                project_id=project_id, created_at__lt=now - timedelta(days=days)
            ).select_related("call")
            for recording in old.iterator():
                do_purge_recording(recording)
                purged += 1
    return purged
