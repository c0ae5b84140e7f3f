"""Test-only mitmproxy script: mitmweb's interception, scripted. Flows matching ``intercept`` are held
until the test says so: the script writes ``<hold_dir>/held`` once a flow is held, and when the test
creates ``<hold_dir>/release`` it edits the held request, which is the client's OpenAI request (as a
user would in mitmweb: here it adds ``temperature``), and resumes it. The test checks that nothing went
upstream while held and that the edit was sent; no clock decides anything (a timed hold raced the
test's own sleep on a busy machine)."""

import asyncio
import time
from pathlib import Path

import orjson
from mitmproxy import ctx, http
from mitmproxy.addons.intercept import Intercept

MAX_HOLD_SECONDS = 60.0  # a test that never releases still ends
_tasks: set[asyncio.Task] = set()


class EditThenResume:
    def load(self, loader) -> None:
        loader.add_option("hold_dir", str, "", "where 'held' is written and 'release' is awaited")

    def request(self, flow: http.HTTPFlow) -> None:
        if flow.intercepted:
            task = asyncio.get_running_loop().create_task(self._later(flow))
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)

    async def _later(self, flow: http.HTTPFlow) -> None:
        hold_dir = Path(ctx.options.hold_dir)
        (hold_dir / "held").write_text(flow.id)
        deadline = time.monotonic() + MAX_HOLD_SECONDS
        while not (hold_dir / "release").exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        body = orjson.loads(flow.request.content or b"{}")
        body["temperature"] = 0.123
        flow.request.content = orjson.dumps(body)
        flow.resume()


addons = [Intercept(), EditThenResume()]
