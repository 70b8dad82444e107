"""The monitoring pages' forms: an enrolment code for a member, the project's policy."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from callvault.accounts.models import Membership
from callvault.monitoring.actions import DEFAULT_CODE_HOURS, MAX_CODE_HOURS
from callvault.monitoring.models import MonitoringPolicy, ScreenshotFormat
from callvault.monitoring.policy import LIMITS, POLICY_FIELDS

WEEKDAYS = [
    ("1", _("Mon")),
    ("2", _("Tue")),
    ("3", _("Wed")),
    ("4", _("Thu")),
    ("5", _("Fri")),
    ("6", _("Sat")),
    ("7", _("Sun")),
]
TIME_INPUT = forms.TimeInput(attrs={"type": "time"}, format="%H:%M")


class EnrolmentCodeForm(forms.Form):
    """Whose PC the code is for, and how long it stays valid."""

    membership = forms.TypedChoiceField(label=_("Member"), coerce=int)
    hours = forms.IntegerField(
        label=_("Valid for, hours"),
        min_value=1,
        max_value=MAX_CODE_HOURS,
        initial=DEFAULT_CODE_HOURS,
    )

    def __init__(self, *args: Any, members: list[Membership], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field: Any = self.fields["membership"]
        field.choices = [(m.pk, f"{m.user} ({m.get_role_display()})") for m in members]


def _number(name: str, label: Any, **kwargs: Any) -> forms.IntegerField:
    low, high = LIMITS[name]
    return forms.IntegerField(label=label, min_value=low, max_value=high, **kwargs)


class PolicyForm(forms.Form):
    """The monitoring policy as an owner or admin sets it (the action checks it again)."""

    heartbeat_seconds = _number("heartbeat_seconds", _("Heartbeat every, seconds"))
    idle_seconds = _number(
        "idle_seconds",
        _("Idle after no keyboard or mouse input for, seconds"),
    )
    window_titles = forms.BooleanField(
        label=_("Collect the program and window title in front"), required=False
    )
    redact_patterns = forms.CharField(
        label=_("Redaction patterns"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text=_(
            "One regular expression per line. Matches in window titles are replaced with "
            "[redacted] on the operator's PC before anything is sent (and again on arrival). "
            "Phone-shaped numbers are always redacted on arrival."
        ),
    )
    screenshots_min = _number("screenshots_min", _("Screenshots per interval, at least"))
    screenshots_max = _number(
        "screenshots_max",
        _("Screenshots per interval, at most"),
        help_text=_("0 and 0: no screenshots."),
    )
    screenshot_interval_seconds = _number(
        "screenshot_interval_seconds",
        _("Screenshot interval, seconds"),
        help_text=_("600 = ten minutes."),
    )
    screenshot_scale = forms.FloatField(
        label=_("Screenshot scale"), min_value=0.1, max_value=1.0, help_text=_("0.1 to 1.")
    )
    screenshot_blur = _number(
        "screenshot_blur",
        _("Blur radius, pixels"),
        help_text=_("0: sharp. A few pixels keep the layout readable and the text not."),
    )
    screenshot_format = forms.ChoiceField(
        label=_("Screenshot format"), choices=ScreenshotFormat.choices
    )
    screenshot_quality = _number("screenshot_quality", _("Screenshot quality"))
    max_screenshot_bytes = _number("max_screenshot_bytes", _("Largest screenshot accepted, bytes"))
    retention_days = _number(
        "retention_days", _("Keep screenshots and activity (window titles) for, days")
    )
    working_hours = forms.BooleanField(label=_("Collect only during working hours"), required=False)
    work_zone = forms.CharField(
        label=_("Time zone of the working hours"),
        required=False,
        max_length=64,
        help_text=_("Empty: the project's time zone."),
    )
    work_days = forms.MultipleChoiceField(
        label=_("Working days"), choices=WEEKDAYS, widget=forms.CheckboxSelectMultiple
    )
    work_start = forms.TimeField(label=_("Working day starts"), widget=TIME_INPUT)
    work_end = forms.TimeField(label=_("Working day ends"), widget=TIME_INPUT)

    def values(self) -> dict[str, Any]:
        """The cleaned values as the policy holds them."""
        data = dict(self.cleaned_data)
        data["work_days"] = "".join(sorted(data["work_days"]))
        data["redact_patterns"] = [
            line.strip() for line in data["redact_patterns"].splitlines() if line.strip()
        ]
        return {name: data[name] for name in POLICY_FIELDS}

    @classmethod
    def initial_of(cls, policy: MonitoringPolicy) -> dict[str, Any]:
        """The form's starting values from the stored policy."""
        initial = {name: getattr(policy, name) for name in POLICY_FIELDS}
        initial["work_days"] = list(policy.work_days)
        initial["redact_patterns"] = "\n".join(policy.redact_patterns or [])
        return initial
