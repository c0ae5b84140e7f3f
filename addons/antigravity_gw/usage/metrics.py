"""Prometheus metrics (``GET /metrics``), fed by the same ``RequestRecord`` as the ledger.

Counters and histograms are updated once per billed request; the account gauges
(``ag_account_state``, ``ag_quota_remaining_ratio``) are read from the pool when scraped, so they are
never stale and cost nothing between scrapes. Each gateway has its own registry (not the process-wide
default one): tests and reloads start from zero, and nothing else in the process leaks into ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .record import RequestRecord

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
ACCOUNT_STATES = ("ready", "cooling", "disabled")
# Seconds: from a fast non-stream answer to a long reasoning stream.
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
FIRST_CHUNK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


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
        self.accounts = AccountCollector()
        self.registry.register(self.accounts)

    def observe(self, r: RequestRecord) -> None:
        model = r.mapped_model or r.client_model
        self.requests.labels(r.route, model, r.account, str(r.status), r.key_name).inc()
        if r.has_tokens:
            for kind, count in (
                ("prompt", r.prompt_tokens),
                ("completion", r.completion_tokens),
                ("cached", r.cached_tokens),
                ("reasoning", r.reasoning_tokens),
            ):
                self.tokens.labels(kind, model, r.account, r.key_name).inc(count)
        if r.duration_ms is not None:
            self.duration.labels(r.route).observe(r.duration_ms / 1000)
        if r.first_chunk_ms is not None:
            self.first_chunk.labels(r.route).observe(r.first_chunk_ms / 1000)
        if r.attempts:
            answered = 1 if 0 < r.status < 400 else 0
            if answered:
                self.attempts.labels("ok").inc()
            if r.attempts > answered:
                self.attempts.labels("failed").inc(r.attempts - answered)

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
