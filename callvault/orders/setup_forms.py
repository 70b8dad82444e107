"""Forms for the project setup pages; they parse input, the setup actions judge it."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from callvault.orders.models import QueueClass, Status, StatusGroup, WorkSettings

QUEUE_CLASS_CHOICES = [("", _("— not in the queue —")), *QueueClass.choices]


class StatusChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    """A status picker showing names translated, as everywhere else (defaults are in the
    catalogue; a project's own names pass through unchanged)."""

    def label_from_instance(self, obj: Any) -> str:
        return gettext(obj.name)


class StatusForm(forms.Form):
    """A status's editable settings."""

    name = forms.CharField(label=_("Name"), max_length=100)
    group = forms.ChoiceField(
        label=_("Group"),
        choices=StatusGroup.choices,
        help_text=_("What the status means for reports, whatever it is called."),
    )
    queue_class = forms.ChoiceField(
        label=_("Queue class"),
        choices=QUEUE_CLASS_CHOICES,
        required=False,
        help_text=_("Only processing statuses can be in the queue."),
    )
    requires_reason = forms.BooleanField(label=_("Requires a reason"), required=False)
    position = forms.IntegerField(label=_("Position"), min_value=0, max_value=32767)
    is_active = forms.BooleanField(
        label=_("Active"),
        required=False,
        help_text=_("An inactive status is not offered any more; orders that have it keep it."),
    )


class StatusCreateForm(forms.Form):
    """A new status; its code cannot change later."""

    code = forms.SlugField(
        label=_("Code"),
        max_length=40,
        help_text=_("Used by integrations and the record; cannot be changed later."),
    )
    name = forms.CharField(label=_("Name"), max_length=100)
    group = forms.ChoiceField(label=_("Group"), choices=StatusGroup.choices)
    queue_class = forms.ChoiceField(
        label=_("Queue class"),
        choices=QUEUE_CLASS_CHOICES,
        required=False,
        help_text=_("Only processing statuses can be in the queue."),
    )
    requires_reason = forms.BooleanField(label=_("Requires a reason"), required=False)


class ProductForm(forms.Form):
    """A product's editable settings."""

    name = forms.CharField(label=_("Name"), max_length=200)
    price = forms.DecimalField(label=_("Price"), max_digits=12, decimal_places=2, min_value=0)
    is_upsell = forms.BooleanField(
        label=_("Upsell"), required=False, help_text=_("Offered to the customer on the call.")
    )
    is_active = forms.BooleanField(label=_("Active"), required=False)


class ProductCreateForm(forms.Form):
    """A new product; its SKU is what lead forms and integrations post."""

    sku = forms.CharField(label=_("SKU"), max_length=64)
    name = forms.CharField(label=_("Name"), max_length=200)
    price = forms.DecimalField(label=_("Price"), max_digits=12, decimal_places=2, min_value=0)
    is_upsell = forms.BooleanField(
        label=_("Upsell"), required=False, help_text=_("Offered to the customer on the call.")
    )


PRIORITY_FIELDS = ("priority_1", "priority_2", "priority_3")


class WorkSettingsForm(forms.Form):
    """Calling hours and queue rules; the queue order as three choices, first to last."""

    calling_hours_start = forms.TimeField(
        label=_("Calls from"),
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text=_("In the customer's time zone."),
    )
    calling_hours_end = forms.TimeField(
        label=_("Calls until"),
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
        help_text=_(
            "May be earlier than the start: then the hours run over midnight (e.g. 20:00 to 02:00)."
        ),
    )
    lock_minutes = forms.IntegerField(
        label=_("An operator holds an order for, minutes"),
        min_value=1,
        max_value=240,
        help_text=_("After that an unfinished order goes back to the queue."),
    )
    priority_1 = forms.ChoiceField(label=_("Handed out first"), choices=QueueClass.choices)
    priority_2 = forms.ChoiceField(label=_("Then"), choices=QueueClass.choices)
    priority_3 = forms.ChoiceField(label=_("Last"), choices=QueueClass.choices)
    no_answer_backoff = forms.CharField(
        label=_("After no answer, call again in (minutes)"),
        max_length=200,
        help_text=_(
            "One delay per attempt, separated by commas, e.g. 15,60,240; the last repeats."
        ),
    )
    max_attempts = forms.IntegerField(
        label=_("Attempts before giving up"), min_value=1, max_value=100
    )
    status_after_max_attempts = StatusChoiceField(
        label=_("Status after the last attempt"),
        queryset=Status.objects.none(),
        required=False,
        empty_label=_("— none: keep calling —"),
        help_text=_("A status outside processing, e.g. “Unreachable”."),
    )

    def __init__(self, *args: Any, work: WorkSettings, **kwargs: Any) -> None:
        first, second, third = work.priority()
        kwargs.setdefault(
            "initial",
            {
                "calling_hours_start": work.calling_hours_start,
                "calling_hours_end": work.calling_hours_end,
                "lock_minutes": work.lock_minutes,
                "priority_1": first,
                "priority_2": second,
                "priority_3": third,
                "no_answer_backoff": work.no_answer_backoff,
                "max_attempts": work.max_attempts,
                "status_after_max_attempts": work.status_after_max_attempts_id,
            },
        )
        super().__init__(*args, **kwargs)
        field = self.fields["status_after_max_attempts"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = (
            Status.objects.filter(project_id=work.project_id, is_active=True)
            .exclude(group=StatusGroup.PROCESSING)
            .order_by("position", "id")
        )

    def values(self) -> dict[str, Any]:
        """The cleaned data as do_update_work_settings takes it."""
        data = dict(self.cleaned_data)
        data["queue_priority"] = [data.pop(name) for name in PRIORITY_FIELDS]
        return data


class ScriptForm(forms.Form):
    """The sales script operators read on the call."""

    script = forms.CharField(
        label=_("Sales script"),
        required=False,
        max_length=20000,
        widget=forms.Textarea(attrs={"rows": 24, "cols": 100}),
        help_text=_("Plain text, up to 20,000 characters."),
    )


class AuditRetentionForm(forms.Form):
    """How long the project's audit events stay in the database."""

    keep_days = forms.IntegerField(
        label=_("Keep audit events (days)"),
        min_value=0,
        max_value=36500,
        help_text=_(
            "0 keeps them forever; older events move to a signed archive file and leave the "
            "database."
        ),
    )
