"""upstream/account_watch.py: the directory watcher keeps the pool in step with the files."""

import itertools
import os

import orjson
import pytest

from antigravity_gw.upstream.account_watch import AccountWatcher, scan_directory
from antigravity_gw.upstream.pool import Pool

TICKS = itertools.count(1_000_000_000_000_000_000, 1_000_000_000)


def write(directory, name, **fields):
    token = {"access_token": f"at-{name}", "refresh_token": f"rt-{name}", "expiry_timestamp": 2_000_000_000}
    data = {"id": name, "email": f"{name}@x", "token": token, **fields}
    path = directory / f"{name}.json"
    path.write_bytes(orjson.dumps(data))
    os.utime(path, ns=(0, next(TICKS)))  # every write visible, even two within one mtime tick
    return path


@pytest.fixture
def watched(tmp_path):
    pool = Pool()
    return pool, AccountWatcher(pool, tmp_path), tmp_path


async def test_added_edited_and_removed_files_apply(watched):
    pool, watcher, d = watched
    write(d, "a")
    write(d, "b")
    assert await watcher.poll() is True
    assert [a.id for a in pool.accounts] == ["a", "b"]
    a = pool.find("a")
    await pool.cool_down(a, 60, "quota exhausted")
    assert await watcher.poll() is False  # nothing changed: nothing read

    write(d, "a", disabled=True, disabled_reason="manual")
    (d / "b.json").unlink()
    write(d, "c")
    assert await watcher.poll() is True
    assert [x.id for x in pool.accounts] == ["a", "c"]
    assert pool.find("a") is a and a.disabled and a.disabled_reason == "manual"
    assert [s.state for s in await pool.status()] == ["disabled", "ready"]
    write(d, "a")
    await watcher.poll()
    assert [s.state for s in await pool.status()] == ["cooling", "ready"]  # its cooldown survived the edits


async def test_a_broken_file_keeps_the_last_good_account(watched, caplog):
    pool, watcher, d = watched
    path = write(d, "a")
    await watcher.poll()
    path.write_text('{"id": "a", "tok')  # an editor's half-written save
    os.utime(path, ns=(0, 5_000_000_000))
    await watcher.poll()
    await watcher.poll()
    assert [a.id for a in pool.accounts] == ["a"]
    assert sum("a.json" in r.message for r in caplog.records) == 1  # reported once, not every poll


async def test_duplicate_ids_keep_the_first_file(watched, caplog):
    pool, watcher, d = watched
    write(d, "a")
    (d / "copy.json").write_bytes((d / "a.json").read_bytes())
    await watcher.poll()
    assert [a.path.name for a in pool.accounts] == ["a.json"]
    assert any("same id" in r.message for r in caplog.records)


async def test_retarget_swaps_the_directory(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    write(one, "a")
    write(two, "b")
    pool = Pool()
    watcher = AccountWatcher(pool, one)
    await watcher.poll()
    watcher.retarget(two)
    await watcher.poll()
    assert [a.id for a in pool.accounts] == ["b"]
    watcher.retarget(tmp_path / "missing")
    await watcher.poll()
    assert pool.accounts == []


def test_scan_reads_only_changed_files(tmp_path):
    write(tmp_path, "a")
    first = scan_directory(tmp_path, {})
    assert [p.name for p, _, _ in first.changed] == ["a.json"]
    again = scan_directory(tmp_path, {p: s for p, s, _ in first.changed})
    assert again.changed == [] and again.present == {tmp_path / "a.json"}


async def test_a_fifo_a_directory_and_an_oversized_file_are_skipped_with_a_log_line(watched, caplog):
    import asyncio

    from antigravity_gw.upstream.accounts import MAX_ACCOUNT_FILE

    pool, watcher, d = watched
    write(d, "good")
    os.mkfifo(d / "pipe.json")
    (d / "dir.json").mkdir()
    (d / "huge.json").write_bytes(b" " * (MAX_ACCOUNT_FILE + 1))
    assert await asyncio.wait_for(watcher.poll(), 5) is True  # a FIFO would block an open() forever
    assert [a.id for a in pool.accounts] == ["good"]
    assert "pipe.json: not a regular file (a FIFO); skipped" in caplog.text
    assert "dir.json: not a regular file (a directory); skipped" in caplog.text
    assert (f"huge.json: {MAX_ACCOUNT_FILE + 1} bytes, larger than the {MAX_ACCOUNT_FILE}-byte limit"
            in caplog.text)
    caplog.clear()
    assert await asyncio.wait_for(watcher.poll(), 5) is False
    assert caplog.text == ""  # reported once per change, not once a second
