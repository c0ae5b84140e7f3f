"""The Gateway's ``ag_*`` options: declared once, read once into a frozen ``Settings``.

The inbound-auth options (``ag_api_key``, ``ag_auth_mode``, ``ag_allow_unauthenticated_public``) belong
to the ``Auth`` addon and are declared in ``mitm/auth.py``.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, cast

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from .. import settings as s
from .log_redaction import LogRedactor

logger = logging.getLogger(__name__)

# name, type, default, help — README's options table is checked against this list by a test.
OPTIONS: tuple[tuple[str, type | object, object, str], ...] = (
    ("ag_accounts", str, s.DEFAULT_ACCOUNTS_DIR,
     "Directory of account JSON files (Antigravity-Manager format: OAuth 'token' or 'api_key')."),
    ("ag_cloudcode_urls", Sequence[str], [],
     "Cloud Code v1internal base URLs, tried in order (repeatable). Default: Google's sandbox, daily, prod."),
    ("ag_gemini_url", str, s.DEFAULT_GEMINI_URL, "Public Gemini API base URL, for API-key accounts."),
    ("ag_oauth_token_url", str, s.DEFAULT_OAUTH_TOKEN_URL,
     "OAuth token endpoint used to refresh access tokens."),
    ("ag_oauth_client_id", str, "", "OAuth client id of the app that issued the refresh tokens."),
    ("ag_oauth_client_secret", str, "",
     "OAuth client secret of that app; env:NAME or file:PATH keeps it off the command line and this page."),
    ("ag_oauth_auth_url", str, s.DEFAULT_OAUTH_AUTH_URL,
     "OAuth authorization endpoint 'accounts login' sends the browser to."),
    ("ag_oauth_userinfo_url", str, s.DEFAULT_OAUTH_USERINFO_URL,
     "OAuth userinfo endpoint 'accounts login' reads the account's email from."),
    ("ag_model_map", Sequence[str], [],
     "Client model to upstream model, FROM=TO, '*' wildcards (repeatable)."),
    ("ag_model_fallback", Sequence[str], [],
     "FROM=TO, '*' wildcards (repeatable): when every account is exhausted or cooling for upstream model "
     "FROM, serve TO instead."),
    ("ag_quota_refresh", int, s.DEFAULT_QUOTA_REFRESH,
     "Seconds between quota snapshots of the OAuth accounts (also after a 429 and on demand); 0: no timer."),
    ("ag_quota_floor", int, 0,
     "Percent of a model's quota kept in reserve: an account at or below it is skipped for that model."),
    ("ag_model_map_file", str, "",
     'JSON file {"FROM": "TO", ...} of more mappings (after ag_model_map), reloaded when it changes.'),
    ("ag_body_limit", str, "32m",
     "Largest request body accepted (e.g. 32m, 512k), counted after decompressing a Content-Encoding body; "
     "bigger ones get a 413."),
    ("ag_user_agent", str, s.DEFAULT_USER_AGENT,
     "User-Agent sent to Cloud Code, or just the Antigravity version (e.g. 4.5.0)."),
    ("ag_cloudcode_gemini3_thinking", str, "level",
     "How Gemini 3's thinking depth is sent to Cloud Code: level (thinkingLevel) or budget (thinkingBudget, "
     "for accounts that answer 400 to thinkingLevel)."),
    ("ag_max_attempts", int, 4, "Upstream attempts per request, across accounts and base URLs."),
    ("ag_scheduling", str, s.DEFAULT_SCHEDULING,
     "How requests pick an account: sticky (a conversation stays on its account; new ones go to the "
     "least recently used), lru, or round_robin."),
    ("ag_upstream_timeout", int, 600,
     "Total seconds one request may spend upstream, all attempts and the whole answer included."),
    ("ag_first_byte_timeout", int, 120,
     "Seconds of upstream silence allowed (headers, first usable event, between stream chunks)."),
    ("ag_keepalive", int, 15,
     "Seconds of silence (upstream, or attempts still running) after which a stream gets an SSE keep-alive."),
    ("ag_image_fetch", str, "public",
     "Which image URLs the gateway downloads: public (globally reachable addresses only), off (none; "
     "data: URLs still work) or any (internal addresses too: trusted setups and tests only)."),
    ("ag_inline_non_stream", bool, True,
     "Answer non-stream requests from the request hook when no intercept or request-rewriting option is set "
     "(skips the relay hop); false: always go through the relay."),
    ("ag_state_url", str, "",
     "Redis/Valkey URL (redis://host:port/db, rediss://; env:NAME or file:PATH) whose state several gateway "
     "instances share: cooldowns, sticky bindings, token refreshes, key limits, stored responses. "
     "Empty: this process's own state."),
)


# Fixed-choice options: mitmproxy shows them as a select in mitmweb and lists them in --options help.
CHOICES: dict[str, Sequence[str]] = {"ag_scheduling": s.SCHEDULING_MODES, "ag_auth_mode": s.AUTH_MODES}


def declare(loader: Loader, table: Sequence[tuple[str, type | object, object, str]] = OPTIONS) -> None:
    opts = loader.master.options
    for name, typespec, default, help_text in table:
        _drop_unparsable(opts, name, typespec, default, help_text)
        # Loader.add_option is annotated ``type`` but hands typespec to OptManager.add_option, which takes
        # ``type | object``: the typing forms (Sequence[str], str | None) that mitmproxy's own options use
        loader.add_option(name, cast(type, typespec), default, help_text, choices=CHOICES.get(name))


def _drop_unparsable(opts: Any, name: str, typespec: type | object, default: object, help_text: str) -> None:
    """A ``--set`` value mitmproxy cannot even convert (``ag_max_attempts=x``) would make the option's
    registration raise inside mitmproxy's script loader, which hangs start-up: check it first, and report
    it in one line instead."""
    raw = opts.deferred.get(name)
    values = getattr(raw, "val", None)  # --set values wait, unconverted, until the option exists
    if values is None:
        return
    from mitmproxy.optmanager import _Option

    try:
        opts._parse_setval(_Option(name, typespec, default, help_text, None), list(values))
    except exceptions.OptionsError as e:
        del opts.deferred[name]
        refuse(str(e).removeprefix("Failed to parse option "))


def refuse(message: str) -> None:
    """Reject a configuration. While mitmproxy starts, log it as one line, which stops mitmproxy with that
    line and no traceback (its errorcheck addon exits on any error logged during start-up; an exception
    would print the traceback of the script loader). Later (mitmweb's options, ``:set``), raise
    ``OptionsError``, which rejects the change and shows the message."""
    if starting_up():
        if message not in _REFUSED_AT_START:  # a nested configure (SecretOption) meets the same error again
            _REFUSED_AT_START.add(message)
            logger.error(message)
        return
    raise exceptions.OptionsError(message)


_REFUSED_AT_START: set[str] = set()


def starting_up() -> bool:
    """True while mitmproxy's errorcheck still watches the log: an error logged now ends start-up."""
    try:
        checker = ctx.master.addons.get("errorcheck")
    except AttributeError:  # no master (unit tests without a context)
        return False
    return checker is not None and checker.logger in logging.getLogger().handlers


def warn_unknown(deferred: Iterable[str], known: Iterable[str]) -> None:
    """``--set ag_schedulng=lru`` sets nothing: say so, and name the option that was probably meant."""
    names = sorted(known)
    for name in sorted(n for n in deferred if n.startswith("ag_")):
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]}?" if close else "README's Options table lists the ag_* options"
        logger.warning("unknown option %s (ignored): %s", name, hint)


def apply_loopback_default(opts: Any) -> None:
    """Listen on loopback unless the user chose a host (P1: mitmproxy listens on all interfaces by default).

    Both the Auth addon (which must judge the final address) and the Gateway call this; the first wins.
    Not tied to ``"listen_host" in updated``: the first configure may come from any option change.
    """
    if not opts.listen_host and not opts._options["listen_host"].has_changed():
        opts.update(listen_host="127.0.0.1")


HIDDEN_PREFIX = "[hidden "


class SecretOption:
    """One secret-valued option (``ag_api_key``, ``ag_oauth_client_secret``), owned by the addon that
    declares it.

    ``env:NAME`` and ``file:PATH`` references are resolved at configure time and stay what mitmproxy
    stores and shows. A secret typed in as the value itself is kept here and replaced in mitmproxy's
    option store by a placeholder (``[hidden …ab12]``), so mitmweb's Options page, ``/options.json`` and
    a saved config never hold it. The placeholder means "the secret this process was given"; a new value
    replaces it. (The command line itself is visible in ``ps``: that is what the references are for.)
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._secret = ""
        self._placeholder = ""
        # The resolved secret, whatever its source, is redacted from every log line while the owner
        # lives (the owning addon calls ``close()`` in its ``done()``).
        self.redactor = LogRedactor()

    def resolve(self, opts: Any) -> str:
        secret = self._resolve(opts)
        self.redactor.literals = (secret,) if secret else ()
        if secret:
            self.redactor.install()
        return secret

    def close(self) -> None:
        self.redactor.uninstall()

    def _resolve(self, opts: Any) -> str:
        value: str = getattr(opts, self.name)
        if self._placeholder and value == self._placeholder:
            return self._secret
        if value.startswith(HIDDEN_PREFIX):
            raise ValueError(f"{self.name}: {value} stands for a secret this gateway was not given (a saved "
                             "config?); set the secret again, best as env:NAME or file:PATH")
        if not value or s.is_secret_reference(value):
            self._secret = self._placeholder = ""
            return s.resolve_secret(value, what=self.name)
        self._secret = value
        self._placeholder = f"{HIDDEN_PREFIX}…{value[-4:]}]" if len(value) > 12 else f"{HIDDEN_PREFIX}…]"
        opts.update(**{self.name: self._placeholder})  # configures again, which resolves the placeholder
        return value


def read_settings_outside_mitmproxy(o: Any) -> s.Settings:
    """``read_settings`` for the command line (only mitm/ may know mitmproxy's errors): ``ValueError``."""
    try:
        return read_settings(o)
    except exceptions.OptionsError as e:
        raise ValueError(str(e)) from None


def read_settings(o: Any, oauth_client_secret: SecretOption | None = None) -> s.Settings:
    """Build a new ``Settings`` from mitmproxy's options; ``OptionsError`` names the bad value."""
    secret = oauth_client_secret or SecretOption("ag_oauth_client_secret")
    try:
        return s.Settings(
            accounts_dir=Path(o.ag_accounts).expanduser(),
            cloudcode_urls=s.parse_cloudcode_urls(o.ag_cloudcode_urls),
            gemini_url=s.parse_base_url(o.ag_gemini_url, what="ag_gemini_url"),
            oauth_token_url=s.parse_base_url(o.ag_oauth_token_url, what="ag_oauth_token_url"),
            oauth_client_id=o.ag_oauth_client_id,
            oauth_client_secret=secret.resolve(o),
            oauth_auth_url=s.parse_base_url(o.ag_oauth_auth_url, what="ag_oauth_auth_url"),
            oauth_userinfo_url=s.parse_base_url(o.ag_oauth_userinfo_url, what="ag_oauth_userinfo_url"),
            model_map=s.parse_model_map(o.ag_model_map),
            model_fallback=s.parse_model_map(o.ag_model_fallback, what="ag_model_fallback"),
            quota_refresh=s.parse_non_negative(o.ag_quota_refresh, what="ag_quota_refresh"),
            quota_floor=s.parse_percent(o.ag_quota_floor, what="ag_quota_floor"),
            model_map_file=Path(o.ag_model_map_file).expanduser() if o.ag_model_map_file else None,
            body_limit=s.parse_size(o.ag_body_limit, what="ag_body_limit"),
            user_agent=s.parse_user_agent(o.ag_user_agent),
            max_attempts=int(s.parse_positive(o.ag_max_attempts, what="ag_max_attempts")),
            scheduling=s.parse_scheduling(o.ag_scheduling),
            timeouts=s.Timeouts(
                connect=10.0,
                first_byte=s.parse_positive(o.ag_first_byte_timeout, what="ag_first_byte_timeout"),
                total=s.parse_positive(o.ag_upstream_timeout, what="ag_upstream_timeout"),
            ),
            keepalive_interval=s.parse_positive(o.ag_keepalive, what="ag_keepalive"),
            inline_non_stream=o.ag_inline_non_stream,
            image_fetch=s.parse_image_fetch(o.ag_image_fetch),
            cloudcode_gemini3_thinking=s.parse_gemini3_thinking(o.ag_cloudcode_gemini3_thinking),
            state_url=s.parse_state_url(o.ag_state_url),
        )
    except ValueError as e:
        raise exceptions.OptionsError(str(e)) from e
