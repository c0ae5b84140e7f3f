"""The Auth addon: who may call the gateway, checked before the Gateway addon sees a flow.

Modelled on mitmproxy's ``proxyauth``: ``configure`` resolves the options once into a gate
(``OpenGate`` or ``KeyGate``) and refuses a gateway that would listen beyond loopback without a key;
the hooks are a guard clause plus one call. The check runs in ``requestheaders``, before the body is
read (an unknown caller cannot make the gateway buffer a large upload) and before mitmweb's view first
shows the flow; ``request`` runs it for any flow that was not checked yet. A refused flow gets a 401
OpenAI error (``invalid_api_key``), never an empty body. The key is consumed here: whatever the
verdict, the client's credential headers (and ``?key=``-style query parameters) are redacted from
the flow, so neither mitmweb, ``-w`` files nor mitmdump's output ever hold them. CORS preflights
(``OPTIONS``) pass without a key.

As a forward (regular or upstream) proxy, the gateway would also relay traffic to every other host for
anyone who can reach it. With inbound auth on, that traffic needs the key too, as mitmproxy's own
``proxyauth`` does it: ``Proxy-Authorization: Bearer <key>`` or ``Basic`` with the key as the password,
checked on ``CONNECT`` (``http_connect``; the tunnel's connection is then trusted) and on plain proxy
requests (``requestheaders``); otherwise a 407 with ``Proxy-Authenticate``. The header is removed before
anything is forwarded. A ``CONNECT`` to an intercepted host (api.openai.com) needs no proxy key: the
requests inside it are checked with the API key like any other.
"""

from __future__ import annotations

import binascii
import hmac
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from mitmproxy import connection, ctx, http
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy import mode_specs

from .. import errors, readable
from ..error_shapes import shape_for_path
from ..openai_api.routes import is_health_path, is_metrics_path
from ..settings import InboundAuth, is_loopback_host, resolve_inbound_auth
from . import flows, options
from .client_keys import ClientKeys
from .log_redaction import LogRedactor

logger = logging.getLogger(__name__)

AUTH_OPTIONS: tuple[tuple[str, type | object, object, str], ...] = (
    ("ag_api_key", str, "", "Key clients must send (Authorization: Bearer, x-api-key or x-goog-api-key); "
     "env:NAME or file:PATH keeps it off the command line and this page."),
    ("ag_auth_mode", str, "auto",
     "Inbound auth: off, strict, all_except_health or auto (off on loopback only, else all_except_health)."),
    ("ag_allow_unauthenticated_public", bool, False,
     "Allow listening beyond loopback without inbound auth (an open gateway anyone can use)."),
    ("ag_api_keys_file", str, "",
     'JSON file {"keys": [{"name", "key", "models", "rpm", "daily_tokens"}]} of named client keys, with '
     "or instead of ag_api_key; reloaded when it changes. Turns inbound auth on (auto) even on loopback."),
    ("ag_metrics_public", bool, False, "Serve /metrics without inbound auth (for a Prometheus scraper)."),
)
WATCHED = frozenset({"ag_api_key", "ag_auth_mode", "ag_allow_unauthenticated_public", "ag_api_keys_file",
                     "ag_metrics_public", "listen_host", "mode"})
# Options whose values are redacted, literally, from every log line.
KEY_HEADERS = ("x-api-key", "x-goog-api-key")
CHALLENGE = 'Bearer realm="antigravity-gateway"'
PROXY_CHALLENGES = ('Basic realm="antigravity-gateway"', 'Bearer realm="antigravity-gateway"')
PROXY_HINT = ("this proxy requires the gateway's key for hosts it does not answer itself: send it as "
              "'Proxy-Authorization: Bearer <key>' or as the password of the proxy URL "
              "(http://user:<key>@host:port)")
KEY_HINT = "send it as 'Authorization: Bearer <key>', 'x-api-key: <key>' or 'x-goog-api-key: <key>'"


class Gate(Protocol):
    def admit(self, request: http.Request) -> tuple[str, str]:
        """How the request got in (stored as ``ag.auth``) and the name of its client key ("" for none or
        ``ag_api_key``); ``errors.Unauthorized`` if it may not."""
        ...


class OpenGate:
    def __init__(self, keys: ClientKeys | None = None) -> None:
        self.keys = keys

    def admit(self, request: http.Request) -> tuple[str, str]:
        # Open, but a named key that comes along still says whose request it is.
        if self.keys is not None and self.keys.ring:
            key = self.keys.ring.identify(presented_keys(request.headers))
            if key is not None:
                return "open", key.name
        return "open", ""


class ClosedGate:
    """Until ``configure`` accepted the options nobody gets in: mitmproxy loads ``-s`` scripts while its
    listeners start, so a refused configuration must not leave an open door until the process exits."""

    def admit(self, request: http.Request) -> tuple[str, str]:
        raise errors.Unauthorized("The gateway refused its configuration (see its log) and serves nothing.")


@dataclass(frozen=True, slots=True)
class KeyGate:
    key: bytes  # ag_api_key (b"": only the keys file's keys)
    health_exempt: bool  # all_except_health: load balancers probe /healthz without a key
    keys: ClientKeys | None = None  # ag_api_keys_file's named keys (read live: the file is reloaded)
    metrics_public: bool = False  # ag_metrics_public: Prometheus scrapes /metrics without a key

    def admit(self, request: http.Request) -> tuple[str, str]:
        if self.health_exempt and is_health_path(request.path):
            return "exempt", ""
        if self.metrics_public and is_metrics_path(request.path):
            return "exempt", ""
        presented = presented_keys(request.headers)
        if not presented:
            raise errors.Unauthorized(f"Missing API key: this gateway requires one; {KEY_HINT}.")
        # every candidate is compared, in constant time, so timing says nothing about the key
        named = self.keys.ring.identify(presented) if self.keys is not None else None
        if self.key and sum(hmac.compare_digest(k.encode(), self.key) for k in presented):
            return "key", ""
        if named is not None:
            return "key", named.name
        raise errors.Unauthorized(
            f"Incorrect API key provided: use the gateway's ag_api_key or a key of its ag_api_keys_file; "
            f"{KEY_HINT}.")


def presented_keys(headers: http.Headers) -> list[str]:
    """Every key the request offers: Bearer tokens (or a bare Authorization value) and the key headers."""
    keys = []
    for value in headers.get_all("authorization"):
        scheme, _, rest = value.strip().partition(" ")
        keys.append(rest.strip() if scheme.lower() == "bearer" else value.strip())
    for name in KEY_HEADERS:
        keys += [v.strip() for v in headers.get_all(name)]
    return [k for k in keys if k]


def presented_proxy_keys(headers: http.Headers) -> list[str]:
    """Keys offered as ``Proxy-Authorization``: a Bearer token, or the password of Basic credentials."""
    keys = []
    for value in headers.get_all("proxy-authorization"):
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() == "bearer":
            keys.append(rest.strip())
        elif scheme.lower() == "basic":
            try:
                decoded = binascii.a2b_base64(rest.strip().encode("ascii"), strict_mode=True).decode("utf-8")
            except (ValueError, UnicodeError):
                continue
            keys.append(decoded.partition(":")[2])
    return [k for k in keys if k]


def is_forward_proxy(flow: http.HTTPFlow) -> bool:
    """Regular and upstream modes: the client names any host; the others have no proxy credentials."""
    return isinstance(flow.client_conn.proxy_mode, mode_specs.RegularMode | mode_specs.UpstreamMode)


def gate_for(auth: InboundAuth, keys: ClientKeys | None = None, *, metrics_public: bool = False) -> Gate:
    if auth.mode == "off":
        return OpenGate(keys)
    return KeyGate(auth.api_key.encode(), health_exempt=auth.mode == "all_except_health", keys=keys,
                   metrics_public=metrics_public)


def listen_hosts(opts: Any) -> list[str]:
    """Where mitmproxy listens: each mode's own ``@host:port`` or else ``listen_host``."""
    hosts = []
    for spec in opts.mode:
        try:
            hosts.append(mode_specs.ProxyMode.parse(spec).listen_host(opts.listen_host))
        except ValueError:
            continue  # mitmproxy's proxyserver reports invalid modes itself
    return hosts


class Auth:
    def __init__(self, keys: ClientKeys | None = None) -> None:
        self.keys = keys or ClientKeys()  # shared with the Usage addon, which applies their limits
        self.settings = InboundAuth()
        self.gate: Gate = ClosedGate()
        # None: forward-proxy traffic is open; b"" (nobody passes) until configured.
        self.proxy_key: bytes | None = b""
        # Client connections whose CONNECT carried the key: the requests in the tunnel are theirs (proxyauth).
        self.proxy_authenticated: weakref.WeakKeyDictionary[connection.Client, bool] = (
            weakref.WeakKeyDictionary())
        # Every log line, mitmproxy's own included, loses credential patterns; the configured secrets
        # themselves are redacted by their SecretOption.
        self.log_redactor = LogRedactor()
        self._api_key = options.SecretOption("ag_api_key")
        self._running = False

    def load(self, loader: Loader) -> None:
        options.declare(loader, AUTH_OPTIONS)
        self.log_redactor.install()

    def done(self) -> None:
        self.log_redactor.uninstall()
        self._api_key.close()
        self.keys.cancel()

    def configure(self, updated: set[str]) -> None:
        if not updated & WATCHED:
            return
        options.apply_loopback_default(ctx.options)  # judge the address mitmproxy will really use
        o = ctx.options
        try:
            self.keys.configure(Path(o.ag_api_keys_file).expanduser() if o.ag_api_keys_file else None)
            self.settings = resolve_inbound_auth(o.ag_auth_mode, self._api_key.resolve(o), listen_hosts(o),
                                                 allow_public=o.ag_allow_unauthenticated_public,
                                                 client_keys=bool(self.keys.path))
        except ValueError as e:
            options.refuse(str(e))  # the message is the whole story (at start-up: one line, no traceback)
            return
        self.gate = gate_for(self.settings, self.keys, metrics_public=o.ag_metrics_public)
        self.proxy_key = None if self.settings.mode == "off" else self.settings.api_key.encode()
        if self.keys.path is not None and self._running:
            self.keys.start()  # a keys file named while running: watch it too
        if self.settings.exposed_on and self.settings.mode == "off":
            logger.warning("inbound auth is OFF while listening on %s (ag_allow_unauthenticated_public): "
                           "anyone who can reach this address can use your Google accounts",
                           ", ".join(self.settings.exposed_on))

    async def running(self) -> None:
        self._running = True
        if self.keys.path is not None:
            self.keys.start()  # reload the keys file when it changes
        await self._rebind_if_needed()

    async def _rebind_if_needed(self) -> None:
        """mitmproxy binds its listeners before it loads scripts, so the loopback default chosen in
        ``configure`` may come too late: rebind if a listener sits on an address we did not judge."""
        ps = ctx.master.addons.get("proxyserver")
        if ps is None or not all(is_loopback_host(h) for h in listen_hosts(ctx.options)):
            return  # a public address was chosen explicitly, and configure() judged it
        bound = [addr[0] for addr in ps.listen_addrs()]
        if all(is_loopback_host(h) for h in bound):
            return
        logger.info("rebinding the listeners on %s (they came up on %s before the gateway loaded)",
                    ", ".join(listen_hosts(ctx.options)), ", ".join(sorted(set(bound))))
        modes = [mode_specs.ProxyMode.parse(m) for m in ctx.options.mode]
        await ps.servers.update([])
        await ps.servers.update(modes)
        still = [addr[0] for addr in ps.listen_addrs() if not is_loopback_host(addr[0])]
        if still:
            logger.error("still listening on %s with inbound auth off: shutting down", ", ".join(still))
            ctx.master.shutdown()

    def http_connect(self, flow: http.HTTPFlow) -> None:
        if flow.response or self.proxy_key is None or not is_forward_proxy(flow):
            return
        self.check_proxy(flow, tunnel=True)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or flows.AUTH in flow.metadata:
            return
        if flows.is_ours(flow):
            self.check(flow)
        elif self.proxy_key is not None and is_forward_proxy(flow) and not flow.metadata.get(flows.SYNTHETIC):
            self.check_proxy(flow, tunnel=False)  # a host the gateway does not answer: proxy credentials

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.response or flow.error or flows.AUTH in flow.metadata or not flows.is_ours(flow):
            return
        self.check(flow)

    def check(self, flow: http.HTTPFlow) -> None:
        """Admit the flow or answer 401; either way the client's credentials leave the flow."""
        try:
            flow.metadata[flows.AUTH], name = self._admit(flow)
            if name:
                flow.metadata[flows.KEY] = name
        except errors.Unauthorized as e:
            flow.metadata[flows.AUTH] = "denied"
            flow.response = flows.error_response(e, {"www-authenticate": CHALLENGE},
                                                 shape_for_path(flow.request.path).body)
            flows.mark_error(flow, readable.error_comment(401, e.code or "", e.message))
            logger.info("refused %s %s from %s: %s", flow.request.method, flow.request.path.split("?")[0],
                        _peer(flow), e.message.split(":")[0])  # no query string: it may carry a key
        finally:
            flows.redact_client_secrets(flow.request)
            flows.redact_query_secrets(flow.request)

    def _admit(self, flow: http.HTTPFlow) -> tuple[str, str]:
        if flow.request.method == "OPTIONS":
            return "preflight", ""  # browsers send CORS preflights without credentials
        if flow.is_replay:
            return "replay", ""  # only the operator can replay (mitmweb, console): like proxyauth, trust it
        if flow.client_conn in self.proxy_authenticated:
            return "proxy", ""  # its CONNECT carried the key
        return self.gate.admit(flow.request)

    def check_proxy(self, flow: http.HTTPFlow, *, tunnel: bool) -> None:
        """Traffic for a host the gateway does not answer: the key as proxy credentials, or a 407."""
        request = flow.request
        intercepted_tunnel = tunnel and request.pretty_host in flows.INTERCEPT_HOSTS
        if flow.is_replay or flow.client_conn in self.proxy_authenticated:
            flow.metadata[flows.AUTH] = "replay" if flow.is_replay else "proxy"
        elif self._proxy_key_valid(request.headers):
            flow.metadata[flows.AUTH] = "proxy"
            if tunnel:
                self.proxy_authenticated[flow.client_conn] = True
        elif not intercepted_tunnel:  # a tunnel to api.openai.com: its requests are checked inside
            flow.metadata[flows.AUTH] = "denied"
            err = errors.Unauthorized(f"Proxy authentication required: {PROXY_HINT}.", status=407,
                                      code="proxy_authentication_required")
            flow.response = flows.error_response(err)
            flow.response.headers.fields += tuple((b"proxy-authenticate", c.encode())
                                                  for c in PROXY_CHALLENGES)
            logger.info("refused %s %s from %s: no valid Proxy-Authorization", request.method,
                        f"{request.pretty_host}:{request.port}", _peer(flow))
        request.headers.pop("proxy-authorization", None)  # never forwarded, never stored

    def _proxy_key_valid(self, headers: http.Headers) -> bool:
        assert self.proxy_key is not None
        # every candidate is compared, in constant time
        offered = presented_proxy_keys(headers)
        single = bool(sum(hmac.compare_digest(k.encode(), self.proxy_key) for k in offered))
        return single or self.keys.ring.identify(offered) is not None


def _peer(flow: http.HTTPFlow) -> str:
    peer: Sequence[Any] = flow.client_conn.peername or ("?",)
    return str(peer[0])
