"""The model mapping table: ag_model_map plus a mapping file that is reloaded while the gateway runs."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson
import pytest
from mitmproxy import exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons

from antigravity_gw.mitm.gateway import Gateway
from antigravity_gw.mitm.model_map import ModelMap


def write(path: Path, mapping: dict | bytes) -> None:
    path.write_bytes(mapping if isinstance(mapping, bytes) else orjson.dumps(mapping))
    st = path.stat()  # make the change visible even within one mtime tick
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))


def test_exact_beats_wildcard_beats_builtin_beats_pass_through(tmp_path):
    f = tmp_path / "map.json"
    write(f, {"gpt-4o": "from-file", "my-*": "wild-file", "my-model-*": "more-specific"})
    mm = ModelMap()
    mm.configure((("gpt-4o", "from-option"),), f)
    assert mm.resolve("gpt-4o") == "from-option"  # the command line wins on the same name
    assert mm.resolve("my-model-x") == "more-specific"
    assert mm.resolve("my-x") == "wild-file"
    assert mm.resolve("gpt-4o-mini") == "gemini-2.5-flash"  # built-in
    assert mm.resolve("gemini-3-pro") == "gemini-3-pro"  # pass-through
    assert mm.aliases() == ["gpt-4o"]


def test_wildcard_ties_are_broken_deterministically():
    mm = ModelMap()
    mm.configure((("a*c", "first"), ("*bc", "second"), ("ab*", "third")), None)
    assert mm.resolve("abc") == "first"  # equal literal length and stars: table order
    mm.configure((("*a*c*", "more-stars"), ("a*c", "fewer-stars")), None)
    assert mm.resolve("abc") == "fewer-stars"


async def test_a_changed_file_is_reloaded(tmp_path):
    f = tmp_path / "map.json"
    write(f, {"alias": "gemini-2.5-flash"})
    mm = ModelMap()
    mm.configure((), f)
    assert not await mm.reload_if_changed()
    write(f, {"alias": "gemini-3-pro", "new": "gemini-2.5-pro"})
    assert await mm.reload_if_changed()
    assert mm.resolve("alias") == "gemini-3-pro"
    assert mm.resolve("new") == "gemini-2.5-pro"


@pytest.mark.parametrize("broken", [b"{not json", b"[1, 2]", b'{"a": 1}', b'{"a": "b*"}'])
async def test_a_file_broken_at_runtime_keeps_the_last_good_table(tmp_path, caplog, broken):
    f = tmp_path / "map.json"
    write(f, {"alias": "gemini-3-pro"})
    mm = ModelMap()
    mm.configure((), f)
    write(f, broken)
    assert not await mm.reload_if_changed()
    assert mm.resolve("alias") == "gemini-3-pro"
    assert "keeping the last mapping(s)" in caplog.text
    caplog.clear()
    assert not await mm.reload_if_changed()  # logged once, not every poll
    assert caplog.text == ""


async def test_a_file_removed_at_runtime_keeps_the_last_table_and_comes_back(tmp_path):
    f = tmp_path / "map.json"
    write(f, {"alias": "gemini-3-pro"})
    mm = ModelMap()
    mm.configure((), f)
    f.unlink()
    assert not await mm.reload_if_changed()
    assert mm.resolve("alias") == "gemini-3-pro"
    write(f, {"alias": "gemini-2.5-pro"})
    assert await mm.reload_if_changed()
    assert mm.resolve("alias") == "gemini-2.5-pro"


async def test_the_background_watcher_picks_up_changes_and_stops(tmp_path):
    f = tmp_path / "map.json"
    write(f, {"alias": "one"})
    mm = ModelMap()
    mm.poll_interval = 0.01
    mm.configure((), f)
    mm.start()
    write(f, {"alias": "two"})
    for _ in range(200):
        if mm.resolve("alias") == "two":
            break
        await asyncio.sleep(0.01)
    assert mm.resolve("alias") == "two"
    await mm.stop()
    assert not mm.watching


@pytest.mark.parametrize(("content", "words"), [(None, "cannot read"), (b"{", "not valid JSON"),
                                                (b'["a=b"]', "JSON object"),
                                                (b'{"a": "b*"}', "cannot contain")])
def test_a_bad_file_refuses_to_start(tmp_path, content, words):
    f = tmp_path / "map.json"
    if content is not None:
        f.write_bytes(content)
    addon = Gateway()
    with taddons.context(Proxyserver(), addon) as tctx, pytest.raises(exceptions.OptionsError, match=words):
        tctx.configure(addon, ag_accounts=str(tmp_path), ag_model_map_file=str(f))


async def test_the_gateway_maps_with_the_file(tmp_path):
    f = tmp_path / "map.json"
    write(f, {"team-model": "gemini-3-pro"})
    addon = Gateway()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, ag_accounts=str(tmp_path), ag_model_map_file=str(f), ag_model_map=["x=y"])
        assert addon.model_map.resolve("team-model") == "gemini-3-pro"
        assert addon.model_map.resolve("x") == "y"
        tctx.configure(addon, ag_model_map_file="")
        assert addon.model_map.resolve("team-model") == "team-model"
