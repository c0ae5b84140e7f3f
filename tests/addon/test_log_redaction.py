"""mitm/log_redaction.py: every log record loses its secrets, whoever logs it."""

from __future__ import annotations

import logging

import pytest
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons

from antigravity_gw.mitm import log_redaction
from antigravity_gw.mitm.auth import Auth
from antigravity_gw.mitm.gateway import Gateway
from antigravity_gw.mitm.log_redaction import LogRedactor, redact_secrets

KEY = "sk-gw-0123456789abcdef"


@pytest.mark.parametrize(("line", "kept"), [
    (f"b'POST /v1/chat/completions HTTP/1.1\\r\\nAuthorization: Bearer {KEY}\\r\\nHost: x\\r\\n'",
     "Authorization: Bearer [redacted]\\r\\nHost: x"),
    ("b'GET / HTTP/1.1\\r\\nproxy-authorization: Basic dXNlcjpzZWNyZXQ=\\r\\n'",
     "proxy-authorization: Basic [redacted]"),
    (f"{{'x-api-key': '{KEY}', 'accept': '*/*'}}", "'x-api-key': '[redacted]', 'accept'"),
    ("x-goog-api-key: AIzaSyD-0123456789abcdefghijklmnopqrstu", "x-goog-api-key: [redacted]"),
    ("Cookie: session=abc123; theme=dark", "Cookie: [redacted]"),
    (f"GET /v1beta/models?key={KEY}&alt=sse", "?key=[redacted]&alt=sse"),
    ("POST https://oauth2.googleapis.com/token?refresh_token=1//0gABCDEFGHIJKLMN",
     "?refresh_token=[redacted]"),
    ('{"access_token": "ya29.a0AfB_byC-secret", "expires_in": 3599}',
     '{"access_token": "[redacted]", "expires_in"'),
    ("token ya29.a0AfB_byC-secret.more in a message", "token [redacted] in a message"),
    ("refresh with 1//0gABCDEFGHIJKLMNOP failed", "refresh with [redacted] failed"),
    ("key AIzaSyD-0123456789abcdefghijklmnopqrstu rejected", "key [redacted] rejected"),
    (f"the configured key {KEY} itself", "the configured key [redacted] itself"),
])
def test_redact_secrets(line: str, kept: str) -> None:
    clean = redact_secrets(line, [KEY])
    assert kept in clean
    for secret in (KEY, "ya29.a0AfB", "1//0gABCDEFGHIJKLMN", "AIzaSyD-0123", "dXNlcjpzZWNyZXQ=", "abc123"):
        assert secret not in clean


@pytest.mark.parametrize("line", ["127.0.0.1:5000: POST http://127.0.0.1:9/v1/chat/completions << 200 OK",
                                  "accounts: added me@gmail.com", "listening at 127.0.0.1:8045"])
def test_ordinary_lines_are_unchanged(line: str) -> None:
    assert redact_secrets(line, [KEY, ""]) == line


def test_an_access_line_costs_substring_tests_not_the_four_regex_passes(monkeypatch) -> None:
    """Its "tokens=12/34" once matched the "token" trigger and ran every pattern on every request."""
    class Forbidden:
        def sub(self, *args: object) -> str:
            raise AssertionError("a regex pass ran on a line with nothing to redact")
    for name in ("_HEADER", "_QUERY", "_JSON_FIELD", "_GOOGLE"):
        monkeypatch.setattr(log_redaction, name, Forbidden())
    line = ("POST /v1/chat/completions gpt-4o → gemini-2.5-flash key=team-a account=me@gmail.com status=200 "
            "attempts=1 tokens=12/34 first=250ms total=1500ms")
    assert redact_secrets(line, [KEY]) == line


@pytest.mark.parametrize("line", ['{"id_token": "eyJhbGciOi.secret"}', "{'client_secret': 'GOCSPX-abcdef'}",
                                  "POST /x?token=opaque-secret-value", "POST /x?api_key=opaque-secret-value"])
def test_every_pattern_still_has_a_trigger(line: str) -> None:
    assert "secret" not in redact_secrets(line).split("[redacted]")[-1]
    assert "[redacted]" in redact_secrets(line)


def test_literals_set_after_install_are_redacted_and_dropped_when_changed(caplog) -> None:
    redactor = LogRedactor()
    redactor.install()
    try:
        redactor.literals = ("late-secret-1",)
        with caplog.at_level(logging.INFO):
            logging.getLogger("x").info("late-secret-1")
        redactor.literals = ("late-secret-2",)
        with caplog.at_level(logging.INFO):
            logging.getLogger("x").info("late-secret-1 late-secret-2")
    finally:
        redactor.uninstall()
    assert [r.getMessage() for r in caplog.records] == ["[redacted]", "late-secret-1 [redacted]"]


def test_the_factory_redacts_every_logger_and_uninstalls_cleanly(caplog) -> None:
    before = logging.getLogRecordFactory()
    redactor = LogRedactor()
    redactor.literals = (KEY,)
    redactor.install()
    redactor.install()  # idempotent
    try:
        with caplog.at_level(logging.INFO):
            raw = f"Authorization: Bearer {KEY}".encode()
            logging.getLogger("mitmproxy.proxy.server").info("headers: %r", raw)
            logging.getLogger("some.library").warning("raw %s", KEY)
            try:
                raise ValueError(f"bad header {KEY}")
            except ValueError:
                logging.getLogger("x").exception("failed")
        assert KEY not in caplog.text
        assert caplog.text.count("[redacted]") == 3
    finally:
        redactor.uninstall()
    assert logging.getLogRecordFactory() is before or before is log_redaction._make_record


def test_many_redactors_share_one_factory_and_the_last_uninstall_removes_it(caplog) -> None:
    before = logging.getLogRecordFactory()
    first, second = LogRedactor(), LogRedactor()
    first.literals, second.literals = ("first-secret",), ("second-secret",)
    first.install()
    second.install()
    factory = logging.getLogRecordFactory()
    first.uninstall()
    assert logging.getLogRecordFactory() is factory  # second still needs it
    try:
        with caplog.at_level(logging.INFO):
            logging.getLogger("x").info("first-secret second-secret")
        assert "first-secret [redacted]" in caplog.text  # first's secrets left with it
    finally:
        second.uninstall()
    if before is not log_redaction._make_record:  # no leaked redactor from another test keeps it
        assert logging.getLogRecordFactory() is before


def test_auth_installs_it_with_the_configured_secrets() -> None:
    auth, gateway = Auth(), Gateway()
    with taddons.context(Proxyserver(), auth, gateway) as tctx:  # proxyserver declares connection_strategy
        tctx.configure(auth, ag_api_key=KEY, ag_auth_mode="strict")
        tctx.configure(gateway, ag_oauth_client_secret="GOCSPX-client-secret")
        literals = {literal for redactor in log_redaction._active for literal in redactor.literals}
        assert {KEY, "GOCSPX-client-secret"} <= literals  # the secrets, not mitmweb's placeholders
        assert logging.getLogRecordFactory() is log_redaction._make_record
        auth.done()
    assert auth.log_redactor not in log_redaction._active
    assert KEY not in {literal for redactor in log_redaction._active for literal in redactor.literals}


def test_a_secret_too_short_to_search_for_leaves_ordinary_words_alone() -> None:
    assert log_redaction.redact_secrets("refused a connection", ["s"]) == "refused a connection"
    assert log_redaction.redact_secrets("key sk-gw-0123 here", ["sk-gw-0123"]) == "key [redacted] here"


def test_mitmweb_login_url_line_keeps_its_token_and_nothing_else_does(caplog) -> None:
    redactor = LogRedactor()
    redactor.install()
    try:
        with caplog.at_level(logging.INFO):
            logging.getLogger("mitmproxy.tools.web.master").info(
                "Web server listening at http://127.0.0.1:8081/?token=abc123")
            logging.getLogger("mitmproxy.tools.web.master").info("GET /x?token=abc123")
            logging.getLogger("other").info("Web server listening at http://127.0.0.1:8081/?token=abc123")
    finally:
        redactor.uninstall()
    assert [r.getMessage().endswith("abc123") for r in caplog.records] == [True, False, False]
