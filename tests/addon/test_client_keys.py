"""mitm/client_keys.py: the keys file read at configure time, reloaded when it changes, kept when broken."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest

from antigravity_gw.mitm.client_keys import ClientKeys


def write(path: Path, *names: str, mtime: int = 1) -> Path:
    path.write_bytes(orjson.dumps({"keys": [{"name": n, "key": f"sk-{n}-0123456789"} for n in names]}))
    os.utime(path, ns=(mtime * 10**9, mtime * 10**9))
    return path


async def test_a_changed_file_replaces_the_keys_and_a_broken_one_keeps_them(tmp_path: Path):
    keys = ClientKeys()
    path = write(tmp_path / "keys.json", "alice")
    keys.configure(path)
    assert list(keys.by_name) == ["alice"]
    assert await keys.reload_if_changed() is False, "unchanged"
    write(path, "alice", "bob", mtime=2)
    assert await keys.reload_if_changed() is True
    assert keys.ring.identify(["sk-bob-0123456789"]).name == "bob"
    path.write_bytes(b'{"keys": [')
    os.utime(path, ns=(3 * 10**9, 3 * 10**9))
    assert await keys.reload_if_changed() is False
    assert list(keys.by_name) == ["alice", "bob"], "a half-written file must not lock everyone out"


def test_no_file_means_no_named_keys(tmp_path: Path):
    keys = ClientKeys()
    keys.configure(write(tmp_path / "keys.json", "alice"))
    keys.configure(None)
    assert not keys.ring and keys.by_name == {}


def test_an_unreadable_file_is_a_value_error(tmp_path: Path):
    with pytest.raises(ValueError, match="ag_api_keys_file: cannot read"):
        ClientKeys().configure(tmp_path / "missing.json")
