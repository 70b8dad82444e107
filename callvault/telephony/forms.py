"""Forms of the telephony settings pages; the actions check every value again."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from callvault.accounts.models import Membership
from callvault.telephony.models import ProviderKind, TelephonySettings
from callvault.telephony.setup_actions import ROUTING_FIELDS, SETTINGS_FIELDS


class TelephonySettingsForm(forms.ModelForm):  # type: ignore[type-arg]
    """The provider and its settings, inbound calls and recordings.

    The extra headers' values are write-only (they may be API keys): the field shows each
    stored header as "Name:", and a name left without a value keeps its stored value. For a
    member who may not decide where calls go (`may_route` False) the provider's fields are
    shown disabled and their stored values kept."""

    cloud_url = forms.URLField(
        label=gettext_lazy("Callback URL"), required=False, max_length=500, assume_scheme="https"
    )
    cloud_headers_text = forms.CharField(
        label=gettext_lazy("Extra headers (one “Name: value” per line)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=gettext_lazy(
            "Stored values are not shown: a “Name:” line without a value keeps the stored "
            "one; remove the line to remove the header."
        ),
    )
    secret = forms.CharField(
        label=gettext_lazy("The provider's secret (AMI secret, or the cloud signing secret)"),
        required=False,
        max_length=500,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=gettext_lazy("Leave empty to keep the current one."),
    )
    clear_secret = forms.BooleanField(
        label=gettext_lazy("Remove the stored secret"), required=False
    )

    class Meta:
        model = TelephonySettings
        fields = [name for name in SETTINGS_FIELDS if name != "cloud_headers"]
        widgets = {
            "cloud_body_template": forms.Textarea(attrs={"rows": 3}),
            "review_checklist": forms.Textarea(attrs={"rows": 4}),
        }

    def __init__(self, *args: Any, may_route: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stored_headers: dict[str, str] = dict(self.instance.cloud_headers or {})
        # Sorted: PostgreSQL's jsonb keeps no order of keys.
        self.fields["cloud_headers_text"].initial = "\n".join(
            f"{name}:" for name in sorted(self.stored_headers)
        )
        provider: Any = self.fields["provider"]
        provider.choices = ProviderKind.choices
        if not may_route:
            for name in (*ROUTING_FIELDS, "cloud_headers_text", "secret", "clear_secret"):
                if name in self.fields:
                    self.fields[name].disabled = True

    def clean_cloud_headers_text(self) -> dict[str, str]:
        headers: dict[str, str] = {}
        for line in self.cleaned_data.get("cloud_headers_text", "").splitlines():
            if not line.strip():
                continue
            name, colon, value = line.partition(":")
            name, value = name.strip(), value.strip()
            if not colon or not name:
                raise forms.ValidationError(_("Write each header as “Name: value”."))
            if not value:
                if name not in self.stored_headers:
                    raise forms.ValidationError(
                        _("The header %(name)s needs a value.") % {"name": name}
                    )
                value = self.stored_headers[name]  # kept: values are never shown
            headers[name] = value
        return headers

    def values(self) -> dict[str, Any]:
        """The settings as the action takes them."""
        data = {name: self.cleaned_data[name] for name in self.Meta.fields}
        data["cloud_headers"] = self.cleaned_data["cloud_headers_text"]
        return data

    def new_secret(self) -> str | None:
        """None keeps the secret, "" removes it, a value replaces it."""
        if self.fields["secret"].disabled:
            return None
        if self.cleaned_data.get("secret"):
            return str(self.cleaned_data["secret"])
        return "" if self.cleaned_data.get("clear_secret") else None

    def _post_clean(self) -> None:
        # The action saves: the form only checks the fields (ModelForm would validate the
        # instance, and its unique checks, here).
        return None


class PbxForm(forms.Form):
    """A new PBX: its name and where it may call from."""

    name = forms.CharField(label=gettext_lazy("Name"), max_length=100)
    networks = forms.CharField(
        label=gettext_lazy("Allowed addresses (CIDR, one per line; at least one)"),
        widget=forms.Textarea(attrs={"rows": 2}),
    )


class SipAccountForm(forms.Form):
    """A SIP account for a member: the extension (the password is generated)."""

    membership = forms.ModelChoiceField(
        label=gettext_lazy("Member"), queryset=Membership.objects.none()
    )
    username = forms.RegexField(
        label=gettext_lazy("SIP user (extension, 2 to 6 digits)"),
        regex=r"^[0-9]{2,6}$",
        max_length=6,
    )

    def __init__(self, *args: Any, members: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field: Any = self.fields["membership"]
        field.queryset = members
        field.label_from_instance = lambda m: f"{m.user.get_username()} ({m.get_role_display()})"
