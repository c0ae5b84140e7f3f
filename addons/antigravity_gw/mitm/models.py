"""``GET /v1/models`` and ``GET /v1/models/{id}``, answered by the gateway itself.

The list is what clients can ask for: the models the accounts really have (asked from Google,
cached) plus the mapping table's aliases. It never fails: with no accounts, or when Google does not
answer, it falls back to the mapping targets and the built-in defaults.
"""

from __future__ import annotations

from mitmproxy import http

from .. import errors
from ..openai_api.routes import Route, RouteKind
from ..upstream import catalog
from ..upstream.available_models import AvailableModels, Fetch
from ..upstream.pool import Pool
from . import flows
from .model_map import ModelMap


class ModelsEndpoint:
    def __init__(self, pool: Pool, model_map: ModelMap, available: AvailableModels | None = None) -> None:
        self.pool = pool
        self.model_map = model_map
        self.available = available or AvailableModels()

    async def answer(self, route: Route, fetch: Fetch | None, *, anthropic: bool = False) -> http.Response:
        """``fetch`` asks Google for one account's models; ``None`` (not running yet) lists the fallback.
        ``anthropic``: the client sent ``anthropic-version``, so it reads Anthropic's Models API shape."""
        upstream = await self._upstream(fetch)
        names = [*self.model_map.aliases(), *catalog.builtin_aliases(upstream)]
        listed = catalog.model_list(names, upstream)
        if route.kind == RouteKind.MODELS:
            if anthropic:
                return flows.json_response(200, catalog.anthropic_model_list(listed))
            return flows.json_response(200, {"object": "list", "data": listed})
        found = catalog.find_model(route.param, listed, self.model_map.table)
        if found is None:
            raise errors.NotFound(
                f"The model {route.param!r} does not exist or your accounts cannot use it; GET /v1/models "
                "lists the models this gateway serves (add an alias with ag_model_map or ag_model_map_file).",
                param="model", code="model_not_found")
        mapped = self.model_map.resolve(route.param)
        answer = catalog.anthropic_model(found) if anthropic else found
        return flows.json_response(200, answer, {flows.MAPPED_MODEL_HEADER: mapped})

    async def _upstream(self, fetch: Fetch | None) -> list[str]:
        ids = await self.available.ids(self.pool.accounts, fetch) if fetch is not None else set()
        return sorted(ids) or catalog.fallback_models(self.model_map.table)
