"""upstream/accounts.py: the account file format, in-place merges, and atomic writes."""

import os
from pathlib import Path

import orjson
import pytest

from antigravity_gw.upstream import accounts as af
from antigravity_gw.upstream.accounts import Account, parse_account

MANAGER_FILE = {
    "id": "6c1e", "email": "a@gmail.com", "name": None, "created_at": 1760000000, "last_used": 1760000000,
    "token": {"access_token": "ya29.old", "refresh_token": "1//0g-old", "expires_in": 3599,
              "expiry_timestamp": 1760003599, "token_type": "Bearer", "email": "a@gmail.com",
              "project_id": "swift-core-abc12"},
    "quota": {"models": [{"name": "gemini-3-flash", "percentage": 87}], "subscription_tier": "PRO"},
    "device_profile": {"machine_id": "x"}, "disabled": False, "proxy_disabled": False,
}


def write(path: Path, data) -> Path:
    path.write_bytes(orjson.dumps(data))
    return path


def test_parse_an_antigravity_manager_file():
    a = parse_account(MANAGER_FILE, path=Path("/d/6c1e.json"))
    assert (a.id, a.email, a.kind, a.disabled) == ("6c1e", "a@gmail.com", "oauth", False)
    assert (a.access_token, a.refresh_token, a.expiry_timestamp, a.project_id) == (
        "ya29.old", "1//0g-old", 1760003599, "swift-core-abc12")
    assert "ya29" not in repr(a) and "1//0g" not in repr(a)


@pytest.mark.parametrize(("extra", "disabled", "reason"), [
    ({"disabled": True, "disabled_reason": "invalid_grant: x"}, True, "invalid_grant: x"),
    ({"proxy_disabled": True, "proxy_disabled_reason": "manual"}, True, "manual"),
    ({"proxy_disabled": True, "proxy_disabled_reason": "quota_protection"}, False, ""),  # per model there
])
def test_disabled_states(extra, disabled, reason):
    a = parse_account({**MANAGER_FILE, **extra})
    assert (a.disabled, a.disabled_reason) == (disabled, reason)


def test_api_key_account_and_garbage():
    k = parse_account({"id": "k1", "email": "key-1", "api_key": "AIza123"})
    assert (k.kind, k.api_key, k.label, k.usable) == ("api_key", "AIza123", "key-1", True)
    for bad in ([], {"id": "x"}, {"token": {"expiry_timestamp": "soon"}}):
        with pytest.raises(ValueError):
            parse_account(bad)


def mem(rt="rt1", at="at1", exp=100.0, **kw) -> Account:
    return Account("a", "a@x", "oauth", None, access_token=at, refresh_token=rt, expiry_timestamp=exp, **kw)


@pytest.mark.parametrize(("memory", "disk", "expected"), [
    # the file wins: someone re-signed in, or edited the token
    (mem(), mem("rt2", "at2", 50.0), ("rt2", "at2", 50.0)),
    # same grant, memory refreshed after the file was read: keep the fresher access token
    (mem(at="at-new", exp=200.0), mem(), ("rt1", "at-new", 200.0)),
    (mem(), mem(at="at-disk", exp=300.0), ("rt1", "at-disk", 300.0)),
    # the file still holds a refresh token we rotated away from: memory is newer, keep all of it
    (mem("rt2", "at2", 200.0, retired_refresh_tokens={"rt1"}), mem(), ("rt2", "at2", 200.0)),
])
def test_merge_file_token_rules(memory, disk, expected):
    memory.merge_file(disk)
    assert (memory.refresh_token, memory.access_token, memory.expiry_timestamp) == expected


def test_merge_file_takes_flags_and_keeps_a_known_project():
    current = mem(project_id="p1")
    current.merge_file(mem(disabled=True, disabled_reason="manual", disabled_at=5))
    assert (current.disabled, current.disabled_reason, current.disabled_at, current.project_id) == (
        True, "manual", 5, "p1")


def test_a_rotating_refresh_retires_the_used_token_so_the_file_cannot_bring_it_back():
    a = mem()
    a.apply_refresh("rt1", "at2", 500.0, new_refresh="rt2")
    assert (a.refresh_token, a.access_token, a.expiry_timestamp, a.retired_refresh_tokens) == (
        "rt2", "at2", 500.0, {"rt1"})
    a.merge_file(mem())  # a scan read the file before our refresh was saved
    assert (a.refresh_token, a.access_token) == ("rt2", "at2")


def test_a_refresh_without_rotation_keeps_the_refresh_token():
    a = mem()
    a.apply_refresh("rt1", "at2", 500.0)
    assert (a.refresh_token, a.access_token, a.retired_refresh_tokens) == ("rt1", "at2", set())
    a.adopt_refresh_token("rt-from-disk")
    assert a.refresh_token == "rt-from-disk"


def test_disable_enable_and_set_project():
    a = mem()
    a.disable("invalid_grant: revoked", 1700000000)
    assert (a.disabled, a.disabled_reason, a.disabled_at, a.usable) == (
        True, "invalid_grant: revoked", 1700000000, False)
    a.enable()
    assert (a.disabled, a.disabled_reason, a.disabled_at, a.usable) == (False, "", 0, True)
    a.set_project("proj-9")
    assert a.project_id == "proj-9"


def test_save_tokens_sets_only_the_gateway_fields(tmp_path):
    path = write(tmp_path / "6c1e.json", MANAGER_FILE)
    a = af.read_account(path)
    on_disk = orjson.loads(path.read_bytes())
    on_disk["quota"]["subscription_tier"] = "ULTRA"  # the manager wrote meanwhile
    write(path, on_disk)
    a.access_token, a.refresh_token, a.expiry_timestamp, a.project_id = "ya29.new", "1//0g-new", 2e9, "p2"
    af.save_tokens(a)
    saved = orjson.loads(path.read_bytes())
    assert saved["quota"]["subscription_tier"] == "ULTRA"
    assert saved["device_profile"] == {"machine_id": "x"}
    t = saved["token"]
    assert (t["access_token"], t["refresh_token"], t["expiry_timestamp"], t["project_id"]) == (
        "ya29.new", "1//0g-new", 2000000000, "p2")
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == [".6c1e.json.lock", "6c1e.json"]


def test_disable_and_enable_write_reason_and_time(tmp_path):
    path = write(tmp_path / "a.json",
                 {**MANAGER_FILE, "proxy_disabled": True, "proxy_disabled_reason": "manual"})
    a = af.read_account(path)
    a.disabled, a.disabled_reason, a.disabled_at = True, "invalid_grant: Token has been revoked.", 1234
    af.save_disabled(a)
    saved = orjson.loads(path.read_bytes())
    assert (saved["disabled"], saved["disabled_reason"], saved["disabled_at"]) == (
        True, "invalid_grant: Token has been revoked.", 1234)
    af.update_account_file(path, lambda d: af.set_disabled_fields(d, False))
    saved = orjson.loads(path.read_bytes())
    assert (saved["disabled"], saved["proxy_disabled"]) == (False, False)
    assert not {"disabled_reason", "disabled_at", "proxy_disabled_reason"} & set(saved)
    assert af.read_account(path).usable


@pytest.mark.parametrize("crash_in", ["write", "fsync", "replace"])
def test_a_crash_mid_write_leaves_the_old_file_intact(tmp_path, monkeypatch, crash_in):
    path = write(tmp_path / "a.json", MANAGER_FILE)
    before = path.read_bytes()

    class Crash(BaseException):  # like a kill: not an Exception, nothing may swallow it
        pass

    def boom(*a, **k):
        raise Crash

    if crash_in == "write":  # half the bytes reach the temp file, then the process "dies"
        real_fdopen = os.fdopen

        class HalfThenCrash:
            def __init__(self, fd, mode):
                self.fh = real_fdopen(fd, mode)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                self.fh.close()

            def write(self, data):
                self.fh.write(data[: len(data) // 2])
                self.fh.flush()
                raise Crash

        monkeypatch.setattr(af.os, "fdopen", HalfThenCrash)
    elif crash_in == "fsync":
        monkeypatch.setattr(af.os, "fsync", boom)
    else:
        monkeypatch.setattr(af.os, "replace", boom)
    a = af.read_account(path)
    a.access_token = "ya29.new"
    with pytest.raises(Crash):
        af.save_tokens(a)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_stored_refresh_token_reads_the_file_now(tmp_path):
    path = write(tmp_path / "a.json", MANAGER_FILE)
    a = af.read_account(path)
    af.update_account_file(path, lambda d: d["token"].update(refresh_token="1//0g-rotated-elsewhere"))
    assert af.stored_refresh_token(a) == "1//0g-rotated-elsewhere"
    path.unlink()
    assert af.stored_refresh_token(a) == "1//0g-old"  # unreadable: what we have


def test_account_paths_skip_hidden_files_and_a_half_file_is_refused(tmp_path):
    write(tmp_path / "a.json", MANAGER_FILE)
    (tmp_path / "b.json").write_text("{half")
    write(tmp_path / ".a.json.1234.tmp", MANAGER_FILE)
    assert [p.name for p in af.account_paths(tmp_path)] == ["a.json", "b.json"]
    assert af.read_account(tmp_path / "a.json").id == "6c1e"
    with pytest.raises(ValueError):
        af.read_account(tmp_path / "b.json")


# ---- only regular files are read ---------------------------------------------------------------------
def read_within(path: Path, seconds: float = 5.0, **kwargs):
    """``read_regular_file`` in a thread: a read that blocks (a FIFO) fails the test instead of hanging it."""
    import threading

    result: dict = {}

    def run():
        try:
            result["data"] = af.read_regular_file(path, **kwargs)
        except Exception as e:
            result["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"reading {path.name} blocked"
    if "error" in result:
        raise result["error"]
    return result["data"]


def test_a_fifo_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "a.json"
    os.mkfifo(fifo)
    with pytest.raises(af.NotAnAccountFile, match=r"not a regular file \(a FIFO\)"):
        read_within(fifo)
    with pytest.raises(af.NotAnAccountFile, match="FIFO"):
        af.read_account(fifo)


def test_a_socket_a_directory_and_a_device_are_refused(tmp_path):
    import socket

    sock_path = tmp_path / "s.json"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(sock_path))
        with pytest.raises(af.NotAnAccountFile, match="a socket"):
            read_within(sock_path)
    (tmp_path / "d.json").mkdir()
    with pytest.raises(af.NotAnAccountFile, match="a directory"):
        read_within(tmp_path / "d.json")
    with pytest.raises(af.NotAnAccountFile, match="a character device"):
        read_within(Path("/dev/zero"))


def test_a_file_over_the_cap_is_refused(tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b" " * 2001)
    with pytest.raises(af.NotAnAccountFile, match="2001 bytes, larger than the 2000-byte limit"):
        read_within(big, limit=2000)
    assert read_within(big, limit=2001) == b" " * 2001
    assert af.MAX_ACCOUNT_FILE == 1024 * 1024


def test_symlinks_are_followed_to_a_regular_file_only(tmp_path):
    target = write(tmp_path / "real.data", MANAGER_FILE)
    (tmp_path / "link.json").symlink_to(target)
    assert af.read_account(tmp_path / "link.json").id == "6c1e"
    os.mkfifo(tmp_path / "pipe")
    (tmp_path / "to-pipe.json").symlink_to(tmp_path / "pipe")
    (tmp_path / "to-dev.json").symlink_to("/dev/zero")
    for name in ("to-pipe.json", "to-dev.json"):
        with pytest.raises(af.NotAnAccountFile, match="not a regular file"):
            read_within(tmp_path / name)


def test_a_fifo_planted_as_the_lock_file_fails_instead_of_blocking(tmp_path):
    path = write(tmp_path / "a.json", MANAGER_FILE)
    os.mkfifo(af.lock_path(path))
    with pytest.raises(OSError):
        af.update_account_file(path, lambda d: d.update(disabled=True))
