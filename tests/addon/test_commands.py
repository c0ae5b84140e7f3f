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
    await addon.addons[0].refresh()
    lines = tctx.master.commands.execute("ag.accounts")
    assert rows(lines)["a@example.com"].split()[:4] == ["a@example.com", "oauth", "cannot", "refresh"]
    assert re.fullmatch(r" +CANNOT REFRESH \(set ag_oauth_client_id and ag_oauth_client_secret\): its access "
                        r"token expires at 2096-10-02T07:06:40Z \(in \d+ min\)", lines[2]), lines[2]
    assert "CANNOT REFRESH" not in "".join(lines[3:])  # b is disabled: nothing to refresh


async def settle(addon):
    commands = addon.addons[0]
    await commands.tasks.wait()


def rows(lines):
    """The table's account rows (not indented), as {account: row}."""
    return {line.split()[0]: line for line in lines[1:] if not line.startswith(" ")}


async def test_ag_accounts_shows_live_state_and_quota_without_secrets(gw):
    from antigravity_gw.upstream.quota import AccountQuota, ModelQuota

    addon, tctx, _ = gw
    await addon.pool.cool_down(addon.pool.find("a"), 90, "quota exhausted", model="gemini-2.5-pro")
    now = addon.pool.clock()
    addon.pool.quota.store("a", AccountQuota(tier="Gemini Code Assist", fetched_at=now - 5, models={
        "gemini-2.5-flash": ModelQuota(0.0, now + 3600), "gemini-2.5-pro": ModelQuota(0.75, now + 7200)}))
    await addon.addons[0].refresh()
    lines = tctx.master.commands.execute("ag.accounts")
    assert lines[0].split() == ["ACCOUNT", "KIND", "STATE", "TIER", "SERVED", "LAST", "USED"]
    table = rows(lines)
    assert table["a@example.com"].split()[:3] == ["a@example.com", "oauth", "ready"]
    assert "Gemini Code Assist" in table["a@example.com"]
    assert table["b@example.com"].split()[:3] == ["b@example.com", "oauth", "disabled"]
    assert "(invalid_grant: revoked)" in table["b@example.com"]
    text = "\n".join(lines)
    assert "gemini-2.5-pro: cooling until " in text and "(quota exhausted)" not in text
    assert "quota as of " in text and "(5s ago)" in text
    assert any(line.split()[:3] == ["gemini-2.5-flash", "0%", "EXHAUSTED"] for line in lines)
    assert any(line.split()[:3] == ["gemini-2.5-pro", "75%", "resets"] for line in lines)
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
    assert "disabled" in rows(tctx.master.commands.execute("ag.accounts"))["a@example.com"]

    tctx.master.commands.execute("ag.accounts.enable a")
    tctx.master.commands.execute("ag.accounts.reset a")
    await settle(addon)
    assert orjson.loads((d / "a.json").read_bytes())["disabled"] is False
    row = rows(tctx.master.commands.execute("ag.accounts"))["a@example.com"]
    assert "disabled" not in row and "cooling" not in row


async def test_reload_picks_up_a_new_file_and_unknown_accounts_are_refused(gw):
    addon, tctx, d = gw
    write(d, "c")
    tctx.master.commands.execute("ag.accounts.reload")
    await settle(addon)
    assert [a.id for a in addon.pool.accounts] == ["a", "b", "c"]
    assert list(rows(tctx.master.commands.execute("ag.accounts"))) == [f"{n}@example.com" for n in "abc"]
    with pytest.raises(exceptions.CommandError, match="no account 'zed'"):
        tctx.master.commands.execute("ag.accounts.disable zed")
