"""The lean dispatch calls exactly what mitmproxy's own ``trigger_event`` calls, in the same order, with the
same error handling: checked against mitmproxy's on generated addon trees, and case by case."""

from __future__ import annotations

import asyncio
import logging
import types
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mitmproxy import exceptions, optmanager
from mitmproxy.addonmanager import AddonManager
from mitmproxy.proxy.layers.http import HttpRequestHook
from mitmproxy.test import taddons, tflow

from antigravity_gw.mitm import dispatch
from antigravity_gw.mitm.dispatch import LeanDispatch, lean_trigger_event

# How a generated addon answers the ``request`` hook:
KINDS = ("absent",  # no such attribute
         "falsy",  # request = None
         "sync", "async",
         "raise",  # ValueError: logged, the next addon of the chain still runs
         "halt",  # AddonHalt: the event ends
         "module",  # a module imported under the hook's name: skipped
         "not_callable",  # request = 5: an AddonManagerError, logged
         "grow",  # adds a child to its own addons list
         "replace",  # replaces its addons with a new list (read after the hook ran, as Script.addons)
         "exploding")  # looking the hook up raises (a __getattr__ gone wrong): logged

Spec = tuple[str, tuple[Any, ...] | None]  # (kind, children or None: no ``addons`` attribute)

specs: st.SearchStrategy[Spec] = st.recursive(
    st.tuples(st.sampled_from(KINDS), st.none()),
    lambda children: st.tuples(st.sampled_from(KINDS), st.lists(children, max_size=3).map(tuple)),
    max_leaves=12)


@dataclass
class Run:
    calls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class Toy:
    """A generated addon; its repr (in mitmproxy's error messages) names its place in the tree."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __repr__(self) -> str:
        return f"Toy({self.path})"


class ExplodingToy(Toy):
    def __getattr__(self, name: str) -> Any:  # only for what the instance lacks: the hook, maybe addons
        raise RuntimeError(f"explode {self.path} {name}")


def build(spec: Spec, run: Run, path: str) -> object:
    kind, children = spec
    addon: Any = ExplodingToy(path) if kind == "exploding" else Toy(path)
    if children is not None:
        addon.addons = [build(child, run, f"{path}.{i}") for i, child in enumerate(children)]

    def sync_hook(flow: Any) -> None:
        run.calls.append(path)

    async def async_hook(flow: Any) -> None:
        await asyncio.sleep(0)
        run.calls.append(path)

    def raising_hook(flow: Any) -> None:
        run.calls.append(path)
        raise ValueError(f"boom {path}")

    def halting_hook(flow: Any) -> None:
        run.calls.append(path)
        raise exceptions.AddonHalt()

    def growing_hook(flow: Any) -> None:
        run.calls.append(path)
        if isinstance(getattr(addon, "addons", None), list):
            grown: Any = Toy(f"{path}.grown")
            grown.request = lambda flow: run.calls.append(f"{path}.grown")
            addon.addons.append(grown)

    def replacing_hook(flow: Any) -> None:
        run.calls.append(path)
        if hasattr(addon, "addons"):
            replaced: Any = Toy(f"{path}.replaced")
            replaced.request = lambda flow: run.calls.append(f"{path}.replaced")
            addon.addons = [replaced]

    hook = {"falsy": None, "sync": sync_hook, "async": async_hook, "raise": raising_hook,
            "halt": halting_hook, "module": types, "not_callable": 5, "grow": growing_hook,
            "replace": replacing_hook}
    if kind not in ("absent", "exploding"):
        addon.request = hook[kind]
    return addon


def dispatched(chain_spec: list[Spec], trigger: Any, caplog: pytest.LogCaptureFixture) -> Run:
    run = Run()
    manager = AddonManager(types.SimpleNamespace(options=optmanager.OptManager()))
    manager.chain = [build(spec, run, str(i)) for i, spec in enumerate(chain_spec)]
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="mitmproxy.addonmanager"):
        asyncio.run(trigger(manager, HttpRequestHook(tflow.tflow())))
    run.errors = [r.getMessage() for r in caplog.records]
    return run


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chain_spec=st.lists(specs, max_size=6))
def test_the_lean_dispatch_calls_what_mitmproxy_calls_in_its_order_and_logs_the_same_errors(
        chain_spec: list[Spec], caplog: pytest.LogCaptureFixture) -> None:
    mitmproxys = dispatched(chain_spec, AddonManager.trigger_event, caplog)
    lean = dispatched(chain_spec, lean_trigger_event, caplog)
    assert lean.calls == mitmproxys.calls
    assert lean.errors == mitmproxys.errors


def test_a_failing_hook_is_logged_and_the_next_addon_of_the_chain_still_runs(caplog):
    run = dispatched([("raise", (("sync", None),)), ("sync", None)], lean_trigger_event, caplog)
    assert run.calls == ["0", "1"]  # like mitmproxy: the failing addon's children are not reached
    assert run.errors == ["Addon error: boom 0"]


def test_addon_halt_ends_the_event(caplog):
    run = dispatched([("sync", None), ("halt", None), ("sync", None)], lean_trigger_event, caplog)
    assert run.calls == ["0", "1"]
    assert run.errors == []


def test_nested_addons_run_depth_first_and_children_added_by_a_hook_are_seen(caplog):
    tree = [("absent", (("grow", ()), ("async", (("sync", None),)), ("replace", (("sync", None),)))),
            ("sync", None)]
    run = dispatched(tree, lean_trigger_event, caplog)
    assert run.calls == ["0.0", "0.0.grown", "0.1", "0.1.0", "0.2", "0.2.replaced", "1"]


def test_options_errors_propagate_as_with_mitmproxy():
    def invalid(flow: Any) -> None:
        raise exceptions.OptionsError("bad")

    manager = AddonManager(types.SimpleNamespace(options=optmanager.OptManager()))
    manager.chain = [types.SimpleNamespace(request=invalid)]
    with pytest.raises(exceptions.OptionsError):
        asyncio.run(lean_trigger_event(manager, HttpRequestHook(tflow.tflow())))


def test_an_addon_without_the_hook_is_not_looked_into():
    looked: list[str] = []

    class Watched:
        def __getattr__(self, name: str) -> Any:
            looked.append(name)
            raise AttributeError(name)

    manager = AddonManager(types.SimpleNamespace(options=optmanager.OptManager()))
    manager.chain = [Watched()]
    asyncio.run(lean_trigger_event(manager, HttpRequestHook(tflow.tflow())))
    assert looked == ["request", "addons"]  # the two checks mitmproxy's traverse and hook lookup make too


async def test_the_addon_installs_on_its_master_and_leaves_with_the_option_or_at_done():
    addon = LeanDispatch()
    with taddons.context(addon) as tctx:
        manager = tctx.master.addons
        tctx.configure(addon, ag_lean_dispatch=True)  # as a script's load does: every option is "updated"
        assert vars(manager)["trigger_event"].__func__ is lean_trigger_event
        await manager.trigger_event(HttpRequestHook(tflow.tflow()))  # what mitmproxy calls: it works
        tctx.configure(addon, ag_lean_dispatch=False)
        assert "trigger_event" not in vars(manager)
        tctx.configure(addon, ag_lean_dispatch=True)
        assert "trigger_event" in vars(manager)
        addon.done()
        assert "trigger_event" not in vars(manager)


def test_it_stays_out_of_the_way_of_another_replacement(caplog):
    async def someone_elses(event: Any) -> None:
        return None

    addon = LeanDispatch()
    with taddons.context(addon) as tctx:
        manager = tctx.master.addons
        manager.trigger_event = someone_elses
        with caplog.at_level(logging.INFO):
            tctx.configure(addon, ag_lean_dispatch=True)
        assert manager.trigger_event is someone_elses
        assert "leaving it as it is" in caplog.text
        addon.done()
        assert manager.trigger_event is someone_elses


def test_it_installs_only_on_the_addon_manager_it_was_written_for():
    class Changed(AddonManager):
        async def trigger_event(self, event: Any) -> None:
            return None

    assert not dispatch.install(Changed(types.SimpleNamespace(options=optmanager.OptManager())))
    assert dispatch.install(AddonManager(types.SimpleNamespace(options=optmanager.OptManager())))
