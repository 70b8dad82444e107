"""Recordings over HTTP: the PBX's upload, playing through the server with Range support,
and the call quality review pages.

Plays and reviews are for members who may listen to recordings and may see the call's
order; everyone else gets the same 404 as for a call that does not exist.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from django.db.models import Avg, Count
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    JsonResponse,
    QueryDict,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import redirect, render
from django.urls import path
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods

from callvault.accounts.models import Membership, access_membership
from callvault.lib.errors import FieldErrors
from callvault.telephony.models import Call, CallReview, Pbx
from callvault.telephony.pbx_auth import pbx_endpoint
from callvault.telephony.recordings import (
    RecordingRefused,
    access_listener,
    access_recording_by_call_id,
    checklist_items,
    do_create_call_review,
    do_store_recording,
    download_name,
    max_bytes,
    open_recording,
    queue_fetch,
    record_play,
    visible_calls,
)

# What a multipart body may carry beyond the file itself (boundaries, part headers).
MULTIPART_SLACK = 64 * 1024
REVIEWS_LIMIT = 100
MAX_JSON_BODY = 16_384


# --- the PBX's upload (/pbx/v1/calls/<id>/recording) ----------------------------------------


class CappedUploadHandler(TemporaryFileUploadHandler):
    """Spools an upload to a temporary file (never to memory) and stops at the size limit."""

    def __init__(self, limit: int, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.limit = limit
        self.too_large = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes | None:
        if start + len(raw_data) > self.limit:
            self.too_large = True
            raise StopUpload(connection_reset=False)
        return super().receive_data_chunk(raw_data, start)


def _answer(status: int, error: str = "", field: str = "") -> JsonResponse:
    body: dict[str, Any] = {"ok": not error}
    if field:
        body["field"] = field
    if error:
        body["error"] = error
    return JsonResponse(body, status=status)


@pbx_endpoint
def upload_recording(request: HttpRequest, pbx: Pbx, call_id: int) -> HttpResponse:
    """A call's recording from its PBX: multipart `file` (201), or JSON `{"url": ...}` that
    a background task fetches (202). Errors: 404 another project's call, 409 already stored,
    413 too large, 415 not WAV/MP3/Ogg, 422 a missing or bad field."""
    # Nothing has read the body yet (the PBX's secret is a header): the upload goes to a
    # capped temporary file, never to memory.
    handler = CappedUploadHandler(max_bytes(), request)
    request.upload_handlers = [handler]
    call = Call.objects.filter(pk=call_id, project_id=pbx.project_id).first()
    if call is None:
        return _answer(404, "unknown call")
    try:
        if request.content_type == "application/json":
            return _queue_fetch(request, call, pbx)
        if request.content_type != "multipart/form-data":
            return _answer(415, "send multipart/form-data with a file, or JSON with a url")
        declared = request.META.get("CONTENT_LENGTH") or ""
        if declared.isdigit() and int(declared) > max_bytes() + MULTIPART_SLACK:
            return _answer(413, "the file is larger than the recording size limit")
        upload = request.FILES.get("file")
        if handler.too_large:
            return _answer(413, "the file is larger than the recording size limit")
        if upload is None:
            return _answer(422, "a multipart field 'file' with the audio is required", "file")
        do_store_recording(call, upload)  # type: ignore[arg-type]
    except RecordingRefused as exc:
        return _answer(exc.status, exc.message)
    return _answer(201)


def _queue_fetch(request: HttpRequest, call: Call, pbx: Pbx) -> HttpResponse:
    if len(request.body) > MAX_JSON_BODY:
        return _answer(413, "the JSON body is too large")
    try:
        data = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        return _answer(422, "the body is not JSON", "url")
    url = data.get("url") if isinstance(data, dict) else None
    try:
        queue_fetch(call, pbx, url if isinstance(url, str) else "")
    except FieldErrors as exc:
        return _answer(422, exc.errors["url"], "url")
    return _answer(202)


# --- playing, through the server ------------------------------------------------------------


class RangeNotSatisfiable(Exception):
    """The Range header asks for bytes the recording does not have."""


# At most 19 digits a side (any file's offset fits): Python refuses to convert a string of
# more than 4300 digits to an int, and a longer header must be a 416, not a 500.
_BYTE_RANGE = re.compile(r"^(\d{0,19})-(\d{0,19})$")


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range [start, end) a Range header asks for; None for the whole file
    (no header, another unit, or several ranges, which a server may ignore)."""
    if not header or not header.startswith("bytes="):
        return None
    spec = header[len("bytes=") :].strip()
    if "," in spec:
        return None
    found = _BYTE_RANGE.match(spec)
    if found is None or found.group(1) == found.group(2) == "":
        raise RangeNotSatisfiable
    first, last = found.group(1), found.group(2)
    if first == "":  # the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - suffix), size
    start = int(first)
    end = size if last == "" else int(last) + 1
    if start >= size or end <= start:
        raise RangeNotSatisfiable
    return start, min(end, size)


@login_required
@require_GET
def play_recording(request: HttpRequest, project_slug: str, call_id: int) -> HttpResponseBase:
    """The recording's audio, whole or one Range (206); the listening is recorded once per
    member and recording within recordings.PLAY_WINDOW."""
    member = access_membership(request.user, project_slug)
    recording = access_recording_by_call_id(member, call_id)
    size = int(recording.size)
    response: HttpResponseBase
    try:
        wanted = parse_range(request.META.get("HTTP_RANGE"), size)
    except RangeNotSatisfiable:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
    else:
        start, end = wanted or (0, size)
        # Opened (and its first segment checked) before the play is put on record.
        audio = open_recording(recording, start, end)
        record_play(member, recording)
        response = StreamingHttpResponse(
            audio,
            status=206 if wanted else 200,
            content_type=recording.content_type,
        )
        response["Content-Length"] = str(end - start)
        if wanted:
            response["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
        response["Content-Disposition"] = f'inline; filename="{download_name(recording)}"'
    response["Accept-Ranges"] = "bytes"
    # A recording must stay in no cache, shared or the browser's own.
    response["Cache-Control"] = "private, no-store"
    return response


# --- call quality review --------------------------------------------------------------------


def _listener(request: HttpRequest, project_slug: str) -> Membership:
    return access_listener(access_membership(request.user, project_slug))


def _call_for(member: Membership, call_id: int) -> Call:
    try:
        return (
            visible_calls(member)
            .select_related("order", "recording")
            .prefetch_related("reviews")
            .get(pk=call_id)
        )
    except Call.DoesNotExist:
        raise Http404 from None


@login_required
@require_http_methods(["GET", "POST"])
def review_call(request: HttpRequest, project_slug: str, call_id: int) -> HttpResponse:
    """Score a call against the project's checklist and leave a comment."""
    member = _listener(request, project_slug)
    call = _call_for(member, call_id)
    items = checklist_items(member.project_id)
    errors: dict[str, str] = {}
    checked: list[str] = []
    comment = ""
    if request.method == "POST":
        checked = request.POST.getlist("checked")
        comment = request.POST.get("comment", "")
        try:
            review = do_create_call_review(call, checked=checked, comment=comment, acting=member)
        except FieldErrors as exc:
            errors = exc.errors
        else:
            messages.success(
                request, _("Review saved: %(score)s%% of the checklist.") % {"score": review.score}
            )
            return redirect("telephony:reviews", project_slug=project_slug)
    context = {
        "member": member,
        "project": member.project,
        "call": call,
        "items": items,
        "checked": set(checked),
        "comment": comment,
        "errors": errors,
        "reviews": sorted(call.reviews.all(), key=lambda r: r.created_at, reverse=True),
    }
    return render(request, "telephony/review_form.html", context, status=422 if errors else 200)


class ReviewFilterForm(forms.Form):
    """The review list's filter, in the query string."""

    operator = forms.ChoiceField(label=gettext_lazy("Operator"), required=False)

    def __init__(self, data: QueryDict, *, members: list[Membership]) -> None:
        super().__init__(data)
        field: Any = self.fields["operator"]
        field.choices = [
            ("", _("All operators")),
            *((str(m.user_id), m.user.get_username()) for m in members),
        ]


@login_required
@require_GET
def reviews(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The project's recent call reviews, newest first, optionally for one operator."""
    member = _listener(request, project_slug)
    members = list(
        Membership.objects.filter(project_id=member.project_id)
        .select_related("user")
        .order_by("user__username")
    )
    form = ReviewFilterForm(request.GET, members=members)
    rows = CallReview.objects.filter(call__in=visible_calls(member))
    if form.is_valid() and form.cleaned_data["operator"]:
        rows = rows.filter(call__member_id=int(form.cleaned_data["operator"]))
    summary = rows.aggregate(average=Avg("score"), count=Count("pk"))
    context = {
        "member": member,
        "project": member.project,
        "form": form,
        "rows": list(
            rows.select_related("call", "call__order", "call__recording").order_by(
                "-created_at", "-pk"
            )[:REVIEWS_LIMIT]
        ),
        "summary": summary,
        "limit": REVIEWS_LIMIT,
    }
    return render(request, "telephony/reviews.html", context)


# Included by telephony/urls.py (pages under /p/<project>/calls/) and pbx_urls.py (/pbx/v1/).
urlpatterns = [
    path("<int:call_id>/recording/", play_recording, name="recording_play"),
    path("<int:call_id>/review/", review_call, name="review"),
    path("reviews/", reviews, name="reviews"),
]
pbx_urlpatterns = [
    path("calls/<int:call_id>/recording", upload_recording, name="recording"),
]
