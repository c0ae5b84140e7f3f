"""Test-only mitmproxy script: e2e tests stand a "public" host on loopback, so nothing leaves the machine.

Loaded with an extra ``-s tests/support/pretend_public.py``. It hands the Gateway's image fetcher
(through its ``image_fetcher_seams``) a classifier that treats 127.0.0.2 as a public address, and a
resolver for a few ``.test`` names:
- ``public.test`` is 127.0.0.2 (the "public" host);
- ``internal.test`` is 127.0.0.1 (a name that resolves to an internal address).
Other names go to the system resolver. (DNS rebinding is tested on the fetcher itself,
tests/unit/upstream/test_media.py, where the connector's DNS cache can be kept out of the way.)
"""

import socket

import aiohttp
from mitmproxy import ctx

from antigravity_gw.upstream import addresses

FAKE_PUBLIC = "127.0.0.2"
NAMES = {"public.test": FAKE_PUBLIC, "internal.test": "127.0.0.1"}


def pretend_public(address):
    return None if str(address) == FAKE_PUBLIC else addresses.refusal(address)


class TestNames(aiohttp.abc.AbstractResolver):
    def __init__(self):
        self.system = aiohttp.ThreadedResolver()

    async def resolve(self, host, port=0, family=socket.AF_INET):
        address = NAMES.get(host)
        if address is None:
            return await self.system.resolve(host, port, family)
        return [{"hostname": host, "host": address, "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": 0}]

    async def close(self):
        await self.system.close()


class PretendPublic:
    def running(self):
        ctx.master.addons.get("gateway").image_fetcher_seams = {"refusal": pretend_public,
                                                                "resolver_factory": TestNames}


addons = [PretendPublic()]
