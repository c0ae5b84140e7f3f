"""A settings file read once in ``configure`` and reloaded when it changes (``ag_model_map_file``,
``ag_api_keys_file``).

The first read happens in ``configure``, so a bad file stops mitmdump with one line naming it. Later
reads come from a background poll: the file's stamp (mtime, size, inode) is checked with
``asyncio.to_thread`` every ``poll_interval`` seconds (no blocking I/O on the event loop), and a changed
file is parsed and handed to ``use`` at once. A file that breaks while the gateway runs is logged once
and the last good content stays: an editor's half-written save must not unmap every model or lock
every client out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sized
from pathlib import Path
from typing import ClassVar

from ..upstream.accounts import Stamp, stamp_of
from ..upstream.periodic import Periodic

logger = logging.getLogger(__name__)

class WatchedFile[T: Sized]:
    """Base of a class that owns one such file: ``_parse`` turns its bytes into ``T`` (``ValueError``
    when they are wrong), ``_use`` takes each good ``T`` (``None``: no file configured)."""

    option: ClassVar[str]  # the option naming the file, which starts every message about it
    noun: ClassVar[str]  # what it holds, "mapping(s)": "loaded 3 mapping(s)", "keeping the last mapping(s)"
    poll_interval = 1.0  # seconds between stamp checks

    def __init__(self) -> None:
        self.path: Path | None = None
        self._stamp: Stamp | None = None
        self._poller = Periodic(self.reload_if_changed, name=f"ag-watch-{self.option}")

    def _parse(self, data: bytes, path: str) -> T:
        raise NotImplementedError

    def _use(self, content: T | None) -> None:
        raise NotImplementedError

    def watch(self, path: Path | None) -> None:
        """Read ``path`` now (``None``: no file); ``ValueError`` says what is wrong with it."""
        if path is None:
            self.path, self._stamp = None, None
            self._use(None)
            return
        try:
            stamp, data = read_if_changed(path, None)
        except OSError as e:
            raise ValueError(f"{self.option}: cannot read {path}: {e.strerror or e}") from None
        assert data is not None
        self._use(self._parse(data, str(path)))
        self.path, self._stamp = path, stamp

    def start(self) -> None:
        self._poller.start(self.poll_interval)

    async def stop(self) -> None:
        await self._poller.stop()

    def cancel(self) -> None:
        self._poller.cancel()

    @property
    def watching(self) -> bool:
        return self._poller.running

    async def reload_if_changed(self) -> bool:
        """Re-read the file if its stamp changed; True when its new content is in use."""
        path, stamp = self.path, self._stamp
        if path is None:
            return False
        try:
            new_stamp, data = await asyncio.to_thread(read_if_changed, path, stamp)
        except OSError as e:
            if stamp is not None:  # log once per disappearance, not every poll
                logger.warning("%s: cannot read %s (%s); keeping the last %s", self.option, path, e,
                               self.noun)
            self._stamp = None
            return False
        if data is None or path != self.path:  # unchanged, or reconfigured meanwhile
            return False
        self._stamp = new_stamp
        try:
            content = self._parse(data, str(path))
        except ValueError as e:
            logger.warning("%s; keeping the last %s", e, self.noun)
            return False
        self._use(content)
        logger.info("%s: loaded %d %s from %s", self.option, len(content), self.noun, path)
        return True


def read_if_changed(path: Path, stamp: Stamp | None) -> tuple[Stamp, bytes | None]:
    """Blocking: ``(new stamp, content)``, content ``None`` when the stamp is unchanged."""
    new = stamp_of(path)
    if new == stamp:
        return new, None
    return new, path.read_bytes()
