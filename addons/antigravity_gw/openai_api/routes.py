"""Which OpenAI route a request path means, tolerant of the base-URL mistakes clients make.

Accepted: ``/v1/<route>``, ``<route>`` without ``/v1``, and a doubled ``/v1/v1/<route>``. A path that
*contains* a route but is not one (``/v1/chat/completions/responses``) is diagnosed: the error
names what was received, what was most likely meant, and how to fix the client's base URL.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from .. import errors


class RouteKind(StrEnum):
    CHAT = "chat.completions"
    RESPONSES = "responses"
    RESPONSE = "responses.retrieve"  # GET (retrieve) and DELETE /v1/responses/{id}
    RESPONSE_INPUT_ITEMS = "responses.input_items"
    RESPONSE_CANCEL = "responses.cancel"
    INPUT_TOKENS = "responses.input_tokens"
    COMPACT = "responses.compact"
    EMBEDDINGS = "embeddings"
    COMPLETIONS = "completions"
    IMAGES = "images.generations"
    IMAGE_EDITS = "images.edits"
    MESSAGES = "messages"  # Anthropic's Messages API
    COUNT_TOKENS = "messages.count_tokens"
    MODELS = "models"
    MODEL = "model"
    HEALTH = "healthz"
    ACCOUNTS = "ag.accounts"  # the gateway's own management view (guarded by inbound auth like /v1)


@dataclass(frozen=True, slots=True)
class Route:
    kind: RouteKind
    param: str = ""  # the model id of /v1/models/{id}, the response id of /v1/responses/{id}[/...]


_ROUTES: dict[str, tuple[RouteKind, tuple[str, ...]]] = {
    "/chat/completions": (RouteKind.CHAT, ("POST",)),
    "/responses": (RouteKind.RESPONSES, ("POST",)),
    "/responses/input_tokens": (RouteKind.INPUT_TOKENS, ("POST",)),
    "/responses/compact": (RouteKind.COMPACT, ("POST",)),
    "/completions": (RouteKind.COMPLETIONS, ("POST",)),
    "/embeddings": (RouteKind.EMBEDDINGS, ("POST",)),
    "/images/generations": (RouteKind.IMAGES, ("POST",)),
    "/images/edits": (RouteKind.IMAGE_EDITS, ("POST",)),
    "/messages": (RouteKind.MESSAGES, ("POST",)),
    "/messages/count_tokens": (RouteKind.COUNT_TOKENS, ("POST",)),
    "/models": (RouteKind.MODELS, ("GET",)),
    "/healthz": (RouteKind.HEALTH, ("GET", "HEAD")),
    "/health": (RouteKind.HEALTH, ("GET", "HEAD")),
    "/ag/accounts": (RouteKind.ACCOUNTS, ("GET",)),
}
DEFAULT_BASE_URL = "http://<gateway>/v1"
_MODEL = re.compile(r"^/models/(?P<id>[^/]+)$")
_RESPONSE = re.compile(r"^/responses/(?P<id>[^/]+)(?P<sub>/input_items|/cancel)?$")
_RESPONSE_ROUTES: dict[str | None, tuple[RouteKind, tuple[str, ...]]] = {
    None: (RouteKind.RESPONSE, ("GET", "DELETE")),
    "/input_items": (RouteKind.RESPONSE_INPUT_ITEMS, ("GET",)),
    "/cancel": (RouteKind.RESPONSE_CANCEL, ("POST",)),
}
_V1 = re.compile(r"^(?:/v1)+(?=/|$)")
_SLASHES = re.compile(r"/{2,}")


@functools.lru_cache(maxsize=512)
def normalize(path: str) -> str:
    """Drop the query, trailing slashes and any number of leading ``/v1`` segments.

    Cached: ``Auth``, ``Usage`` and the Gateway each ask for every request's path, and clients use a
    handful of paths (bounded, so a client inventing paths costs only misses)."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    path = _SLASHES.sub("/", path).rstrip("/") or "/"
    return _V1.sub("", path) or "/"


def is_health_path(path: str) -> bool:
    """``/healthz`` (or ``/health``), with or without ``/v1``: what load balancers probe without a key."""
    return _ROUTES.get(normalize(path), (None,))[0] == RouteKind.HEALTH


METRICS_PATH = "/metrics"  # Prometheus; answered by the Usage addon (mitm/usage.py)
USAGE_PATH = "/ag/usage"  # the usage ledger's report as JSON; also the Usage addon's


def is_metrics_path(path: str) -> bool:
    return normalize(path) == METRICS_PATH


def match_route(method: str, path: str, base_url: str | Callable[[], str] = DEFAULT_BASE_URL) -> Route:
    """The route for ``method path``; ``UnknownRoute`` (404) or ``MethodNotAllowed`` (405) otherwise.

    ``base_url`` is the base URL clients should use, quoted in the 404's fix: a callable is asked only
    then (working it out from the connection costs more than matching a route).
    """
    rest = normalize(path)
    if rest in _ROUTES:
        kind, methods = _ROUTES[rest]
        if method.upper() not in methods and method.upper() != "OPTIONS":
            raise errors.MethodNotAllowed(
                f"{method} is not allowed on {path}; use {' or '.join(methods)}.",
                headers={"allow": ", ".join(methods)})
        return Route(kind)
    if m := _MODEL.match(rest):
        if method.upper() not in ("GET", "OPTIONS"):
            raise errors.MethodNotAllowed(f"{method} is not allowed on {path}; use GET.",
                                          headers={"allow": "GET"})
        return Route(RouteKind.MODEL, m["id"])
    if m := _RESPONSE.match(rest):
        kind, methods = _RESPONSE_ROUTES[m["sub"]]
        if method.upper() not in methods and method.upper() != "OPTIONS":
            raise errors.MethodNotAllowed(f"{method} is not allowed on {path}; use {' or '.join(methods)}.",
                                          headers={"allow": ", ".join(methods)})
        return Route(kind, m["id"])
    raise unknown_route(path, base_url() if callable(base_url) else base_url)


def unknown_route(path: str, base_url: str = DEFAULT_BASE_URL) -> errors.UnknownRoute:
    """A 404 that names the path received, the route most likely meant and the base-URL fix.

    Path stacking is the usual cause: the client appends its route to a base URL that already
    ends in a route (``.../v1/chat/completions`` + ``/responses``) or in a wrong prefix (``/api/v1``).
    """
    rest = normalize(path)
    fix = f"Fix: set the client's base URL to {base_url!r} (nothing after /v1); the client appends the route."
    if "/messages" in rest:  # Anthropic clients append /v1/messages themselves: their base URL has no /v1
        root = base_url.removesuffix("/v1")
        fix = (f"Fix: set ANTHROPIC_BASE_URL (the anthropic SDK's base_url) to {root!r}, without /v1; "
               "the client appends /v1/messages.")
    if tail := _trailing_route(rest):
        base_path = rest[: -len(tail)]
        inside = _likely_route(base_path)
        cause = (f"your client appended {tail!r} to a base URL that already ends in the route "
                 f"{'/v1' + inside[1]!r}" if inside else
                 f"your client's base URL ends in {base_path!r}"
                 " instead of '/v1'")
        meant = "/v1" + tail
        return errors.UnknownRoute(f"Unknown path {path!r}: {cause}. It most likely meant {meant!r}. {fix}")
    if guess := _likely_route(rest):
        prefix, route = guess
        after = rest[len(prefix) + len(route):]
        return errors.UnknownRoute(
            f"Unknown path {path!r}: it looks like the route {'/v1' + route!r} with extra segments "
            f"({prefix or '(none)'} before it, {after or '(none)'} after it). It most likely meant "
            f"{'/v1' + route!r}. {fix}")
    return errors.UnknownRoute(
        f"Unknown path {path!r}. This gateway serves /v1/chat/completions, /v1/responses, /v1/completions, "
        f"/v1/embeddings, /v1/messages, /v1/models and /healthz. {fix}")


def _trailing_route(rest: str) -> str:
    """The route a stacked path ends in (what the client appended), or ``""``."""
    for route in ("/chat/completions", "/responses", "/completions", "/models", "/messages/count_tokens",
                  "/messages"):
        if rest.endswith(route) and rest != route:
            return route
    return ""


def _likely_route(rest: str) -> tuple[str, str] | None:
    """The earliest known route embedded in ``rest``, as (what came before it, the route)."""
    best: tuple[int, str] | None = None
    for route in ("/chat/completions", "/responses", "/completions", "/models", "/messages"):
        for m in re.finditer(re.escape(route) + r"(?=/|$)", rest):
            if route == "/completions" and rest[: m.start()].endswith("/chat"):
                continue
            if best is None or m.start() < best[0]:
                best = (m.start(), route)
            break
    if best is None:
        return None
    return rest[: best[0]], best[1]
