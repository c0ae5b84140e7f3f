"""Which IP addresses a public-only fetch may connect to: a pure classifier, no I/O.

Rules (from IANA's special-purpose address registries, RFC 6890 and successors):
- an explicit table of networks that are not globally reachable, so the answer does not depend on
  which Python version's ``ipaddress`` flags are in use (they changed in 3.12.4 and 3.13);
- IPv6 forms that carry an IPv4 address (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``, NAT64
  ``64:ff9b::/96``) are judged by the address they carry, so ``::ffff:127.0.0.1`` is loopback;
- as a belt, anything ``ipaddress`` itself calls non-global, multicast, reserved or unspecified.

``refusal(address)`` returns why an address is refused (for the operator's log, never the client)
or ``None`` when it may be connected to.
"""

from __future__ import annotations

import ipaddress
from typing import Final

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4: Final = tuple((ipaddress.IPv4Network(net), why) for net, why in (
    ("0.0.0.0/8", "unspecified (this host)"),
    ("10.0.0.0/8", "private"),
    ("100.64.0.0/10", "carrier-grade NAT (shared)"),
    ("127.0.0.0/8", "loopback"),
    ("169.254.0.0/16", "link-local (cloud metadata lives here)"),
    ("172.16.0.0/12", "private"),
    ("192.0.0.0/24", "IETF protocol assignments"),
    ("192.0.2.0/24", "documentation"),
    ("192.88.99.0/24", "6to4 relay anycast"),
    ("192.168.0.0/16", "private"),
    ("198.18.0.0/15", "benchmarking"),
    ("198.51.100.0/24", "documentation"),
    ("203.0.113.0/24", "documentation"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved (and broadcast)"),
))
_V6: Final = tuple((ipaddress.IPv6Network(net), why) for net, why in (
    ("::/128", "unspecified"),
    ("::1/128", "loopback"),
    ("64:ff9b:1::/48", "local-use NAT64"),
    ("::/8", "reserved (IPv4-compatible and others)"),
    ("100::/64", "discard-only"),
    ("2001::/23", "IETF protocol assignments (Teredo and others)"),
    ("2001:db8::/32", "documentation"),
    ("3fff::/20", "documentation"),
    ("5f00::/16", "segment routing"),
    ("fc00::/7", "unique local (private)"),
    ("fe80::/10", "link-local"),
    ("fec0::/10", "site-local"),
    ("ff00::/8", "multicast"),
))
_NAT64: Final = ipaddress.IPv6Network("64:ff9b::/96")


def refusal(address: IPAddress) -> str | None:
    """Why a public-only fetch must not connect to ``address``; ``None`` when it is globally reachable."""
    carried = embedded_ipv4(address)
    if carried is not None:
        why = refusal(carried)
        return f"{why}, carried in {address}" if why else None
    table = _V4 if address.version == 4 else _V6
    for network, why in table:
        if address in network:
            return why
    if address.is_multicast or address.is_reserved or address.is_unspecified or not address.is_global:
        return "not globally reachable"
    return None


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), if any."""
    if address.version == 4:
        return None
    assert isinstance(address, ipaddress.IPv6Address)
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def parse_address(text: str) -> IPAddress | None:
    """An IP literal (brackets and an IPv6 zone allowed), or ``None`` for a host name."""
    try:
        return ipaddress.ip_address(text.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
