"""Keeps the pool in step with the account directory: files added, removed or edited apply at once.

Rules:
- the directory is polled (stat of every ``*.json``, in a worker thread: no blocking I/O on the
  event loop); only files whose (mtime, size, inode) changed are read again;
- an edited file updates the account object the pool already holds (``Account.merge_file``), so its
  cooldowns, sticky bindings and in-flight refreshes carry on;
- a file that cannot be read or parsed keeps the last good version of its account (an editor's
  half-written save must not drop it) and is reported once per change;
- two files with the same account id: the first (by name) wins, the other is reported.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from .accounts import Account, Stamp, account_paths, read_account, stamp_of
from .periodic import Periodic
from .pool import Pool

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Scan:
    """What changed in the directory since the stamps we know."""

    changed: list[tuple[Path, Stamp, Account]] = field(default_factory=list)
    failed: list[tuple[Path, Stamp, str]] = field(default_factory=list)
    present: set[Path] = field(default_factory=set)
    missing_directory: bool = False


def scan_directory(directory: Path, known: dict[Path, Stamp]) -> Scan:
    """Blocking: stat every account file, read the ones whose stamp changed."""
    scan = Scan()
    if not directory.is_dir():
        scan.missing_directory = True
        return scan
    for path in account_paths(directory):
        try:
            stamp = stamp_of(path)
        except FileNotFoundError:  # removed between the listing and the stat
            continue
        scan.present.add(path)
        if known.get(path) == stamp:
            continue
        try:
            scan.changed.append((path, stamp, read_account(path)))
        except (OSError, ValueError) as e:
            scan.failed.append((path, stamp, str(e) or type(e).__name__))
    return scan


class AccountWatcher:
    def __init__(self, pool: Pool, directory: Path, interval: float = 1.0) -> None:
        self.pool = pool
        self.directory = directory
        self.interval = interval
        self._stamps: dict[Path, Stamp] = {}
        self._ids: dict[Path, str] = {}  # the account id each file held when last read
        self._poller = Periodic(self._poll_or_warn, name="ag-accounts-watch")
        self._lock = asyncio.Lock()
        self._warned_missing = False

    def retarget(self, directory: Path) -> None:
        """A new ``ag_accounts``: the next poll loads it and drops the old directory's accounts."""
        if directory != self.directory:
            self.directory = directory
            self._warned_missing = False

    async def poll(self) -> bool:
        """Apply what changed on disk; True when the pool changed."""
        async with self._lock:  # the loop and an explicit reload must not interleave
            directory = self.directory
            known = {p: s for p, s in self._stamps.items() if p.parent == directory}
            scan = await asyncio.to_thread(scan_directory, directory, known)
            if directory != self.directory:
                return False  # retargeted meanwhile: the next poll reads the new one
            return self._apply(scan)

    def _apply(self, scan: Scan) -> bool:
        self._report_missing(scan.missing_directory)
        removed = {self._ids[p] for p in list(self._ids) if p not in scan.present}
        for path in [p for p in self._stamps if p not in scan.present]:
            self._stamps.pop(path, None)
            self._ids.pop(path, None)
        for path, stamp, problem in scan.failed:
            self._stamps[path] = stamp  # read again only once it changes again
            logger.warning("accounts: %s: %s (keeping its last good version, if any)", path.name, problem)
        upserts: list[Account] = []
        for path, stamp, account in scan.changed:
            owner = next((p for p, i in self._ids.items() if i == account.id and p != path), None)
            self._stamps[path] = stamp
            if owner is not None:
                logger.warning("accounts: %s has the same id %r as %s; ignoring it", path.name, account.id,
                               owner.name)
                continue
            old_id = self._ids.get(path)
            if old_id is not None and old_id != account.id:
                removed.add(old_id)
            self._ids[path] = account.id
            upserts.append(account)
        removed -= set(self._ids.values())
        self._log(upserts, removed)
        self.pool.upsert(upserts)
        self.pool.remove(removed)
        return bool(upserts or removed)

    def _log(self, upserts: list[Account], removed: set[str]) -> None:
        for account in upserts:
            known = self.pool.find(account.id) is not None
            state = " (disabled)" if account.disabled else ""
            # Our own token saves change files too: a reload is routine, an addition is news.
            logger.log(logging.DEBUG if known else logging.INFO, "accounts: %s %s%s",
                       "reloaded" if known else "added", account.label, state)
        for account_id in removed:
            gone = self.pool.find(account_id)
            logger.info("accounts: removed %s", gone.label if gone else account_id)

    def _report_missing(self, missing: bool) -> None:
        if missing and not self._warned_missing:
            logger.warning("accounts: %s is not a directory; no accounts loaded", self.directory)
        self._warned_missing = missing

    # ---- the polling task ---------------------------------------------------------------------
    def start(self) -> None:
        self._poller.start(self.interval)

    async def stop(self) -> None:
        await self._poller.stop()

    async def _poll_or_warn(self) -> None:
        try:
            await self.poll()
        except OSError as e:  # e.g. the directory vanished mid-scan: try again next time
            logger.warning("accounts: cannot scan %s: %s", self.directory, e)
