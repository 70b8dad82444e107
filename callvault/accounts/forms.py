"""Forms for account pages: API keys, members."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from django import forms
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.utils.translation import gettext_lazy as _

from callvault.accounts.models import CAPABILITIES, Role
from callvault.lib.errors import FieldErrors


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
    can_read_audit = forms.BooleanField(label=_("May read the audit trail"), required=False)

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if not any(
            data.get(f)
            for f in (
                "can_create_leads",
                "can_read_orders",
                "can_update_orders",
                "can_read_audit",
            )
        ):
            raise forms.ValidationError(_("A key must be allowed to do something."))
        return data


# Action error names that speak about the whole request rather than one input.
NON_FIELD_NAMES = frozenset({"member", "__all__"})


def apply_field_errors(
    form: forms.BaseForm, exc: FieldErrors, aliases: Mapping[str, str] | None = None
) -> None:
    """Show an action's field errors on the form: on the field of that name (or its alias),
    else above the form with the field's name."""
    for name, message in exc.errors.items():
        field = (aliases or {}).get(name, name)
        if field in form.fields:
            form.add_error(field, message)
        else:
            form.add_error(None, message if name in NON_FIELD_NAMES else f"{name}: {message}")


def limit_roles(form: forms.BaseForm, allowed: Callable[[str], bool]) -> None:
    """Offer only the roles the acting member may give (the action checks it again)."""
    field = form.fields["role"]
    assert isinstance(field, forms.ChoiceField)
    field.choices = [(value, label) for value, label in Role.choices if allowed(value)]


class MemberCreateForm(forms.Form):
    """A new person joining the project; the password is generated, not typed."""

    username = forms.CharField(
        label=_("Username"),
        max_length=150,
        validators=[UnicodeUsernameValidator()],
        help_text=_("Letters, digits and @/./+/-/_ only."),
    )
    first_name = forms.CharField(label=_("First name"), max_length=150, required=False)
    last_name = forms.CharField(label=_("Last name"), max_length=150, required=False)
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.OPERATOR)


class MemberAddExistingForm(forms.Form):
    """Someone who already has a login (in another project) joins this one."""

    username = forms.CharField(label=_("Username"), max_length=150)
    role = forms.ChoiceField(label=_("Role"), choices=Role.choices, initial=Role.OPERATOR)


class MemberRoleForm(forms.Form):
    """A new role; the capability flags are reset to its preset."""

    role = forms.ChoiceField(label=_("Role"), choices=Role.choices)


class MemberCapabilitiesForm(forms.Form):
    """One checkbox per capability flag."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name, label in CAPABILITIES.items():
            self.fields[name] = forms.BooleanField(label=label, required=False)
