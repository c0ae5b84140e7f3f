"""mitm/commands.py: the ag.accounts* commands, loaded as the Gateway's child addon."""

import re

import orjson
import pytest
from mitmproxy import exceptions
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons

from antigravity_gw.mitm.gateway import Gateway


def write(directory, name, **fields):
    data = {"id": name, "email": f"{name}@example.com",
            "token": {"access_token": f"at-{name}", "refresh_token": f"rt-{name}-secret",
                      "expiry_timestamp": 4_000_000_000}, **fields}
    (directory / f"{name}.json").write_bytes(orjson.dumps(data))


@pytest.fixture
async def gw(tmp_path):
    write(tmp_path, "a")
    write(tmp_path, "b", disabled=True, disabled_reason="invalid_grant: revoked")
    addon = Gateway()
    with taddons.context(Proxyserver(), addon) as tctx:
        tctx.configure(addon, ag_accounts=str(tmp_path), ag_oauth_client_id="id", ag_oauth_client_secret="s")
        await addon.reload_accounts()
        commands = addon.addons[0]
        await commands.refresh()
        yield addon, tctx, tmp_path


async def test_ag_accounts_flags_oauth_accounts_that_cannot_refresh(gw):
    addon, tctx, _ = gw
    assert "CANNOT REFRESH" not in " ".join(tctx.master.commands.execute("ag.accounts"))
    tctx.configure(addon, ag_oauth_client_secret="")
    lines = tctx.master.commands.execute("ag.accounts")
    assert re.fullmatch(r"a@example\.com \[a, oauth\]: ready; CANNOT REFRESH \(set ag_oauth_client_id and "
                        r"ag_oauth_client_secret\): its access token expires at 2096-10-02T07:06:40Z "
                        r"\(in \d+ min\)",
                        lines[0]), lines[0]
    assert "CANNOT REFRESH" not in lines[1]  # disabled: nothing to refresh


async def settle(addon):
    commands = addon.addons[0]
    await commands.tasks.wait()


async def test_ag_accounts_shows_live_state_without_secrets(gw):
    addon, tctx, _ = gw
    await addon.pool.cool_down(addon.pool.find("a"), 90, "quota exhausted", model="gemini-2.5-pro")
    await addon.addons[0].refresh()
    lines = tctx.master.commands.execute("ag.accounts")
    assert len(lines) == 2
    assert lines[0].startswith("a@example.com [a, oauth]: ready; gemini-2.5-pro cooling until ")
    assert lines[0].endswith("(quota exhausted)")
    assert lines[1] == "b@example.com [b, oauth]: disabled (invalid_grant: revoked)"
    assert not any("secret" in line or "at-a" in line for line in lines)


async def test_disable_enable_and_reset_apply_at_once_and_on_disk(gw):
    addon, tctx, d = gw
    a = addon.pool.find("a")
    await addon.pool.cool_down(a, 90, "rate limited")
    tctx.master.commands.execute("ag.accounts.disable a@example.com")
    assert not a.usable  # in memory at once
    await settle(addon)
    saved = orjson.loads((d / "a.json").read_bytes())
    assert (saved["disabled"], saved["disabled_reason"]) == (True, "disabled with ag.accounts.disable")
    assert "disabled" in tctx.master.commands.execute("ag.accounts")[0]

    tctx.master.commands.execute("ag.accounts.enable a")
    tctx.master.commands.execute("ag.accounts.reset a")
    await settle(addon)
    assert orjson.loads((d / "a.json").read_bytes())["disabled"] is False
    assert tctx.master.commands.execute("ag.accounts")[0] == "a@example.com [a, oauth]: ready"


async def test_reload_picks_up_a_new_file_and_unknown_accounts_are_refused(gw):
    addon, tctx, d = gw
    write(d, "c")
    tctx.master.commands.execute("ag.accounts.reload")
    await settle(addon)
    assert [a.id for a in addon.pool.accounts] == ["a", "b", "c"]
    assert len(tctx.master.commands.execute("ag.accounts")) == 3
    with pytest.raises(exceptions.CommandError, match="no account 'zed'"):
        tctx.master.commands.execute("ag.accounts.disable zed")
