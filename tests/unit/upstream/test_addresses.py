"""The public-only address classifier, as tables: every special-purpose form, and public ones that pass."""

from __future__ import annotations

import ipaddress

import pytest

from antigravity_gw.upstream.addresses import embedded_ipv4, parse_address, refusal

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.255", "carrier-grade NAT"),
    ("0.0.0.0", "unspecified"),
    ("0.1.2.3", "unspecified"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "broadcast"),
    ("192.0.0.9", "IETF"),
    ("192.0.2.1", "documentation"),
    ("198.18.0.1", "benchmarking"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fd00::1", "unique local"),
    ("fc00::1", "unique local"),
    ("fe80::1", "link-local"),
    ("fec0::1", "site-local"),
    ("ff02::1", "multicast"),
    ("::127.0.0.1", "reserved"),  # IPv4-compatible (deprecated)
    ("2001:db8::1", "documentation"),
    ("2001::1", "Teredo"),
    ("64:ff9b:1::1", "local-use NAT64"),
    ("100::1", "discard"),
    # IPv6 forms that carry an internal IPv4 address
    ("::ffff:127.0.0.1", "loopback, carried in"),
    ("::ffff:169.254.169.254", "link-local"),
    ("::ffff:10.0.0.1", "private, carried in"),
    ("::ffff:0.0.0.0", "unspecified"),
    ("2002:7f00:1::", "loopback, carried in"),
    ("2002:a9fe:a9fe::1", "link-local"),
    ("64:ff9b::7f00:1", "loopback, carried in"),
    ("64:ff9b::a00:1", "private, carried in"),
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "100.63.255.255", "100.128.0.0", "172.32.0.1",
          "2001:4860:4860::8888", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1",
          "64:ff9b::808:808"]


@pytest.mark.parametrize(("text", "reason"), REFUSED)
def test_internal_addresses_are_refused_with_a_reason(text: str, reason: str) -> None:
    address = parse_address(text)
    assert address is not None
    why = refusal(address)
    assert why is not None and reason in why


@pytest.mark.parametrize("text", PUBLIC)
def test_public_addresses_pass(text: str) -> None:
    address = parse_address(text)
    assert address is not None
    assert refusal(address) is None


@pytest.mark.parametrize(("text", "carried"), [("::ffff:1.2.3.4", "1.2.3.4"), ("2002:102:304::", "1.2.3.4"),
                                               ("64:ff9b::102:304", "1.2.3.4"), ("2606:4700::1", None),
                                               ("1.2.3.4", None)])
def test_embedded_ipv4(text: str, carried: str | None) -> None:
    address = ipaddress.ip_address(text)
    assert embedded_ipv4(address) == (ipaddress.IPv4Address(carried) if carried else None)


@pytest.mark.parametrize(("text", "expected"), [("[::1]", "::1"), ("fe80::1%eth0", "fe80::1"),
                                                ("127.0.0.1", "127.0.0.1"), ("localhost", None),
                                                ("2130706433", None), ("example.com", None)])
def test_parse_address_takes_literals_only(text: str, expected: str | None) -> None:
    assert parse_address(text) == (ipaddress.ip_address(expected) if expected else None)
