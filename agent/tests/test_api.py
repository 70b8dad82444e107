"""The HTTP client: what goes on the wire, and how 'no answer' differs from an error answer."""

from __future__ import annotations

import socket

import pytest

from callvault_agent import __version__
from callvault_agent.api import Client, Unreachable, check_server_url
from scripted import Answer, Script, scripted_server


def test_heartbeats_go_as_json_with_the_bearer_token() -> None:
    script = Script()
    with scripted_server(script) as url:
        reply = Client(url, "cvd_abc").heartbeats([{"seq": 1, "state": "active"}])
    assert reply.status == 200 and reply.body == {"accepted": 1, "last_seq": 1}
    assert reply.policy_version == 1
    sent = script.sent("/agent/v1/heartbeats")[0]
    assert sent.headers["Authorization"] == "Bearer cvd_abc"
    assert sent.headers["Content-Type"] == "application/json"
    assert sent.headers["User-Agent"] == f"callvault-agent/{__version__}"
    assert sent.json() == {"heartbeats": [{"seq": 1, "state": "active"}]}


def test_enrolment_sends_no_token_and_names_the_platform() -> None:
    script = Script()
    with scripted_server(script) as url:
        reply = Client(url, "cvd_old").enrol("CODE-1", "pc-7", "linux-x11")
    assert reply.status == 201
    sent = script.sent("/agent/v1/enrol")[0]
    assert "Authorization" not in sent.headers
    assert sent.json() == {
        "code": "CODE-1",
        "hostname": "pc-7",
        "platform": "linux-x11",
        "agent_version": __version__,
    }


def test_an_error_answer_is_a_reply_with_its_detail_and_retry_after() -> None:
    script = Script()
    script.then("/agent/v1/policy", Answer(429, {"detail": "slow down"}, {"Retry-After": "60"}))
    with scripted_server(script) as url:
        reply = Client(url, "cvd_abc").policy()
    assert (reply.status, reply.detail(), reply.retry_after) == (429, "slow down", 60.0)


def test_a_refused_connection_is_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(Unreachable):
        Client(f"http://127.0.0.1:{port}", "cvd_abc", timeout=2).policy()


def test_a_dropped_connection_is_unreachable() -> None:
    script = Script()
    script.then("/agent/v1/policy", Answer(None))
    with scripted_server(script) as url, pytest.raises(Unreachable):
        Client(url, "cvd_abc").policy()


def test_a_server_that_never_answers_times_out_as_unreachable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)  # accepts the connection, never answers
        port = sock.getsockname()[1]
        with pytest.raises(Unreachable):
            Client(f"http://127.0.0.1:{port}", "cvd_abc", timeout=0.5).policy()


def test_plain_http_only_to_this_machine() -> None:
    assert check_server_url("http://127.0.0.1:8000/") == "http://127.0.0.1:8000"
    assert check_server_url("https://crm.example/") == "https://crm.example"
    with pytest.raises(ValueError, match="https"):
        check_server_url("http://crm.example")
    assert check_server_url("http://crm.example", allow_http=True) == "http://crm.example"
    with pytest.raises(ValueError, match="not an http"):
        check_server_url("ftp://crm.example")


def test_the_client_never_shows_its_token() -> None:
    client = Client("https://crm.example", "cvd_secret_value")
    assert "cvd_secret_value" not in repr(client)
    assert "cvd_secret_value" not in str(vars(client).get("server"))


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_answered_not_followed_so_the_token_stays_with_its_server(
    status: int,
) -> None:
    # Regression (security review): urllib's default handler resent Authorization to any host.
    elsewhere = Script()
    with scripted_server(elsewhere) as other:
        script = Script()
        to = {"Location": f"{other}/agent/v1/policy"}
        script.then("/agent/v1/policy", Answer(status, None, to))
        script.then("/agent/v1/heartbeats", Answer(status, None, to))
        with scripted_server(script) as url:
            client = Client(url, "cvd_secret")
            policy = client.policy()
            beats = client.heartbeats([{"seq": 1, "state": "active"}])
    assert elsewhere.received == []  # nothing, and no token, went anywhere else
    for reply in (policy, beats):
        assert reply.status == status and reply.is_redirect
        assert "redirects are not followed" in reply.detail()
        assert other in reply.detail()


def test_accept_language_comes_from_the_os_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("LANG", "ru_RU.UTF-8")
    script = Script()
    with scripted_server(script) as url:
        Client(url, "cvd_abc").policy()
        monkeypatch.setenv("LANG", "C.UTF-8")
        Client(url, "cvd_abc").policy()
    first, second = script.sent("/agent/v1/policy")
    assert first.headers["Accept-Language"] == "ru-RU, ru;q=0.9"
    assert "Accept-Language" not in second.headers  # the C locale names no language
