"""mitm/watched_file.py: read at configure, reloaded on change, the last good content kept."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from antigravity_gw.mitm.watched_file import WatchedFile


class Words(WatchedFile[tuple[str, ...]]):
    option = "ag_words_file"
    noun = "word(s)"

    def __init__(self) -> None:
        super().__init__()
        self.used: list[tuple[str, ...] | None] = []

    def _parse(self, data: bytes, path: str) -> tuple[str, ...]:
        if not data.strip():
            raise ValueError(f"{self.option}: {path} is empty")
        return tuple(data.decode().split())

    def _use(self, content: tuple[str, ...] | None) -> None:
        self.used.append(content)


def test_configure_reads_now_and_names_the_option_when_it_cannot(tmp_path: Path):
    words = Words()
    (tmp_path / "w").write_text("a b")
    words.watch(tmp_path / "w")
    assert words.used == [("a", "b")]
    with pytest.raises(ValueError, match=r"^ag_words_file: cannot read .*missing"):
        words.watch(tmp_path / "missing")
    with pytest.raises(ValueError, match="is empty"):
        (tmp_path / "empty").write_text("")
        words.watch(tmp_path / "empty")
    words.watch(None)
    assert words.used[-1] is None and words.path is None


async def test_reloads_only_on_change_and_keeps_the_last_good_content(tmp_path: Path, caplog):
    caplog.set_level(logging.INFO)
    f = tmp_path / "w"
    f.write_text("a")
    words = Words()
    words.watch(f)
    assert not await words.reload_if_changed()  # unchanged: not even read
    f.write_text("b c")
    assert await words.reload_if_changed()
    assert "ag_words_file: loaded 2 word(s)" in caplog.text
    f.write_text("   ")
    assert not await words.reload_if_changed()
    assert words.used[-1] == ("b", "c") and "keeping the last word(s)" in caplog.text
    f.unlink()
    caplog.clear()
    assert not await words.reload_if_changed()
    assert not await words.reload_if_changed()
    assert caplog.text.count("cannot read") == 1  # once per disappearance
    f.write_text("d")
    assert await words.reload_if_changed() and words.used[-1] == ("d",)


async def test_the_poller_applies_changes_and_stops(tmp_path: Path):
    f = tmp_path / "w"
    f.write_text("one")
    words = Words()
    words.poll_interval = 0.01
    words.watch(f)
    words.start()
    f.write_text("two")
    for _ in range(200):
        if words.used[-1] == ("two",):
            break
        await asyncio.sleep(0.01)
    assert words.used[-1] == ("two",) and words.watching
    await words.stop()
    assert not words.watching
