"""Forms for account pages."""

from __future__ import annotations

from django import forms
from django.utils.translation import gettext_lazy as _


class ApiKeyForm(forms.Form):
    """A new API key: a name and what it may do."""

    name = forms.CharField(
        label=_("Name"),
        max_length=100,
        help_text=_("Where the key is used, e.g. “Landing slim-tea”."),
    )
    can_create_leads = forms.BooleanField(label=_("May post leads"), required=False, initial=True)
    can_read_orders = forms.BooleanField(label=_("May read orders"), required=False)
    can_update_orders = forms.BooleanField(label=_("May change order statuses"), required=False)

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if not any(
            data.get(f) for f in ("can_create_leads", "can_read_orders", "can_update_orders")
        ):
            raise forms.ValidationError(_("A key must be allowed to do something."))
        return data
