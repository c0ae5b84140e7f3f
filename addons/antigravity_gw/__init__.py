"""antigravity-gateway: an OpenAI-compatible API in front of Google accounts, as a mitmproxy addon.

Layout (the folders are the architecture):
- ``openai_api/``: the client-facing protocol (request models, routes), no I/O;
- ``translate/``: pure OpenAI <-> Gemini translation and sans-IO stream state machines;
- ``upstream/``: Google's side: dialects, error parsing, retry policy, accounts, OAuth, attempts, relay;
- ``mitm/``: mitmproxy glue, the only code that imports mitmproxy.
"""

from __future__ import annotations


def make_addons() -> list[object]:
    """The composition root: the gateway's addons in chain order.

    ``LeanDispatch`` first (no per-request hook: it makes mitmproxy's dispatch of every hook cheaper, see
    ``mitm/dispatch.py``); ``Auth`` next: it answers 401 before the Gateway sees a flow (the Gateway
    skips flows that have a response) and removes the client's key; ``Usage`` next (``/metrics``,
    ``/ag/usage``; the Gateway asks it about the named keys' limits once it knows the model); ``Cors``
    after them, so it also covers answers made by the others; ``Console`` (mitmweb's columns, content
    views, ``ag.flow.upstream``; no per-request hook); ``AccessLog`` last, to log each request as it
    finally went and hand its record to ``Usage`` (the ledger and the metrics).
    """
    from .idle_work import IdleWork
    from .mitm.access_log import AccessLog
    from .mitm.auth import Auth
    from .mitm.client_keys import ClientKeys
    from .mitm.console import Console
    from .mitm.cors import Cors
    from .mitm.dispatch import LeanDispatch
    from .mitm.gateway import Gateway
    from .mitm.usage import Usage

    keys = ClientKeys()
    idle = IdleWork()  # the finished requests' bookkeeping, run while the Gateway waits for Google
    gateway = Gateway(idle)
    usage = Usage(gateway.pool, keys, idle)
    gateway.admit_client = usage.admit
    usage.shared_link = lambda: gateway.shared  # ag_state_url: key limits across instances
    usage.quota_of = gateway.pool.quota.remaining  # ag_quota_remaining_ratio reads the quota snapshots
    return [LeanDispatch(), Auth(keys), usage, gateway, Cors(), Console(),
            AccessLog(sinks=[usage.record], idle=idle)]
