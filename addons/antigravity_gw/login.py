"""``accounts login``: sign a Google account in the way Antigravity does, and write its account file.

OAuth 2.0 authorization-code flow for an installed app (RFC 8252) with PKCE (RFC 7636, S256):
1. a loopback listener on ``127.0.0.1:<free port>`` is the redirect URI;
2. the authorization URL (``ag_oauth_auth_url``) is printed on a line of its own (and opened in a
   browser unless ``--no-browser``); ``state`` ties the answer to this attempt;
3. the browser comes back to the listener with ``code`` (or ``error``); the code is exchanged at
   ``ag_oauth_token_url`` together with the PKCE verifier;
4. the email comes from ``ag_oauth_userinfo_url``; the Cloud Code project from ``loadCodeAssist``
   (``onboardUser`` first when the account has none yet);
5. the account file is written atomically (a known email gets the new grant, keeping its id).

Nothing secret is printed: the URL carries only the client id, the challenge and the state.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import secrets
import time
import webbrowser
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import urlencode

import aiohttp
import orjson
from aiohttp import web

from .settings import Settings
from .upstream.oauth import LOAD_CODE_ASSIST_BODY, project_from_load_code_assist

# The scopes Antigravity asks for (REF §2.4): Cloud Code needs cloud-platform; the email comes from userinfo.
SCOPES = (
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
    "openid",
    "https://www.googleapis.com/auth/cclog",
    "https://www.googleapis.com/auth/experimentsandconfigs",
)
CALLBACK_PATH = "/oauth-callback"
ONBOARD_POLLS = 10  # onboardUser is a long-running operation: ask this many times, a second apart
CALL_TIMEOUT = 30.0
DONE_PAGE = ("<!doctype html><title>Signed in</title><p>Signed in to antigravity-gateway. You can close "
             "this tab and go back to the terminal.</p>")


class LoginFailed(Exception):
    """Something the user can act on; the message says what (never a token)."""


@dataclass(frozen=True, slots=True)
class Pkce:
    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)  # 64 characters of [A-Za-z0-9_-], within RFC 7636's 43..128
        digest = hashlib.sha256(verifier.encode("ascii")).digest()
        return cls(verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii"))


@dataclass(frozen=True, slots=True)
class SignedIn:
    email: str
    refresh_token: str
    access_token: str
    expiry_timestamp: float
    project_id: str


def authorization_url(settings: Settings, redirect_uri: str, state: str, pkce: Pkce) -> str:
    query = {"client_id": settings.oauth_client_id, "redirect_uri": redirect_uri, "response_type": "code",
             "scope": " ".join(SCOPES), "access_type": "offline", "prompt": "consent",
             "include_granted_scopes": "true", "state": state, "code_challenge": pkce.challenge,
             "code_challenge_method": "S256"}
    return f"{settings.oauth_auth_url}?{urlencode(query)}"


class LoopbackReceiver:
    """The redirect URI: one GET with ``code`` and ``state`` (or ``error``), answered with a short page."""

    def __init__(self, state: str) -> None:
        self.state = state
        self.result: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self.port}{CALLBACK_PATH}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(CALLBACK_PATH, self.handle)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        query = request.query
        if query.get("state") != self.state:  # another tab, an old link, or someone else's redirect
            return web.Response(status=400, text="This sign-in is not the one the terminal is waiting for.")
        if not self.result.done():
            if error := query.get("error"):
                self.result.set_exception(LoginFailed(f"the sign-in was not completed: {error}"))
            elif code := query.get("code"):
                self.result.set_result(code)
            else:
                return web.Response(status=400, text="The redirect carried neither a code nor an error.")
        if self.result.exception() is not None:
            return web.Response(status=400, text=f"Sign-in failed: {query.get('error')}. See the terminal.")
        return web.Response(text=DONE_PAGE, content_type="text/html")


async def login(settings: Settings, out: TextIO, *, open_browser: bool = True,
                timeout: float = 300.0) -> SignedIn:
    if not (settings.oauth_client_id and settings.oauth_client_secret):
        raise LoginFailed("set the OAuth client to sign in with: --set ag_oauth_client_id=... --set "
                          "ag_oauth_client_secret=env:NAME (the same pair the gateway refreshes tokens with)")
    pkce, state = Pkce.new(), secrets.token_urlsafe(24)
    receiver = LoopbackReceiver(state)
    await receiver.start()
    try:
        url = authorization_url(settings, receiver.redirect_uri, state, pkce)
        out.write("Open this URL in a browser and sign in with the Google account to add:\n")
        out.write(url + "\n")
        out.write(f"Waiting for the browser to come back to {receiver.redirect_uri} "
                  f"(up to {timeout:.0f}s; Ctrl-C stops)...\n")
        out.flush()
        if open_browser:
            await asyncio.to_thread(webbrowser.open, url)
        try:
            code = await asyncio.wait_for(asyncio.shield(receiver.result), timeout)
        except TimeoutError:
            raise LoginFailed(f"no sign-in came back within {timeout:.0f}s") from None
    finally:
        await receiver.stop()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT)) as session:
        tokens = await exchange(session, settings, code, receiver.redirect_uri, pkce)
        access = str(tokens["access_token"])
        email = await userinfo_email(session, settings, access)
        project = await resolve_project(session, settings, access)
    return SignedIn(email, str(tokens["refresh_token"]), access,
                    time.time() + float(tokens.get("expires_in") or 3599), project)


async def exchange(session: aiohttp.ClientSession, settings: Settings, code: str, redirect_uri: str,
                   pkce: Pkce) -> dict[str, Any]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
            "client_id": settings.oauth_client_id, "client_secret": settings.oauth_client_secret,
            "code_verifier": pkce.verifier}
    status, data = await _json(session, "POST", settings.oauth_token_url, data=form)
    if status != 200 or not isinstance(data.get("access_token"), str):
        detail = f"{data.get('error') or status} {data.get('error_description') or ''}".strip()
        raise LoginFailed(f"the token endpoint refused the sign-in code: {detail}")
    if not isinstance(data.get("refresh_token"), str) or not data["refresh_token"]:
        raise LoginFailed("the token endpoint gave no refresh token (the consent screen must ask for "
                          "offline access; revoke the app at https://myaccount.google.com/permissions and "
                          "sign in again)")
    return data


async def userinfo_email(session: aiohttp.ClientSession, settings: Settings, access_token: str) -> str:
    status, data = await _json(session, "GET", settings.oauth_userinfo_url,
                               headers={"authorization": f"Bearer {access_token}"})
    email = data.get("email")
    if status != 200 or not isinstance(email, str) or not email:
        raise LoginFailed(f"{settings.oauth_userinfo_url} did not say who signed in (HTTP {status})")
    return email


async def resolve_project(session: aiohttp.ClientSession, settings: Settings, access_token: str) -> str:
    """``loadCodeAssist``; an account that has no project yet is onboarded to its default tier first."""
    base = settings.cloudcode_urls[0]
    headers = {"authorization": f"Bearer {access_token}", "user-agent": settings.user_agent,
               "content-type": "application/json"}
    status, data = await _json(session, "POST", f"{base}:loadCodeAssist", headers=headers,
                               data=orjson.dumps(LOAD_CODE_ASSIST_BODY))
    if status != 200:
        raise LoginFailed(f"loadCodeAssist answered {status}: {_message(data)}")
    if project := project_from_load_code_assist(data):
        return project
    tiers = [t for t in data.get("allowedTiers") or () if isinstance(t, dict)]
    tier = next((t.get("id") for t in tiers if t.get("isDefault")), "free-tier")
    body = orjson.dumps({"tierId": tier, "metadata": LOAD_CODE_ASSIST_BODY["metadata"]})
    for attempt in range(ONBOARD_POLLS):
        status, op = await _json(session, "POST", f"{base}:onboardUser", headers=headers, data=body)
        if status != 200:
            raise LoginFailed(f"onboardUser answered {status}: {_message(op)}")
        if op.get("done"):
            response = found if isinstance(found := op.get("response"), dict) else {}
            if project := project_from_load_code_assist(response):
                return project
            break
        if attempt < ONBOARD_POLLS - 1:
            await asyncio.sleep(1.0)
    raise LoginFailed("Cloud Code set up no project for this account (sign in to Antigravity once with it, "
                      "then run the login again)")


async def _json(session: aiohttp.ClientSession, method: str, url: str,
                **kw: Any) -> tuple[int, dict[str, Any]]:
    try:
        async with session.request(method, url, **kw) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as e:
        raise LoginFailed(f"{url.split('?')[0]} could not be reached: {type(e).__name__}") from None
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        data = {}
    return status, data if isinstance(data, dict) else {}


def _message(data: dict[str, Any]) -> str:
    error = data.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("status") or "")
    return str(error or "")
