"""Forms of the operator workspace: every input is checked here before an action sees it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

from django import forms
from django.utils import timezone
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from callvault.accounts.models import Membership
from callvault.lib.errors import FieldErrors
from callvault.orders.models import Order, Product, Status, visible_statuses
from callvault.orders.queue import MAX_CALLBACK_DAYS
from callvault.vault.logfilter import redact

STALE_MESSAGE = _("Someone else changed this order; reload it.")

# What to do after the call's outcome is saved: back to My orders, or straight to the next one.
THEN_CHOICES = [("mine", _("Save")), ("next", _("Save and next"))]


def add_action_errors(form: forms.Form, exc: FieldErrors) -> None:
    """Put an action's field errors on the form (a field the form lacks goes on top)."""
    for name, message in exc.errors.items():
        if name in form.fields:
            form.add_error(name, message)
        else:
            form.add_error(None, f"{name}: {message}")


class WorkspaceForm(forms.Form):
    """A form of the card: the card shows several, so each names its HTML ids apart."""

    id_prefix = "id"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("auto_id", f"{self.id_prefix}_%s")
        super().__init__(*args, **kwargs)


class VersionedForm(WorkspaceForm):
    """A form that edits the order as the operator saw it: the version they loaded."""

    version = forms.IntegerField(label=_("Version"), min_value=1, widget=forms.HiddenInput)


class OutcomeForm(VersionedForm):
    """The end of a call: afterwards the operator goes to My orders or to the next order."""

    then = forms.ChoiceField(label=_("Then"), choices=THEN_CHOICES, required=False)

    def wants_next(self) -> bool:
        """Whether the operator pressed "Save and next"."""
        return bool(self.cleaned_data.get("then") == "next")


class OrderDetailsForm(VersionedForm):
    """The customer's name and address.

    A member who may not see phone numbers gets the fields with phone-shaped runs blanked (a
    customer may have typed the number into either); a field they leave as shown is not
    saved, so the stored text keeps what they could not see.
    """

    id_prefix = "details"

    customer_name = forms.CharField(label=_("Customer name"), max_length=200, required=False)
    address = forms.CharField(
        label=_("Address"),
        max_length=1000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, order: Order, member: Membership, *args: Any, **kwargs: Any) -> None:
        hide = not member.can_see_phones
        self.shown = {
            "customer_name": redact(order.customer_name) if hide else order.customer_name,
            "address": _one_newline(redact(order.address) if hide else order.address),
        }
        initial = {**self.shown, "version": order.version}
        super().__init__(*args, initial=initial, **kwargs)

    def clean_address(self) -> str:
        return _one_newline(self.cleaned_data["address"])

    def changes(self) -> dict[str, str]:
        """The fields the member actually changed."""
        return {
            name: self.cleaned_data[name]
            for name, shown in self.shown.items()
            if self.cleaned_data[name] != shown.strip()
        }


def _one_newline(text: str) -> str:
    # Browsers send a textarea's line breaks as CRLF: an untouched address must compare equal.
    return text.replace("\r\n", "\n")


class ProductChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    """Products by name and price, as the operator offers them."""

    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name}, {obj.price}"


class StatusChoiceField(forms.ModelChoiceField):  # type: ignore[type-arg]
    """Statuses by their translated name (the defaults ship in both languages)."""

    def label_from_instance(self, obj: Any) -> str:
        return gettext(obj.name)


class AddItemForm(WorkspaceForm):
    """A product to add while on the call: upsell products first, any active one allowed."""

    id_prefix = "add_item"

    # No product is preselected: adding the wrong one to a customer's order by a stray
    # click costs more than one choice; the prompt says what to do.
    product = ProductChoiceField(
        label=_("Product"), queryset=Product.objects.none(), empty_label=_("Choose a product")
    )
    quantity = forms.IntegerField(label=_("Quantity"), min_value=1, max_value=1000, initial=1)

    def __init__(self, order: Order, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["product"]
        assert isinstance(field, forms.ModelChoiceField)
        # Another project's product id is "not one of the choices", like any unknown id.
        field.queryset = Product.objects.filter(
            project_id=order.project_id, is_active=True
        ).order_by("-is_upsell", "name")


class ItemQuantityForm(WorkspaceForm):
    """A new quantity for one product line."""

    id_prefix = "quantity"

    quantity = forms.IntegerField(label=_("Quantity"), min_value=1, max_value=1000)

    def __init__(self, *args: Any, item_id: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.item_id = item_id


class StatusForm(OutcomeForm):
    """A new status from the project's active ones; some need a reason."""

    id_prefix = "status"

    status = StatusChoiceField(label=_("Status"), queryset=Status.objects.none())
    reason = forms.CharField(
        label=_("Reason"),
        max_length=1000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, order: Order, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"version": order.version, "status": order.status_id})
        super().__init__(*args, **kwargs)
        self.order = order
        field = self.fields["status"]
        assert isinstance(field, forms.ModelChoiceField)
        field.queryset = visible_statuses(order.project)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        status: Status | None = data.get("status")
        if status is None:
            return data
        if status.pk == self.order.status_id:
            # Saving the same status would change nothing and keep the order locked.
            self.add_error("status", _("The order already has this status; choose another."))
        elif status.requires_reason and not data.get("reason", "").strip():
            self.add_error(
                "reason", _("A reason is required for the status “%s”.") % gettext(status.name)
            )
        return data


class CallbackForm(OutcomeForm):
    """When to call the customer back, as the customer says it: in the customer's time zone."""

    id_prefix = "callback"

    when = forms.DateTimeField(
        label=_("Call back at"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )

    def __init__(self, order: Order, zone: tzinfo, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {"version": order.version})
        super().__init__(*args, **kwargs)
        self.zone = zone

    def full_clean(self) -> None:
        # Django reads a date-time in the active time zone and refuses one that a clock change
        # makes ambiguous or skips; the customer's zone is the one that counts here.
        with timezone.override(self.zone):
            super().full_clean()

    def clean_when(self) -> datetime:
        when: datetime = self.cleaned_data["when"]
        now = timezone.now()
        if when <= now:
            raise forms.ValidationError(_("The callback time must be in the future."))
        if when > now + timedelta(days=MAX_CALLBACK_DAYS):
            raise forms.ValidationError(
                _("At most %(days)d days ahead.") % {"days": MAX_CALLBACK_DAYS}
            )
        return when.astimezone(UTC)  # one clock in the record, whatever the customer's


class NoAnswerForm(OutcomeForm):
    """The customer did not answer: only the version and where to go next."""

    id_prefix = "no_answer"


class CommentForm(WorkspaceForm):
    """A note on the order."""

    id_prefix = "comment"

    text = forms.CharField(
        label=_("Comment"), max_length=4000, widget=forms.Textarea(attrs={"rows": 2})
    )
