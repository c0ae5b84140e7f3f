"""The model mapping table: ``ag_model_map`` entries, then a mapping file reloaded when it changes.

The file (``ag_model_map_file``, a JSON object ``{"FROM": "TO"}``) is read once in ``configure`` so a
bad file stops mitmdump with a clear message, then watched for changes (``watched_file.py``): a changed
file replaces the table at once, a file that breaks while the gateway runs is logged and the last good
table stays.
"""

from __future__ import annotations

from pathlib import Path

from ..settings import parse_model_map_file
from ..upstream import catalog
from .watched_file import WatchedFile

Table = tuple[tuple[str, str], ...]


class ModelMap(WatchedFile[Table]):
    option = "ag_model_map_file"
    noun = "mapping(s)"

    def __init__(self) -> None:
        super().__init__()
        self._options: Table = ()
        self._file: Table = ()

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
        self.watch(path)

    def _parse(self, data: bytes, path: str) -> Table:
        return parse_model_map_file(data, path=path)

    def _use(self, content: Table | None) -> None:
        self._file = content or ()
