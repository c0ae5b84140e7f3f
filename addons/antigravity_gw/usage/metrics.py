"""Prometheus metrics (``GET /metrics``), fed by the same ``RequestRecord`` as the ledger.

Counters and histograms are updated once per billed request; the account gauges
(``ag_account_state``, ``ag_quota_remaining_ratio``) are read from the pool when scraped, so they are
never stale and cost nothing between scrapes. Each gateway has its own registry (not the process-wide
default one): tests and reloads start from zero, and nothing else in the process leaks into ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .record import RequestRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ACCOUNT_STATES = ("ready", "cooling", "disabled")
# Seconds: from a fast non-stream answer to a long reasoning stream.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
FIRST_CHUNK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# A model name can come from the client (a refused or unknown model): past this many distinct names, new
# ones are counted as "other", so no caller can grow the metrics without end.
MAX_MODELS = 200
OTHER = "other"
MAX_LABEL = 100
MAX_CHILDREN = 10_000
TOKEN_KINDS = ("prompt", "completion", "cached", "reasoning")


@dataclass(frozen=True, slots=True)
class AccountGauge:
    account: str
    state: str  # one of ACCOUNT_STATES
    quota: tuple[tuple[str, float], ...] = ()  # (model, remaining fraction 0..1)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "ag_requests",
            "Client requests to model routes.",
            ("route", "model", "account", "status", "key"),
            registry=self.registry,
        )
        self.tokens = Counter(
            "ag_tokens",
            "Tokens Google reported, by kind (prompt, completion, cached, "
            "reasoning; cached is part of prompt, reasoning of completion).",
            ("kind", "model", "account", "key"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "ag_request_duration_seconds",
            "From the request to the last byte of the answer.",
            ("route",),
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.first_chunk = Histogram(
            "ag_first_chunk_seconds",
            "From the request to the first byte of the answer (the first translated chunk of a stream).",
            ("route",),
            buckets=FIRST_CHUNK_BUCKETS,
            registry=self.registry,
        )
        self.attempts = Counter(
            "ag_upstream_attempts",
            "Upstream attempts by outcome (ok: the one that answered; failed: every other).",
            ("outcome",),
            registry=self.registry,
        )
        self.models: set[str] = set()
        self._children: dict[tuple[str, str, str, int, str], tuple[Any, ...]] = {}
        self._ok, self._failed = self.attempts.labels("ok"), self.attempts.labels("failed")
        self.accounts = AccountCollector()
        self.registry.register(self.accounts)

    def observe(self, r: RequestRecord) -> None:
        """Once per billed request: a few dict lookups and increments (``labels()`` validates and locks on
        every call, so each label combination's children are looked up once and kept)."""
        model = self._model_label(r.mapped_model or r.client_model)
        key = (r.route, model, r.account, r.status, r.key_name)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = self._make_children(*key)
        requests, tokens, duration, first_chunk = children
        requests.inc()
        if r.has_tokens:
            counts = (r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.reasoning_tokens)
            for counter, count in zip(tokens, counts, strict=True):
                counter.inc(count)
        if r.duration_ms is not None:
            duration.observe(r.duration_ms / 1000)
        if r.first_chunk_ms is not None:
            first_chunk.observe(r.first_chunk_ms / 1000)
        if r.attempts:
            answered = 1 if 0 < r.status < 400 else 0
            if answered:
                self._ok.inc()
            if r.attempts > answered:
                self._failed.inc(r.attempts - answered)

    def _make_children(self, route: str, model: str, account: str, status: int, key: str) -> tuple[Any, ...]:
        if len(self._children) >= MAX_CHILDREN:
            self._children.clear()  # bounded: the children live on in the metrics, only this cache restarts
        tokens = tuple(self.tokens.labels(kind, model, account, key) for kind in TOKEN_KINDS)
        return (self.requests.labels(route, model, account, str(status), key), tokens,
                self.duration.labels(route), self.first_chunk.labels(route))

    def _model_label(self, model: str) -> str:
        if model in self.models:
            return model
        if len(self.models) >= MAX_MODELS or len(model) > MAX_LABEL:
            return OTHER
        self.models.add(model)
        return model

    def render(self, accounts: Iterable[AccountGauge]) -> bytes:
        """The exposition text, with the account gauges as they are now."""
        self.accounts.snapshot = tuple(accounts)
        return generate_latest(self.registry)


class AccountCollector(Collector):
    def __init__(self) -> None:
        self.snapshot: tuple[AccountGauge, ...] = ()

    def collect(self) -> Iterator[Metric]:
        state = GaugeMetricFamily(
            "ag_account_state",
            "1 for each account's current state, 0 for the others.",
            labels=("account", "state"),
        )
        quota = GaugeMetricFamily(
            "ag_quota_remaining_ratio",
            "The fraction of an account's quota for a model left at its last quota refresh.",
            labels=("account", "model"),
        )
        for a in self.snapshot:
            for s in ACCOUNT_STATES:
                state.add_metric((a.account, s), 1.0 if a.state == s else 0.0)
            for model, ratio in a.quota:
                quota.add_metric((a.account, model), ratio)
        yield state
        yield quota

    def describe(self) -> Iterator[Metric]:
        return iter(())
