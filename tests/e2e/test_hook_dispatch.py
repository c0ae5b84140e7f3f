"""``ag_lean_dispatch`` (mitm/dispatch.py) in a real mitmdump: another script's addons see the same hooks in
the same order with it on as with mitmproxy's own dispatch, and a failing hook there is logged as mitmproxy
logs it while the gateway still answers."""

from __future__ import annotations

import re
import time

import openai
import pytest

pytestmark = pytest.mark.e2e

WATCHER = '''
import logging
logger = logging.getLogger("watcher")

class Watcher:
    def __init__(self, tag):
        self.tag = tag
    def _seen(self, hook, flow):
        if "watched" in flow.request.headers.get("x-test", ""):
            logger.warning("seen %s %s", self.tag, hook)
    def requestheaders(self, flow): self._seen("requestheaders", flow)
    def request(self, flow): self._seen("request", flow)
    def responseheaders(self, flow): self._seen("responseheaders", flow)
    def response(self, flow): self._seen("response", flow)
    def update(self, flows):
        for flow in flows:
            self._seen("update", flow)

class Failing:
    def request(self, flow):
        if "watched" in flow.request.headers.get("x-test", ""):
            raise ValueError("watcher boom")

class Outer:  # nested addons, as mitmproxy allows
    def __init__(self):
        self.addons = [Watcher("inner"), Failing(), Watcher("after-failing")]

addons = [Watcher("first"), Outer(), Watcher("last")]
'''


INSTALLED = "ag_lean_dispatch: on"


def seen(gw, count: int) -> list[str]:
    deadline = time.monotonic() + 10
    while len(lines := re.findall(r"seen (\S+ \S+)", gw.log())) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return lines


@pytest.mark.parametrize("lean", [True, False])
def test_other_addons_see_the_same_hooks_in_order_and_a_failing_one_is_logged(start_gateway, tmp_path, lean):
    script = tmp_path / "watcher.py"
    script.write_text(WATCHER)
    gw = start_gateway(options={"ag_lean_dispatch": lean, "termlog_verbosity": "debug"},
                       extra_args=["-s", str(script)])
    assert (INSTALLED in gw.log()) is lean
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-x", max_retries=0, timeout=30,
                           default_headers={"x-test": "watched"})
    answer = client.chat.completions.create(model="gemini-2.5-flash",
                                            messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "echo: hi"
    # The gateway answers in its request hook (mitmproxy then calls responseheaders itself); an update
    # follows each hook. In the request hook, Failing's error ends the hook for the rest of the scripts'
    # addons ("after-failing", "last"): mitmproxy catches it around the addon of its chain that holds all
    # scripts.
    expected = ["first requestheaders", "inner requestheaders", "after-failing requestheaders",
                "last requestheaders",
                "first update", "inner update", "after-failing update", "last update",
                "first request", "inner request",
                "first update", "inner update", "after-failing update", "last update",
                "first responseheaders", "inner responseheaders", "after-failing responseheaders",
                "last responseheaders",
                "first update", "inner update", "after-failing update", "last update",
                "first response", "inner response", "after-failing response", "last response",
                "first update", "inner update", "after-failing update", "last update"]
    assert seen(gw, len(expected)) == expected
    assert gw.log().count("Addon error: watcher boom") == 1
