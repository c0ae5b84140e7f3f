"""The client keys file (``ag_api_keys_file``), read once in ``configure`` and reloaded when it changes.

Shared by two addons: ``Auth`` identifies the caller's key with it, ``Usage`` applies that key's limits.
Watched like the model-map file (``watched_file.py``): a bad file at start stops mitmdump with one line;
a file that breaks while the gateway runs is logged and the last good keys stay (an editor's
half-written save must not lock everyone out).
"""

from __future__ import annotations

from pathlib import Path

from ..usage.keys import ClientKey, KeyRing, parse_keys_file
from .watched_file import WatchedFile

Keys = tuple[ClientKey, ...]


class ClientKeys(WatchedFile[Keys]):
    option = "ag_api_keys_file"
    noun = "key(s)"

    def __init__(self) -> None:
        super().__init__()
        self.ring = KeyRing()
        self.by_name: dict[str, ClientKey] = {}

    def configure(self, path: Path | None) -> None:
        """Read the file now; ``ValueError`` says what is wrong with it."""
        self.watch(path)

    def _parse(self, data: bytes, path: str) -> Keys:
        return parse_keys_file(data, path=path)

    def _use(self, content: Keys | None) -> None:
        keys = content or ()
        self.ring = KeyRing(keys)
        self.by_name = {k.name: k for k in keys}
