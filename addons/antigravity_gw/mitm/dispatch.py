"""The LeanDispatch addon: mitmproxy's hook dispatch, the same calls in the same order, without its cost.

Why: ``AddonManager.trigger_event`` hands every event to each addon of the chain (about 40 built in,
plus the script that holds the gateway) and for each one builds a context manager (``safecall``), a
coroutine (``invoke_addon``) and two generators (``_iter_hooks``, ``traverse``), whether that addon has
the hook or not. A request the gateway answers triggers eight events (``requestheaders``, ``request``,
``responseheaders``, which mitmproxy calls for an answer made in ``request`` too, and ``response``, each
followed by ``update``). Measured under load (README "Performance"): this addon takes about a quarter
off the gateway's CPU per request.

What it changes of mitmproxy's behaviour: nothing. The chain is walked in the same order, each hook gets
the same arguments, a hook's exception is logged as mitmproxy logs it (``safecall``) and the next addon
of the chain still runs, ``AddonHalt`` ends the event, ``OptionsError`` propagates. Two shortcuts:
- an addon of the chain with neither the hook nor nested addons is skipped: mitmproxy calls nothing
  for it either;
- the nested addons of the others are walked in one loop instead of a stack of generators, in the same
  order: depth first, an addon's hook before its children, its ``addons`` read after its hook ran.

It is installed on this master's AddonManager only (an instance attribute, removed again in ``done`` or
when ``ag_lean_dispatch`` is turned off), and only on the AddonManager it was written against (mitmproxy
is pinned to 12.3.x): if anything else already replaced ``trigger_event``, it stays out of the way.
"""

from __future__ import annotations

import inspect
import logging
import types
from typing import Any

from mitmproxy import ctx, exceptions, hooks
from mitmproxy.addonmanager import AddonManager, Loader, safecall

from . import options

logger = logging.getLogger(__name__)

DISPATCH_OPTIONS: tuple[tuple[str, type | object, object, str], ...] = (
    ("ag_lean_dispatch", bool, True,
     "Dispatch mitmproxy's hooks without its per-addon overhead (same hooks, order and error handling; "
     "about a quarter less CPU per request). false: mitmproxy's own dispatch."),
)

_DONE = object()


async def lean_trigger_event(manager: AddonManager, event: hooks.Hook) -> None:
    """``AddonManager.trigger_event``, skipping the addons it would call nothing on."""
    name = event.name
    for addon in manager.chain:
        try:
            idle = not getattr(addon, name, None) and not hasattr(addon, "addons")
        except Exception:  # an addon whose attribute lookup fails: mitmproxy's path logs it, below
            idle = False
        if idle:
            continue
        try:
            with safecall():
                await invoke_addon(addon, event, name)
        except exceptions.AddonHalt:
            return


async def invoke_addon(addon: Any, event: hooks.Hook, name: str) -> None:
    """``AddonManager.invoke_addon`` over ``traverse``, as one loop. (Named like mitmproxy's: ``safecall``
    cuts a logged traceback at the frame of that name.)"""
    pending = [iter((addon,))]
    while pending:
        current = next(pending[-1], _DONE)
        if current is _DONE:
            pending.pop()
            continue
        func = getattr(current, name, None)
        if func:
            if callable(func):
                result = func(*event.args())
                if result is not None and inspect.isawaitable(result):
                    await result
            elif not isinstance(func, types.ModuleType):  # a module imported under a hook's name: skipped
                raise exceptions.AddonManagerError(f"Addon handler {name} ({current}) not callable")
        if hasattr(current, "addons"):
            pending.append(iter(current.addons))


def install(manager: AddonManager) -> bool:
    """Put the lean dispatch on ``manager``; False (and nothing changed) where it was not written for."""
    if "trigger_event" in vars(manager):
        return _is_lean(manager)
    if type(manager).trigger_event is not AddonManager.trigger_event or not isinstance(manager.chain, list):
        return False
    manager.trigger_event = types.MethodType(lean_trigger_event, manager)  # type: ignore[method-assign]
    return True


def uninstall(manager: AddonManager) -> None:
    if _is_lean(manager):
        del manager.trigger_event


def _is_lean(manager: AddonManager) -> bool:
    bound = vars(manager).get("trigger_event")
    return isinstance(bound, types.MethodType) and bound.__func__ is lean_trigger_event


class LeanDispatch:
    def load(self, loader: Loader) -> None:
        options.declare(loader, DISPATCH_OPTIONS)

    def configure(self, updated: set[str]) -> None:
        if "ag_lean_dispatch" not in updated:
            return
        manager = ctx.master.addons
        if not ctx.options.ag_lean_dispatch:
            uninstall(manager)
        elif install(manager):
            logger.debug("ag_lean_dispatch: on (mitmproxy's hooks are dispatched by mitm/dispatch.py)")
        else:
            logger.info("ag_lean_dispatch: mitmproxy's hook dispatch was replaced by something else; "
                        "leaving it as it is")

    def done(self) -> None:
        uninstall(ctx.master.addons)
