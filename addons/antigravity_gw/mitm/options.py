"""The Gateway's ``ag_*`` options: declared once, read once into a frozen ``Settings``.

The inbound-auth options (``ag_api_key``, ``ag_auth_mode``, ``ag_allow_unauthenticated_public``) belong
to the ``Auth`` addon and are declared in ``mitm/auth.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mitmproxy import exceptions
from mitmproxy.addonmanager import Loader

from .. import settings as s

# name, type, default, help — README's options table is checked against this list by a test.
OPTIONS: tuple[tuple[str, type | object, object, str], ...] = (
    ("ag_accounts", str, s.DEFAULT_ACCOUNTS_DIR,
     "Directory of account JSON files (Antigravity-Manager format: OAuth 'token' or 'api_key')."),
    ("ag_cloudcode_urls", Sequence[str], [],
     "Cloud Code v1internal base URLs, tried in order (repeatable). Default: Google's sandbox, daily, prod."),
    ("ag_gemini_url", str, s.DEFAULT_GEMINI_URL, "Public Gemini API base URL, for API-key accounts."),
    ("ag_oauth_token_url", str, s.DEFAULT_OAUTH_TOKEN_URL, "OAuth token endpoint used to refresh access tokens."),
    ("ag_oauth_client_id", str, "", "OAuth client id of the app that issued the refresh tokens."),
    ("ag_oauth_client_secret", str, "", "OAuth client secret of that app."),
    ("ag_model_map", Sequence[str], [], "Client model to upstream model, FROM=TO, '*' wildcards (repeatable)."),
    ("ag_model_map_file", str, "",
     'JSON file {"FROM": "TO", ...} of more mappings (after ag_model_map), reloaded when it changes.'),
    ("ag_body_limit", str, "32m",
     "Largest request body accepted (e.g. 32m, 512k), counted after decompressing a Content-Encoding body; "
     "bigger ones get a 413."),
    ("ag_user_agent", str, s.DEFAULT_USER_AGENT, "User-Agent sent to Cloud Code."),
    ("ag_max_attempts", int, 4, "Upstream attempts per request, across accounts and base URLs."),
    ("ag_scheduling", str, s.DEFAULT_SCHEDULING,
     "How requests pick an account: sticky (a conversation stays on its account; new ones go to the "
     "least recently used), lru, or round_robin."),
    ("ag_upstream_timeout", int, 600, "Total seconds one request may spend upstream, all attempts included."),
    ("ag_first_byte_timeout", int, 120, "Seconds to wait for upstream response headers and between stream chunks."),
    ("ag_keepalive", int, 15, "Seconds of upstream silence after which a stream gets an SSE keep-alive comment."),
    ("ag_inline_non_stream", bool, True,
     "Answer non-stream requests from the request hook when no intercept or request-rewriting option is set "
     "(skips the relay hop); false: always go through the relay."),
)


def declare(loader: Loader, table: Sequence[tuple[str, type | object, object, str]] = OPTIONS) -> None:
    for name, typespec, default, help_text in table:
        loader.add_option(name, typespec, default, help_text)


def apply_loopback_default(opts: Any) -> None:
    """Listen on loopback unless the user chose a host (P1: mitmproxy listens on all interfaces by default).

    Both the Auth addon (which must judge the final address) and the Gateway call this; the first wins.
    Not tied to ``"listen_host" in updated``: the first configure may come from any option change.
    """
    if not opts.listen_host and not opts._options["listen_host"].has_changed():
        opts.update(listen_host="127.0.0.1")


def read_settings(o: Any) -> s.Settings:
    """Build a new ``Settings`` from mitmproxy's options; ``OptionsError`` names the bad value."""
    try:
        return s.Settings(
            accounts_dir=Path(o.ag_accounts).expanduser(),
            cloudcode_urls=s.parse_cloudcode_urls(o.ag_cloudcode_urls),
            gemini_url=s.parse_base_url(o.ag_gemini_url, what="ag_gemini_url"),
            oauth_token_url=s.parse_base_url(o.ag_oauth_token_url, what="ag_oauth_token_url"),
            oauth_client_id=o.ag_oauth_client_id,
            oauth_client_secret=o.ag_oauth_client_secret,
            model_map=s.parse_model_map(o.ag_model_map),
            model_map_file=Path(o.ag_model_map_file).expanduser() if o.ag_model_map_file else None,
            body_limit=s.parse_size(o.ag_body_limit, what="ag_body_limit"),
            user_agent=o.ag_user_agent,
            max_attempts=int(s.parse_positive(o.ag_max_attempts, what="ag_max_attempts")),
            scheduling=s.parse_scheduling(o.ag_scheduling),
            timeouts=s.Timeouts(
                connect=10.0,
                first_byte=s.parse_positive(o.ag_first_byte_timeout, what="ag_first_byte_timeout"),
                total=s.parse_positive(o.ag_upstream_timeout, what="ag_upstream_timeout"),
            ),
            keepalive_interval=s.parse_positive(o.ag_keepalive, what="ag_keepalive"),
            inline_non_stream=o.ag_inline_non_stream,
        )
    except ValueError as e:
        raise exceptions.OptionsError(str(e)) from e
