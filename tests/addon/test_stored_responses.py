"""The StoredResponses addon with mitmproxy's test helpers: its options, the database it opens in
ag_data_dir, the pages of input_items, and the store falling back to memory when the folder is unusable."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from antigravity_gw import errors
from antigravity_gw.mitm.stored_responses import StoredResponses, page
from antigravity_gw.state.response_db import FILE_NAME
from antigravity_gw.translate.endpoints import NeedsStoredState
from antigravity_gw.translate.responses_store import NO_REF, ResponseStore

ITEMS = [{"id": f"msg_{n}", "type": "message"} for n in range(1, 6)]


def ids(result: dict) -> list[str]:
    return [i["id"] for i in result["data"]]


def test_pages_follow_openais_cursor_rules():
    first = page(ITEMS, limit=2, order="desc", after=None, before=None)
    assert ids(first) == ["msg_5", "msg_4"] and first["has_more"]
    assert (first["first_id"], first["last_id"], first["object"]) == ("msg_5", "msg_4", "list")
    assert ids(page(ITEMS, limit=2, order="desc", after="msg_4", before=None)) == ["msg_3", "msg_2"]
    last = page(ITEMS, limit=10, order="asc", after="msg_3", before=None)
    assert ids(last) == ["msg_4", "msg_5"] and not last["has_more"]
    assert ids(page(ITEMS, limit=2, order="asc", after=None, before="msg_5")) == ["msg_3", "msg_4"]
    empty = page([], limit=20, order="desc", after=None, before=None)
    assert empty == {"object": "list", "data": [], "first_id": None, "last_id": None, "has_more": False}
    with pytest.raises(errors.InvalidRequest) as e:
        page(ITEMS, limit=2, order="asc", after="msg_nope", before=None)
    assert e.value.param == "after"


async def test_the_database_opens_in_ag_data_dir_and_bad_options_are_refused(tmp_path: Path):
    store = ResponseStore()
    addon = StoredResponses(store)
    with taddons.context(addon) as tctx:
        tctx.options.add_option("ag_data_dir", str, str(tmp_path), "")
        tctx.configure(addon, ag_data_dir=str(tmp_path), ag_response_store_days=7,
                       ag_response_store_size="1m")
        assert store.ttl == 7 * 86400
        await addon.running()
        assert (tmp_path / FILE_NAME).exists() and addon.db is not None
        assert addon.db.max_bytes == 1024 * 1024 and store.sink == addon.db.append_put
        with pytest.raises(exceptions.OptionsError, match="ag_response_store_size"):
            tctx.configure(addon, ag_response_store_size="lots")
        with pytest.raises(exceptions.OptionsError, match="ag_response_store_days"):
            tctx.configure(addon, ag_response_store_days=-1)
        await addon.done()
        assert addon.db is None and store.sink is None


async def test_an_unusable_folder_leaves_the_store_in_memory(tmp_path: Path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    store = ResponseStore()
    addon = StoredResponses(store)
    with taddons.context(addon) as tctx:
        tctx.options.add_option("ag_data_dir", str, str(blocker), "")
        tctx.configure(addon, ag_data_dir=str(blocker))
        with caplog.at_level(logging.ERROR):
            await addon.running()
        assert addon.db is None and store.sink is None
        assert "memory only" in caplog.text
        need = NeedsStoredState([], [], ["call_abc"], reparse=lambda: None)  # type: ignore[arg-type,return-value]
        await addon.load_needed(need)
        assert store.call("call_abc") is NO_REF  # asked once: a later turn does not ask again
        await addon.done()
