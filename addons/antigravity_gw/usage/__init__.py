"""Who used what: the per-request record, the SQLite usage ledger, its reports, Prometheus metrics and
client keys with their limits. No mitmproxy here: ``mitm/usage.py`` is the glue."""
