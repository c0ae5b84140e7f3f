"""Test-only mitmproxy script: the gateway's first account load takes ``SLOW_SECONDS`` longer, so a test
can watch ``/healthz`` answer "starting" before it answers "ok". Loaded with an extra ``-s`` after the
gateway's own script: its ``load`` runs before the gateway's ``running``, which makes that first load."""

import asyncio

from mitmproxy import ctx

SLOW_SECONDS = 2.0


class SlowFirstLoad:
    def load(self, loader):
        watcher = ctx.master.addons.get("gateway").watcher
        poll = watcher.poll

        async def slow_once():
            watcher.poll = poll
            await asyncio.sleep(SLOW_SECONDS)
            return await poll()

        watcher.poll = slow_once


addons = [SlowFirstLoad()]
