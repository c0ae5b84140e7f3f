"""Which OpenAI route a request path means, tolerant of the base-URL mistakes clients make.

Accepted: ``/v1/<route>``, ``<route>`` without ``/v1``, and a doubled ``/v1/v1/<route>``. A path that
*contains* a route but is not one (``/v1/chat/completions/responses``) is diagnosed: the error
names what was received, what was most likely meant, and how to fix the client's base URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

from .. import errors


class RouteKind(StrEnum):
    CHAT = "chat.completions"
    RESPONSES = "responses"
    COMPLETIONS = "completions"
    MODELS = "models"
    MODEL = "model"
    HEALTH = "healthz"


@dataclass(frozen=True, slots=True)
class Route:
    kind: RouteKind
    param: str = ""  # the model id of /v1/models/{id}


_ROUTES: dict[str, tuple[RouteKind, tuple[str, ...]]] = {
    "/chat/completions": (RouteKind.CHAT, ("POST",)),
    "/responses": (RouteKind.RESPONSES, ("POST",)),
    "/completions": (RouteKind.COMPLETIONS, ("POST",)),
    "/models": (RouteKind.MODELS, ("GET",)),
    "/healthz": (RouteKind.HEALTH, ("GET", "HEAD")),
    "/health": (RouteKind.HEALTH, ("GET", "HEAD")),
}
_MODEL = re.compile(r"^/models/(?P<id>[^/]+)$")
_V1 = re.compile(r"^(?:/v1)+(?=/|$)")


def normalize(path: str) -> str:
    """Drop the query, trailing slashes and any number of leading ``/v1`` segments."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    path = re.sub(r"/{2,}", "/", path).rstrip("/") or "/"
    return _V1.sub("", path) or "/"


def match_route(method: str, path: str) -> Route:
    """The route for ``method path``; ``UnknownRoute`` (404) or ``MethodNotAllowed`` (405) otherwise."""
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
            raise errors.MethodNotAllowed(f"{method} is not allowed on {path}; use GET.", headers={"allow": "GET"})
        return Route(RouteKind.MODEL, m["id"])
    raise unknown_route(path)


def unknown_route(path: str) -> errors.UnknownRoute:
    """A 404 that says what the client most likely meant (path stacking is the usual cause)."""
    rest = normalize(path)
    guess = _likely_route(rest)
    if guess is None:
        return errors.UnknownRoute(
            f"Unknown path {path!r}. This gateway serves /v1/chat/completions, /v1/responses, /v1/completions, "
            "/v1/models and /healthz.")
    prefix, route = guess
    hint = (f"Unknown path {path!r}: it looks like the route {'/v1' + route!r} with extra segments "
            f"({prefix or '(none)'} before it, {rest[len(prefix) + len(route):] or '(none)'} after it). "
            f"Your client probably appends {route!r} to a base URL that already ends in a route. "
            "Set the client's base URL to 'http://<gateway>/v1' (nothing after /v1).")
    return errors.UnknownRoute(hint)


def _likely_route(rest: str) -> tuple[str, str] | None:
    """The earliest known route embedded in ``rest``, as (what came before it, the route)."""
    best: tuple[int, str] | None = None
    for route in ("/chat/completions", "/responses", "/completions", "/models"):
        for m in re.finditer(re.escape(route) + r"(?=/|$)", rest):
            if route == "/completions" and rest[: m.start()].endswith("/chat"):
                continue
            if best is None or m.start() < best[0]:
                best = (m.start(), route)
            break
    if best is None:
        return None
    return rest[: best[0]], best[1]
