"""Test-only mitmproxy script: mitmweb's interception, scripted. Flows matching ``intercept`` are held;
after ``HOLD_SECONDS`` this addon edits the held upstream request (as a user would in mitmweb) and
resumes it, so a test can check that nothing went upstream meanwhile and that the edit was sent."""

import asyncio

import orjson
from mitmproxy import http
from mitmproxy.addons.intercept import Intercept

HOLD_SECONDS = 1.5
_tasks: set[asyncio.Task] = set()


class EditThenResume:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.intercepted:
            task = asyncio.get_running_loop().create_task(self._later(flow))
            _tasks.add(task)
            task.add_done_callback(_tasks.discard)

    async def _later(self, flow: http.HTTPFlow) -> None:
        await asyncio.sleep(HOLD_SECONDS)
        body = orjson.loads(flow.request.content or b"{}")
        body.setdefault("generationConfig", {})["temperature"] = 0.123
        flow.request.content = orjson.dumps(body)
        flow.resume()


addons = [Intercept(), EditThenResume()]
