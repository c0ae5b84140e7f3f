"""The client keys file (``ag_api_keys_file``), read once in ``configure`` and reloaded when it changes.

Shared by two addons: ``Auth`` identifies the caller's key with it, ``Usage`` applies that key's limits.
Like the model-map file: the first read happens in ``configure`` (a bad file stops mitmdump with one
line), later reads in a background poll off the event loop; a file that breaks while the gateway runs
is logged and the last good keys stay (an editor's half-written save must not lock everyone out).
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ..upstream.periodic import Periodic
from ..usage.keys import ClientKey, KeyRing, parse_keys_file
from .model_map import Stamp, read_if_changed

logger = logging.getLogger(__name__)


class ClientKeys:
    poll_interval = 1.0

    def __init__(self) -> None:
        self.path: Path | None = None
        self.ring = KeyRing()
        self.by_name: dict[str, ClientKey] = {}
        self._stamp: Stamp | None = None
        self._poller = Periodic(self.reload_if_changed, name="ag-api-keys-file")

    def configure(self, path: Path | None) -> None:
        """Read the file now; ``ValueError`` says what is wrong with it."""
        if path is None:
            self.path, self._stamp = None, None
            self._use(())
            return
        try:
            stamp, data = read_if_changed(path, None)
        except OSError as e:
            raise ValueError(f"ag_api_keys_file: cannot read {path}: {e.strerror or e}") from None
        assert data is not None
        self._use(parse_keys_file(data, path=str(path)))
        self.path, self._stamp = path, stamp

    def _use(self, keys: tuple[ClientKey, ...]) -> None:
        self.ring = KeyRing(keys)
        self.by_name = {k.name: k for k in keys}

    def start(self) -> None:
        self._poller.start(self.poll_interval)

    async def stop(self) -> None:
        await self._poller.stop()

    def cancel(self) -> None:
        self._poller.cancel()

    async def reload_if_changed(self) -> bool:
        path, stamp = self.path, self._stamp
        if path is None:
            return False
        try:
            new_stamp, data = await asyncio.to_thread(read_if_changed, path, stamp)
        except OSError as e:
            if stamp is not None:
                logger.warning("ag_api_keys_file: cannot read %s (%s); keeping the last keys", path, e)
            self._stamp = None
            return False
        if data is None or path != self.path:
            return False
        self._stamp = new_stamp
        try:
            keys = parse_keys_file(data, path=str(path))
        except ValueError as e:
            logger.warning("%s; keeping the last keys", e)
            return False
        self._use(keys)
        logger.info("ag_api_keys_file: loaded %d key(s) from %s", len(keys), path)
        return True
