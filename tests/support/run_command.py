"""Test-only mitmproxy script: ``GET /_test/command/<name>`` answers with the lines of that mitmproxy
command (e.g. ``ag.accounts``), as mitmweb's command bar would show them. Loaded after the gateway,
it replaces the gateway's 404 for that path, so e2e tests can read commands of a real mitmdump."""

from mitmproxy import ctx, http

PREFIX = "/_test/command/"


class RunCommand:
    def request(self, flow: http.HTTPFlow) -> None:
        if flow.request.path.startswith(PREFIX):
            lines = ctx.master.commands.execute(flow.request.path.removeprefix(PREFIX))
            flow.response = http.Response.make(200, "\n".join(lines), {"content-type": "text/plain"})


addons = [RunCommand()]
