"""``scripts/ag accounts login`` end to end against the emulator's OAuth endpoints; the test is the browser.

It reads the authorization URL the CLI prints, GETs it from the emulator (which answers as Google does
after consent: a redirect with code and state), follows that redirect to the CLI's loopback listener,
and then checks the account file and that a real gateway serves with it.
"""

from __future__ import annotations

import os
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import openai
import orjson
import pytest

from support.gateway import ROOT

pytestmark = pytest.mark.e2e

AG = ROOT / "scripts" / "ag"
CLIENT_ID, CLIENT_SECRET = "test-client-id", "test-client-secret"


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the test follows the redirect itself, as a browser would


BROWSER = urllib.request.build_opener(NoRedirect, urllib.request.ProxyHandler({}))


def visit(url: str) -> tuple[int, str, str]:
    """(status, Location, body) of one GET without following redirects."""
    try:
        with BROWSER.open(url, timeout=15) as resp:
            return resp.status, resp.headers.get("location", ""), resp.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("location", ""), e.read().decode()


def start_login(emulator, directory: Path, *extra: str) -> tuple[subprocess.Popen, str]:
    """Run the login; return the process and the authorization URL it printed on a line of its own."""
    sets = {"ag_oauth_auth_url": emulator.oauth_auth_url, "ag_oauth_token_url": emulator.oauth_token_url,
            "ag_oauth_userinfo_url": emulator.oauth_userinfo_url, "ag_oauth_client_id": CLIENT_ID,
            "ag_oauth_client_secret": "env:AG_TEST_OAUTH_SECRET"}
    args = [str(AG), "accounts", "login", "--no-browser", "--dir", str(directory), "--timeout", "30"]
    for name, value in sets.items():
        args += ["--set", f"{name}={value}"]
    for base in emulator.cloudcode_bases:
        args += ["--set", f"ag_cloudcode_urls={base}"]
    env = {**os.environ, "AG_TEST_OAUTH_SECRET": CLIENT_SECRET, "NO_PROXY": "*"}
    proc = subprocess.Popen([*args, *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    lines: list[str] = []
    timer = threading.Timer(30, proc.kill)  # a CLI that never prints the URL must not hang the suite
    timer.start()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(emulator.oauth_auth_url):
                return proc, line.strip()
    finally:
        timer.cancel()
    raise AssertionError(f"no authorization URL printed: {lines} {proc.stderr.read() if proc.stderr else ''}")


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


@pytest.fixture
def oauth_emulator(emulator):
    emulator.configure(oauth={"client_id": CLIENT_ID, "client_secret": CLIENT_SECRET,
                              "login_email": "new-user@example.com"}, onboarding=True)
    return emulator


def test_a_full_login_writes_an_account_the_gateway_serves_with(oauth_emulator, start_gateway, tmp_path):
    emulator, directory = oauth_emulator, tmp_path / "accounts"
    proc, url = start_login(emulator, directory)
    assert "code_challenge_method=S256" in url and "access_type=offline" in url and "state=" in url
    assert CLIENT_SECRET not in url

    status, location, _ = visit(url)  # the consent screen, already clicked through
    assert status == 302 and location.startswith("http://127.0.0.1:") and "code=" in location
    status, _, page = visit(location)  # the browser comes back to the CLI's loopback listener
    assert status == 200 and "Signed in" in page

    code, out, err = finish(proc)
    assert code == 0, err
    assert "added new-user@example.com" in out and CLIENT_SECRET not in out + err
    [path] = directory.glob("*.json")
    saved = orjson.loads(path.read_bytes())
    token = saved["token"]
    assert saved["email"] == "new-user@example.com"
    assert token["refresh_token"].startswith("1//emu-login-")
    assert token["access_token"].startswith("ya29.emu-")
    assert token["project_id"].startswith("emu-onboarded-")  # loadCodeAssist had none: onboardUser made it
    assert [r["rpc"] for r in emulator.requests() if r["endpoint"] == "cloudcode"] == ["loadCodeAssist",
                                                                                      "onboardUser"]
    exchange = [r for r in emulator.requests(rpc="token")][-1]["body"]
    assert exchange["grant_type"] == "authorization_code" and len(exchange["code_verifier"]) >= 43

    gw = start_gateway(accounts={}, accounts_dir=directory)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)
    raw = client.chat.completions.with_raw_response.create(
        model="gemini-2.5-flash", messages=[{"role": "user", "content": "hello"}])
    assert raw.parse().choices[0].message.content == "echo: hello"
    assert raw.headers["x-account-email"] == "new-user@example.com"
    sent = emulator.requests(rpc="generateContent")[-1]
    assert sent["credential"] == token["access_token"] and sent["body"]["project"] == token["project_id"]

    emulator.configure(expired_tokens=[token["access_token"]])  # and the new refresh token refreshes it
    again = client.chat.completions.create(model="gemini-2.5-flash",
                                           messages=[{"role": "user", "content": "again"}])
    assert again.choices[0].message.content == "echo: again"
    assert emulator.requests(rpc="token")[-1]["body"]["refresh_token"] == token["refresh_token"]


def test_signing_in_again_renews_the_same_account(oauth_emulator, tmp_path):
    directory = tmp_path / "accounts"
    for _ in range(2):
        proc, url = start_login(oauth_emulator, directory)
        visit(visit(url)[1])
        code, out, err = finish(proc)
        assert code == 0, err
    assert "updated new-user@example.com" in out
    assert len(list(directory.glob("*.json"))) == 1


def test_a_denied_consent_ends_the_login_with_the_reason(oauth_emulator, tmp_path):
    oauth_emulator.configure(oauth={"login_error": "access_denied"})
    proc, url = start_login(oauth_emulator, tmp_path / "accounts")
    status, location, _ = visit(url)
    assert status == 302 and "error=access_denied" in location
    assert visit(location)[0] == 400
    code, _, err = finish(proc)
    assert code == 1 and "access_denied" in err
    assert not (tmp_path / "accounts").exists() or not list((tmp_path / "accounts").glob("*.json"))


def test_a_redirect_with_another_state_is_refused_and_the_login_keeps_waiting(oauth_emulator, tmp_path):
    proc, url = start_login(oauth_emulator, tmp_path / "accounts")
    location = visit(url)[1]
    forged = location.replace("state=", "state=forged")
    assert visit(forged)[0] == 400
    assert proc.poll() is None
    assert visit(location)[0] == 200
    assert finish(proc)[0] == 0


def test_login_without_an_oauth_client_says_what_to_set(tmp_path):
    result = subprocess.run([str(AG), "accounts", "login", "--no-browser", "--dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "ag_oauth_client_id" in result.stderr and "ag_oauth_client_secret" in result.stderr
