"""The model mapping table: ``ag_model_map`` entries, then a mapping file reloaded when it changes.

The file (``ag_model_map_file``, a JSON object ``{"FROM": "TO"}``) is read once in ``configure`` so a
bad file stops mitmdump with a clear message, then watched from a background task: its mtime is
polled with ``asyncio.to_thread`` (no blocking I/O on the event loop) and a changed file replaces
the table at once. A file that breaks while the gateway runs is logged and the last good table
stays: an editor's half-written save must not unmap every model.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from ..settings import parse_model_map_file
from ..upstream import catalog
from ..upstream.periodic import Periodic

logger = logging.getLogger(__name__)

Table = tuple[tuple[str, str], ...]
Stamp = tuple[int, int, int]  # mtime_ns, size, inode: any change means "read it again"


class ModelMap:
    poll_interval = 1.0  # seconds between mtime checks

    def __init__(self) -> None:
        self.path: Path | None = None
        self._options: Table = ()
        self._file: Table = ()
        self._stamp: Stamp | None = None
        self._poller = Periodic(self.reload_if_changed, name="ag-model-map-file")

    @property
    def table(self) -> Table:
        """Option entries first: on the same pattern (or a specificity tie) the command line wins."""
        return self._options + self._file

    def resolve(self, model: str) -> str:
        return catalog.resolve_model(model, self.table)

    def aliases(self) -> list[str]:
        return catalog.aliases(self.table)

    def configure(self, entries: Table, path: Path | None) -> None:
        """New option entries and file; the file is read now (``ValueError`` names what is wrong)."""
        self._options = entries
        if path is None:
            self.path, self._file, self._stamp = None, (), None
            return
        try:
            stamp, data = read_if_changed(path, None)
        except OSError as e:
            raise ValueError(f"ag_model_map_file: cannot read {path}: {e.strerror or e}") from None
        assert data is not None
        self._file = parse_model_map_file(data, path=str(path))
        self.path, self._stamp = path, stamp

    # ---- reloading -----------------------------------------------------------------------------
    def start(self) -> None:
        self._poller.start(self.poll_interval)

    async def stop(self) -> None:
        await self._poller.stop()

    async def reload_if_changed(self) -> bool:
        """Re-read the file if its stamp changed; True when the table was replaced."""
        path, stamp = self.path, self._stamp
        if path is None:
            return False
        try:
            new_stamp, data = await asyncio.to_thread(read_if_changed, path, stamp)
        except OSError as e:
            if stamp is not None:  # log once per disappearance, not every poll
                logger.warning("ag_model_map_file: cannot read %s (%s); keeping the last mapping", path, e)
            self._stamp = None
            return False
        if data is None or path != self.path:  # unchanged, or reconfigured meanwhile
            return False
        self._stamp = new_stamp
        try:
            self._file = parse_model_map_file(data, path=str(path))
        except ValueError as e:
            logger.warning("%s; keeping the last mapping", e)
            return False
        logger.info("ag_model_map_file: loaded %d mapping(s) from %s", len(self._file), path)
        return True


def read_if_changed(path: Path, stamp: Stamp | None) -> tuple[Stamp, bytes | None]:
    """Blocking: ``(new stamp, content)``, content ``None`` when the stamp is unchanged."""
    st = os.stat(path)
    new = (st.st_mtime_ns, st.st_size, st.st_ino)
    if new == stamp:
        return new, None
    return new, path.read_bytes()
