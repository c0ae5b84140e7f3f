"""One finished client request, as the access log, the usage ledger and the metrics all see it.

Collected once per request (``mitm/access_log.record_of``) and handed to every consumer, so the three
can never disagree about a request's tokens, account or status.
"""

from __future__ import annotations

from dataclasses import dataclass

# Routes whose requests are billed to someone: one ledger row and one metrics sample each.
MODEL_ROUTES = frozenset({
    "chat.completions", "responses", "completions", "responses.compact", "embeddings", "images.generations",
    "images.edits", "messages",
})


@dataclass(slots=True)
class RequestRecord:
    ts: float  # when the request started, unix seconds
    method: str
    path: str  # without the query string (it may carry a key)
    route: str  # the route kind ("chat.completions", ...), "" when the gateway never matched one
    key_name: str = ""  # the client key's name ("" without inbound auth)
    client_model: str = ""
    mapped_model: str = ""
    fallback_from: str = ""  # the upstream model the map chose when every account was out of it ("" if none)
    account: str = ""
    status: int = 0  # 0: no answer (the client left, or the connection failed)
    attempts: int = 0
    has_tokens: bool = False  # whether Google reported usage (a failure has none)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    first_chunk_ms: float | None = None
    duration_ms: float | None = None
    stream: bool = False
    error_code: str = ""  # the OpenAI error's code, or the connection error's message

    @property
    def billed(self) -> bool:
        """A request to a model route: it gets a ledger row and a metrics sample."""
        return self.route in MODEL_ROUTES

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
