"""usage/metrics.py: counters and histograms from records, account gauges at scrape time."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families
from test_ledger import record

from antigravity_gw.usage.metrics import AccountGauge, Metrics


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_records_become_counters_and_histograms():
    m = Metrics()
    m.observe(record())
    m.observe(record(status=429, attempts=3, has_tokens=False, first_chunk_ms=None, duration_ms=2500.0))
    got = samples(m.render([AccountGauge("a@example.com", "cooling", (("gemini-2.5-flash", 0.25),))]))
    labels = (
        ("account", "a@example.com"),
        ("key", "alice"),
        ("model", "gemini-2.5-flash"),
        ("route", "chat.completions"),
    )
    assert got[("ag_requests_total", (*labels[:3], labels[3], ("status", "200")))] == 1
    assert got[("ag_requests_total", (*labels[:3], labels[3], ("status", "429")))] == 1
    for kind, count in (("prompt", 11), ("completion", 9), ("cached", 3), ("reasoning", 2)):
        assert got[("ag_tokens_total", (labels[0], labels[1], ("kind", kind), labels[2]))] == count
    assert got[("ag_upstream_attempts_total", (("outcome", "ok"),))] == 1
    assert got[("ag_upstream_attempts_total", (("outcome", "failed"),))] == 3
    assert got[("ag_request_duration_seconds_count", (("route", "chat.completions"),))] == 2
    assert got[("ag_request_duration_seconds_sum", (("route", "chat.completions"),))] == 2.54
    assert got[("ag_first_chunk_seconds_count", (("route", "chat.completions"),))] == 1
    assert got[("ag_account_state", (("account", "a@example.com"), ("state", "cooling")))] == 1
    assert got[("ag_account_state", (("account", "a@example.com"), ("state", "ready")))] == 0
    assert (
        got[("ag_quota_remaining_ratio", (("account", "a@example.com"), ("model", "gemini-2.5-flash")))]
        == 0.25
    )


def test_each_gateway_has_its_own_registry():
    a, b = Metrics(), Metrics()
    a.observe(record())
    assert b"ag_requests_total{" not in b.render([])


def test_client_chosen_model_names_cannot_grow_the_metrics_without_end():
    from antigravity_gw.usage import metrics as mod

    m = Metrics()
    for i in range(mod.MAX_MODELS + 50):
        m.observe(record(mapped_model="", client_model=f"made-up-{i}", status=403, has_tokens=False))
    m.observe(record(mapped_model="x" * 500))
    models = {
        s.labels["model"]
        for family in text_string_to_metric_families(m.render([]).decode())
        for s in family.samples
        if s.name == "ag_requests_total"
    }
    assert len(models) == mod.MAX_MODELS + 1 and mod.OTHER in models
