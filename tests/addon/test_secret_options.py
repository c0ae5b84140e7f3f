"""Secret options (mitm/options.py ``SecretOption``) through the addons that own them: references are
resolved at configure time, and a raw secret never stays in mitmproxy's option store."""

from __future__ import annotations

import io

import orjson
import pytest
from mitmproxy import exceptions, optmanager
from mitmproxy.addons.proxyserver import Proxyserver
from mitmproxy.test import taddons

from antigravity_gw import make_addons
from antigravity_gw.mitm.auth import Auth
from antigravity_gw.mitm.gateway import Gateway

KEY = "sk-gw-secret-0123456789"


@pytest.fixture
def addons():
    dispatch, auth, usage, gateway, cors, console, access_log = make_addons()
    with taddons.context(Proxyserver(), dispatch, auth, usage, gateway, cors, console, access_log) as tctx:
        yield auth, gateway, tctx


def stored(tctx) -> bytes:
    """What mitmweb's Options page and /options.json show, and what a saved config would hold."""
    saved = io.StringIO()
    optmanager.serialize(tctx.options, saved, "")
    return orjson.dumps(optmanager.dump_dicts(tctx.options)) + saved.getvalue().encode()


def test_a_raw_secret_is_kept_by_the_addon_and_hidden_from_the_option_store(addons):
    auth, gateway, tctx = addons
    tctx.configure(auth, ag_api_key=KEY, ag_oauth_client_id="cid",
                   ag_oauth_client_secret="client-secret-abcd")
    assert isinstance(auth, Auth) and isinstance(gateway, Gateway)
    assert auth.settings.api_key == KEY and gateway.settings.oauth_client_secret == "client-secret-abcd"
    assert tctx.options.ag_api_key == "[hidden …6789]"
    assert tctx.options.ag_oauth_client_secret == "[hidden …abcd]"
    assert KEY.encode() not in stored(tctx) and b"client-secret-abcd" not in stored(tctx)
    tctx.configure(auth, ag_auth_mode="strict")  # an unrelated change keeps the secret
    assert auth.settings.api_key == KEY


def test_references_are_resolved_and_stay_what_the_store_shows(addons, tmp_path, monkeypatch):
    auth, gateway, tctx = addons
    monkeypatch.setenv("GW_TEST_KEY", KEY)
    (tmp_path / "client-secret").write_text("client-secret-abcd\n")
    tctx.configure(auth, ag_api_key="env:GW_TEST_KEY",
                   ag_oauth_client_secret=f"file:{tmp_path / 'client-secret'}")
    assert auth.settings.api_key == KEY and gateway.settings.oauth_client_secret == "client-secret-abcd"
    assert tctx.options.ag_api_key == "env:GW_TEST_KEY"
    assert KEY.encode() not in stored(tctx) and b"client-secret-abcd" not in stored(tctx)


def test_a_placeholder_without_its_secret_is_refused(addons):
    auth, _, tctx = addons
    with pytest.raises(exceptions.OptionsError, match="stands for a secret this gateway was not given"):
        tctx.configure(auth, ag_api_key="[hidden …6789]")


def test_a_broken_reference_is_refused_with_its_name(addons):
    auth, _, tctx = addons
    with pytest.raises(exceptions.OptionsError, match="GW_TEST_NOT_SET is not set"):
        tctx.configure(auth, ag_api_key="env:GW_TEST_NOT_SET")
