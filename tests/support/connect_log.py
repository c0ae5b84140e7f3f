"""Test-only mitmproxy script: appends every server connection mitmproxy tries to open to a file.

Loaded with an extra ``-s tests/support/connect_log.py --set connect_log=<file>``. It records the
attempt whatever happens next (the gateway's guard may refuse it), so a test can prove that
mitmproxy never even tried to reach a host. A tiny blocking append is fine in a test helper.
"""

from mitmproxy import ctx


class ConnectLog:
    def load(self, loader):
        loader.add_option("connect_log", str, "", "Gets one 'host:port sni=...' line per connection.")

    def server_connect(self, data):
        if not ctx.options.connect_log:
            return
        host, port = data.server.address or ("?", 0)
        with open(ctx.options.connect_log, "a") as fh:
            fh.write(f"{host}:{port} sni={data.server.sni}\n")


addons = [ConnectLog()]
