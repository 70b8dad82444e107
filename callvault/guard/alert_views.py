"""The owners' alerts page and the leak-control settings (owners only: everyone else gets the
same 404 as for a page that does not exist)."""

from __future__ import annotations

from datetime import date
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from callvault.accounts.forms import apply_field_errors
from callvault.accounts.models import Membership, Role, SecurityNotice, access_membership
from callvault.accounts.notices import describe
from callvault.accounts.stepup import step_up_required
from callvault.audit.models import ActorKind, AuditEvent
from callvault.audit.views import project_zone
from callvault.guard import alerts as watch
from callvault.guard.models import AlertKind, AlertRule
from callvault.lib.errors import FieldErrors

# The page shows the recent past; older alerts are in the audit trail (alert.raised).
LIST_LIMIT = 200

# Every kind of alert the page can filter by: the guard's rules and issue 5's notices.
KIND_LABELS: dict[str, Any] = {
    **dict(AlertKind.choices),
    "quota_reached": gettext_lazy("A quota reached"),
    "suspended": gettext_lazy("A member suspended"),
    "refused_address": gettext_lazy("Refused address"),
    "lockout": gettext_lazy("Lockout"),
    "new_address": gettext_lazy("New address"),
    "new_device": gettext_lazy("New device"),
    "support_used": gettext_lazy("Support access used"),
}


def access_owner(user: Any, project_slug: str) -> Membership:
    """The user's membership if they own the project; 404 otherwise, as for no project."""
    member = access_membership(user, project_slug)
    if member.role != Role.OWNER or member.pk is None:
        raise Http404
    return member


class AlertFilterForm(forms.Form):
    """The alerts page's filters, in the query string."""

    kind = forms.ChoiceField(label=gettext_lazy("Alert"), required=False)
    member = forms.ChoiceField(label=gettext_lazy("Member"), required=False)
    unread = forms.BooleanField(label=gettext_lazy("Unread only"), required=False)

    def __init__(self, data: QueryDict, *, members: list[Membership]) -> None:
        super().__init__(data)
        kind: Any = self.fields["kind"]
        kind.choices = [("", _("All alerts")), *KIND_LABELS.items()]
        member: Any = self.fields["member"]
        member.choices = [("", _("All members")), *((str(m.user_id), str(m.user)) for m in members)]


def _timeline_links(owner: Membership, items: list[SecurityNotice]) -> dict[int, str]:
    """Alert id -> the member's audit timeline on the alert's day. The member is the alert's
    own (guard alerts name one), or else the one its audit event is about (issue 5's
    notices); a stranger or a support person has no timeline here."""
    if not owner.can_view_audit:
        return {}
    who = {n.pk: n.user_id for n in items if n.user_id}
    unnamed = {n.event_id: n.pk for n in items if not n.user_id and n.event_id}
    events = AuditEvent.objects.filter(pk__in=list(unnamed), project_id=owner.project_id).only(
        "id", "actor_kind", "actor_id", "object_type", "object_id"
    )
    for event in events:
        user_id = event.actor_id if event.actor_kind == ActorKind.MEMBER else ""
        if not user_id and event.object_type == "user":
            user_id = event.object_id
        if user_id.isdigit():
            who[unnamed[event.pk]] = int(user_id)
    members = set(
        Membership.objects.filter(
            project_id=owner.project_id, user_id__in=set(who.values())
        ).values_list("user_id", flat=True)
    )
    zone = project_zone(owner)
    links = {}
    for notice in items:
        target = who.get(notice.pk)
        if target is not None and target in members:
            url = reverse("audit:timeline", args=[owner.project.slug, target])
            day: date = notice.created_at.astimezone(zone).date()
            links[notice.pk] = f"{url}?day={day.isoformat()}"
    return links


@login_required
def alerts(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The project's alerts, newest first, with their figures and the member's timeline."""
    owner = access_owner(request.user, project_slug)
    members = list(
        Membership.objects.filter(project_id=owner.project_id)
        .select_related("user")
        .order_by("user__username")
    )
    form = AlertFilterForm(request.GET, members=members)
    items = SecurityNotice.objects.filter(project_id=owner.project_id).select_related("user")
    if form.is_valid():
        if form.cleaned_data["kind"]:
            items = items.filter(kind=form.cleaned_data["kind"])
        if form.cleaned_data["member"]:
            items = items.filter(user_id=int(form.cleaned_data["member"]))
        if form.cleaned_data["unread"]:
            items = items.filter(read_at__isnull=True)
    shown = list(items.order_by("-created_at", "-pk")[:LIST_LIMIT])
    links = _timeline_links(owner, shown)
    return render(
        request,
        "guard/alerts.html",
        {
            "member": owner,
            "project": owner.project,
            "settings_section": "alerts",
            "form": form,
            "zone": project_zone(owner),
            "rows": [
                (n, describe(n), KIND_LABELS.get(n.kind, n.kind), links.get(n.pk, ""))
                for n in shown
            ],
            "unread": SecurityNotice.objects.filter(
                project_id=owner.project_id, read_at__isnull=True
            ).exists(),
            "query": request.GET.urlencode(),
        },
    )


def _back(request: HttpRequest, project_slug: str) -> HttpResponse:
    url = reverse("guard:alerts", args=[project_slug])
    query = request.POST.get("query", "")
    kept = QueryDict(query)
    clean = {k: kept[k] for k in ("kind", "member", "unread") if kept.get(k)}
    return redirect(f"{url}?{urlencode(clean)}" if clean else url)


@login_required
@require_POST
def alert_read(request: HttpRequest, project_slug: str, notice_id: int) -> HttpResponse:
    """Mark one alert read."""
    owner = access_owner(request.user, project_slug)
    mine = SecurityNotice.objects.filter(project_id=owner.project_id, pk=notice_id)
    if not mine.exists():
        raise Http404
    watch.mark_read(owner.project, notice_id)
    return _back(request, project_slug)


@login_required
@require_POST
def alerts_read(request: HttpRequest, project_slug: str) -> HttpResponse:
    """Mark every alert read."""
    owner = access_owner(request.user, project_slug)
    watch.mark_read(owner.project)
    return _back(request, project_slug)


# Day numbers as GuardSettings.work_days holds them.
WEEKDAYS = [
    ("1", gettext_lazy("Mon")),
    ("2", gettext_lazy("Tue")),
    ("3", gettext_lazy("Wed")),
    ("4", gettext_lazy("Thu")),
    ("5", gettext_lazy("Fri")),
    ("6", gettext_lazy("Sat")),
    ("7", gettext_lazy("Sun")),
]


class GuardSettingsForm(forms.Form):
    """The project's leak controls, as the owner sets them."""

    suspend_on_breach = forms.BooleanField(
        label=gettext_lazy("Suspend a member who keeps going past a quota"), required=False
    )
    watermark = forms.BooleanField(
        label=gettext_lazy("Faint watermark with the member's name and the time on their pages"),
        required=False,
    )
    work_starts = forms.TimeField(
        label=gettext_lazy("Working day starts"),
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    work_ends = forms.TimeField(
        label=gettext_lazy("Working day ends"),
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    work_days = forms.MultipleChoiceField(
        label=gettext_lazy("Working days"),
        choices=WEEKDAYS,
        widget=forms.CheckboxSelectMultiple,
    )
    webhook_url = forms.URLField(
        label=gettext_lazy("Alert webhook address"),
        required=False,
        max_length=500,
        assume_scheme="https",
        help_text=gettext_lazy(
            "Alerts are posted here as signed JSON. A Telegram bot's sendMessage address "
            "with ?chat_id=... works too."
        ),
    )
    background_export_rows = forms.IntegerField(
        label=gettext_lazy("Exports larger than this many rows run in the background"),
        min_value=1,
        max_value=10_000_000,
    )

    def clean_webhook_url(self) -> str:
        url: str = self.cleaned_data.get("webhook_url", "")
        if url and not url.lower().startswith(("http://", "https://")):
            raise forms.ValidationError(_("Enter an http or https address."))
        return url

    def values(self) -> dict[str, Any]:
        """The cleaned values as GuardSettings holds them."""
        data = dict(self.cleaned_data)
        data["work_days"] = "".join(sorted(data["work_days"]))
        return data


class AlertRuleForm(forms.Form):
    """One rule: on or off, its threshold and its window."""

    enabled = forms.BooleanField(label=gettext_lazy("On"), required=False)
    threshold = forms.IntegerField(label=gettext_lazy("Threshold"), min_value=1, max_value=100_000)
    window_minutes = forms.IntegerField(
        label=gettext_lazy("Within, minutes"), min_value=1, max_value=watch.MAX_WINDOW_MINUTES
    )


def _settings_initial(guard: Any) -> dict[str, Any]:
    return {
        **{name: getattr(guard, name) for name in watch.SETTINGS_FIELDS},
        "work_days": list(guard.work_days),
    }


def _rule_forms(owner: Membership, data: QueryDict | None) -> list[tuple[AlertRule, AlertRuleForm]]:
    order = {kind: i for i, kind in enumerate(AlertKind.values)}
    rules = sorted(
        AlertRule.objects.filter(project_id=owner.project_id), key=lambda r: order.get(r.kind, 99)
    )
    return [
        (
            rule,
            AlertRuleForm(
                data,
                prefix=rule.kind,
                initial={name: getattr(rule, name) for name in watch.RULE_FIELDS},
            ),
        )
        for rule in rules
    ]


@login_required
def guard_settings(request: HttpRequest, project_slug: str) -> HttpResponse:
    """The owner's leak controls and alert rules (after step-up; others get 404 before being
    asked to prove anything)."""
    owner = access_owner(request.user, project_slug)
    return _settings_page(request, owner, project_slug=project_slug)


@step_up_required
def _settings_page(request: HttpRequest, owner: Membership, *, project_slug: str) -> HttpResponse:
    guard = watch.settings_for(owner.project)
    data = request.POST if request.method == "POST" else None
    form = GuardSettingsForm(data, initial=_settings_initial(guard))
    rule_forms = _rule_forms(owner, data)
    if data is not None and form.is_valid() and all(f.is_valid() for _r, f in rule_forms):
        current: forms.Form = form
        try:
            with transaction.atomic():
                watch.do_update_guard_settings(guard, **form.values())
                for rule, rule_form in rule_forms:
                    current = rule_form
                    watch.do_update_alert_rule(rule, **rule_form.cleaned_data)
        except FieldErrors as exc:
            apply_field_errors(current, exc)
        else:
            messages.success(request, _("The leak controls were saved."))
            return redirect("guard:guard_settings", project_slug=project_slug)
    return _render_settings(request, owner, guard, form, rule_forms)


def _render_settings(
    request: HttpRequest,
    owner: Membership,
    guard: Any,
    form: GuardSettingsForm,
    rule_forms: list[tuple[AlertRule, AlertRuleForm]],
    secret: str = "",
) -> HttpResponse:
    response = render(
        request,
        "guard/guard_settings.html",
        {
            "member": owner,
            "project": owner.project,
            "settings_section": "guard",
            "form": form,
            "rule_forms": rule_forms,
            "has_secret": bool(guard.webhook_secret_sealed),
            "secret": secret,
            "signature_header": watch.SIGNATURE_HEADER,
            "timestamp_header": watch.TIMESTAMP_HEADER,
        },
    )
    if secret:
        response["Cache-Control"] = "no-store"  # the secret is shown on this response only
    return response


@login_required
@require_POST
def webhook_secret(request: HttpRequest, project_slug: str) -> HttpResponse:
    """Generate (or replace) the webhook's signing secret and show it once."""
    return _secret(request, access_owner(request.user, project_slug), project_slug=project_slug)


@step_up_required
def _secret(request: HttpRequest, owner: Membership, *, project_slug: str) -> HttpResponse:
    guard = watch.settings_for(owner.project)
    secret = watch.do_generate_webhook_secret(guard)
    guard.refresh_from_db()
    form = GuardSettingsForm(None, initial=_settings_initial(guard))
    return _render_settings(request, owner, guard, form, _rule_forms(owner, None), secret)


urlpatterns = [
    path("alerts/", alerts, name="alerts"),
    path("alerts/read/", alerts_read, name="alerts_read"),
    path("alerts/<int:notice_id>/read/", alert_read, name="alert_read"),
    path("settings/", guard_settings, name="guard_settings"),
    path("settings/webhook-secret/", webhook_secret, name="webhook_secret"),
]
