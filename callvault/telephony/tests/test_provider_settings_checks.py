"""What the provider's settings may hold: nothing that injects a line into an AMI action or a
header into the cloud callback, a callback only to https on the internet, header values that
are never shown again, and error messages in the reader's language."""

from __future__ import annotations

import ast
import time
from pathlib import Path
from typing import Any

import pytest
from django.urls import reverse

from callvault.accounts.models import Membership, Project
from callvault.accounts.stepup import SESSION_KEY
from callvault.lib.errors import FieldErrors
from callvault.orders.models import Order
from callvault.orders.tests.support import HttpsClient
from callvault.telephony import setup_actions
from callvault.telephony.models import Call, CallState, TelephonySettings
from callvault.telephony.setup_actions import do_update_telephony_settings
from callvault.telephony.tests.call_support import mine, press_call, sip_account
from callvault.telephony.tests.test_provider_ami import FakeAsterisk, ami_project, asterisk

__all__ = ["asterisk", "mine"]


def refused_fields(project: Project, values: dict[str, Any], **kwargs: Any) -> set[str]:
    with pytest.raises(FieldErrors) as refused:
        do_update_telephony_settings(project, values, **kwargs)
    return set(refused.value.errors)


# --- AMI: one line per value ---------------------------------------------------------------


@pytest.mark.parametrize(
    "values",
    [
        {"ami_username": "callvault\r\nAction: Originate"},
        {"ami_username": "callvault\n"},
        {"ami_context": "customers\n"},
        {"ami_context": "customers\r\nExten: 1"},
        {"ami_channel": "PJSIP/{extension}\n"},
        {"ami_host": "pbx.example\n"},
        {"sip_domain": "sip.example\n"},
    ],
)
def test_an_ami_or_sip_value_with_a_line_break_is_refused(
    project: Project, values: dict[str, Any]
) -> None:
    assert refused_fields(project, values) == set(values)


@pytest.mark.parametrize("secret", ["s3cret\r\nAction: Originate", "s3cret\n", "a\x00b"])
def test_a_secret_with_a_line_break_is_refused(project: Project, secret: str) -> None:
    assert refused_fields(project, {"provider": "ami"}, secret=secret) == {"secret"}
    assert not TelephonySettings.objects.filter(project=project).exclude(secret_sealed="").exists()


def test_values_stored_before_the_check_never_reach_the_manager(
    asterisk: FakeAsterisk, project: Project, operator: Membership, mine: Order
) -> None:
    ami_project(project, asterisk.port)
    TelephonySettings.objects.filter(project=project).update(
        ami_username="callvault\r\nAction: Originate"
    )
    sip_account(operator, "1001")
    press_call(operator, mine)
    assert asterisk.raw == [] and asterisk.actions == []
    assert (Call.objects.get().state, Call.objects.get().result) == (
        CallState.FAILED,
        "ami_bad_settings",
    )


# --- cloud: the headers, the address ------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "Content-Length",
        "Transfer-Encoding",
        "Connection",
        "TE",
        "Upgrade",
        "Expect",
        "Proxy-Authorization",
        "X-Callvault-Anything",
        "Content-Type",
    ],
)
def test_headers_that_frame_the_request_or_are_callvaults_are_refused(
    project: Project, name: str
) -> None:
    assert refused_fields(project, {"cloud_headers": {name: "x"}}) == {"cloud_headers"}


@pytest.mark.parametrize(
    "headers",
    [
        {"X-Key": "a\r\nHost: evil"},
        {"X-Key": "a\x00"},
        {"X-Key": ""},
        {"X-Key\n": "a"},
        {f"X-K{i}": "v" for i in range(21)},
    ],
)
def test_bad_header_names_values_and_too_many_are_refused(
    project: Project, headers: dict[str, str]
) -> None:
    assert refused_fields(project, {"cloud_headers": headers}) == {"cloud_headers"}


@pytest.mark.parametrize(
    "url",
    [
        "http://pbx.example.com/call",
        "https://169.254.169.254/latest",
        "https://127.0.0.1:8000/x",
        "https://10.0.0.5/call",
        "https://[::1]/call",
        "https://[::ffff:127.0.0.1]/call",
        "https://user:pass@pbx.example.com/call",
        "ftp://pbx.example.com/call",
    ],
)
def test_the_callback_must_be_https_on_the_internet(project: Project, url: str) -> None:
    assert refused_fields(project, {"provider": "cloud", "cloud_url": url}) == {"cloud_url"}


def test_a_listed_host_may_be_plain_http_and_private(project: Project, settings: Any) -> None:
    settings.TELEPHONY_CLOUD_HOSTS = ["10.0.0.5"]
    do_update_telephony_settings(project, {"cloud_url": "http://10.0.0.5:8080/call"})
    assert TelephonySettings.objects.get(project=project).cloud_url == "http://10.0.0.5:8080/call"


def test_a_public_https_callback_is_accepted(project: Project) -> None:
    do_update_telephony_settings(project, {"cloud_url": "https://pbx.example.com/call?key=1"})


# --- the settings page shows header names, never their values ------------------------------


def owners_page(owner: Membership) -> tuple[HttpsClient, str]:
    client = HttpsClient(HTTP_ACCEPT_LANGUAGE="en")
    client.force_login(owner.user)
    session = client.session
    session[SESSION_KEY] = time.time()
    session.save()
    return client, reverse("telephony:settings", args=[owner.project.slug])


def form(**changes: Any) -> dict[str, Any]:
    data = {
        "provider": "cloud",
        "cloud_url": "https://pbx.example.com/call",
        "token_ttl_seconds": 60,
        "ami_port": 5038,
        "ami_channel": "PJSIP/{extension}",
        "unknown_caller_name": "New caller",
        "recording_retention_days": 180,
    }
    return {**data, **changes}


def test_header_values_are_write_only(project: Project, owner: Membership) -> None:
    do_update_telephony_settings(
        project,
        {"cloud_headers": {"X-Api-Key": "key-one-secret", "X-Tenant": "tenant-secret"}},
    )
    client, url = owners_page(owner)
    shown = client.get(url)
    text = shown.content.decode()
    assert "key-one-secret" not in text and "tenant-secret" not in text
    assert shown.context["form"]["cloud_headers_text"].value() == "X-Api-Key:\nX-Tenant:"
    # Sent back as shown: kept. A new value replaces one; a line removed removes its header.
    assert client.post(url, form(cloud_headers_text="X-Api-Key:\nX-Tenant:")).status_code == 302
    assert TelephonySettings.objects.get(project=project).cloud_headers == {
        "X-Api-Key": "key-one-secret",
        "X-Tenant": "tenant-secret",
    }
    client.post(url, form(cloud_headers_text="X-Api-Key: key-two\n"))
    assert TelephonySettings.objects.get(project=project).cloud_headers == {"X-Api-Key": "key-two"}
    refused = client.post(url, form(cloud_headers_text="X-Api-Key:\nX-New:"))
    assert refused.status_code == 200 and "X-New needs a value" in refused.content.decode()


# --- messages for people go through gettext ------------------------------------------------


def _is_text(node: ast.AST | None) -> bool:
    """A string literal with words in it (not "", which means "no problem")."""
    if isinstance(node, ast.JoinedStr):
        return True
    return isinstance(node, ast.Constant) and isinstance(node.value, str) and bool(node.value)


def _bare_messages(path: Path) -> list[str]:
    """Messages for a person written as plain string literals (never translated): given to
    FieldErrors, put into an `errors` dict, or returned by a `*_problem` function."""
    found: list[ast.AST | None] = []
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = getattr(func, "attr", getattr(func, "id", ""))
            owner = getattr(getattr(func, "value", None), "id", "")
            if (owner, name) == ("FieldErrors", "one") and len(node.args) == 2:
                found += [node.args[1]]
            elif name == "FieldErrors" and node.args and isinstance(node.args[0], ast.Dict):
                found += node.args[0].values
        elif isinstance(node, ast.Assign):
            target = node.targets[0]
            if isinstance(target, ast.Subscript) and getattr(target.value, "id", "") == "errors":
                found += [node.value]
        elif isinstance(node, ast.FunctionDef) and node.name.endswith("_problem"):
            found += [ret.value for ret in ast.walk(node) if isinstance(ret, ast.Return)]
    lines = sorted(getattr(m, "lineno", 0) for m in found if _is_text(m))
    return [f"{path.name}:{line}" for line in lines]


def test_every_setup_error_is_translated() -> None:
    assert _bare_messages(Path(setup_actions.__file__)) == []


def test_the_bare_message_check_finds_them(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        'FieldErrors.one("x", "plain")\n'
        'FieldErrors.one("y", _("ok"))\n'
        'errors["z"] = f"{n} plain"\n'
        'def header_problem():\n    return "plain"\n'
        'def other_problem():\n    return ""\n'
    )
    assert _bare_messages(sample) == ["sample.py:1", "sample.py:3", "sample.py:5"]
