"""Account files in Antigravity-Manager's format: parse them, and change them without losing a byte.

An OAuth account file holds ``token.{access_token, refresh_token, expiry_timestamp, project_id}``;
an API-key account holds ``api_key`` instead of ``token``. The gateway shares the directory with
Antigravity-Manager and the CLI, so it never rewrites a file from memory: every change re-reads the
file under an exclusive lock, sets only the fields it owns, and writes it back atomically (temp
file, fsync, rename), so a crash or a second writer never leaves half a file behind.

The functions here do blocking file I/O; ``AccountFiles`` is the same for the event loop (each call
runs in a worker thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

logger = logging.getLogger(__name__)

AccountKind = Literal["oauth", "api_key"]
Stamp = tuple[int, int, int]  # mtime_ns, size, inode: any change means "read it again"
MAX_ACCOUNT_FILE = 1024 * 1024  # bytes; a real account file is a few KiB


class NotAnAccountFile(ValueError):
    """A path in the directory that must not be read: not a regular file, or too big."""


@dataclass(slots=True)
class Account:
    id: str
    email: str
    kind: AccountKind
    path: Path | None
    access_token: str = ""
    refresh_token: str = ""
    expiry_timestamp: float = 0.0
    project_id: str = ""
    api_key: str = ""
    disabled: bool = False
    disabled_reason: str = ""
    disabled_at: int = 0
    # Refresh tokens this process rotated away from: a file still holding one is older than memory.
    retired_refresh_tokens: set[str] = field(default_factory=set, repr=False)

    @property
    def label(self) -> str:
        """How the account appears in logs, headers and errors: never a secret."""
        return self.email or self.id

    @property
    def usable(self) -> bool:
        secret = self.api_key if self.kind == "api_key" else self.refresh_token or self.access_token
        return not self.disabled and bool(secret)

    def token_expires_within(self, seconds: float, now: float) -> bool:
        return self.kind == "oauth" and (not self.access_token or self.expiry_timestamp - seconds <= now)

    def __repr__(self) -> str:  # secrets never reach a log line through repr()
        return f"Account({self.label!r}, {self.kind}, disabled={self.disabled})"

    # ---- changes: every one goes through a named method (the object is shared by in-flight requests) ----
    def apply_refresh(self, used: str, access_token: str, expires_at: float, new_refresh: str = "") -> None:
        """A token refresh made with the refresh token ``used``; a rotated one retires ``used`` for good
        (a file still holding it is older than memory, see ``merge_file``)."""
        if new_refresh and new_refresh != used:
            self.retired_refresh_tokens.add(used)
            self.refresh_token = new_refresh
        self.access_token, self.expiry_timestamp = access_token, expires_at

    def adopt_refresh_token(self, token: str) -> None:
        """Another program rotated the refresh token on disk: use its one."""
        self.refresh_token = token

    def disable(self, reason: str, at: int) -> None:
        self.disabled, self.disabled_reason, self.disabled_at = True, reason, at

    def enable(self) -> None:
        self.disabled, self.disabled_reason, self.disabled_at = False, "", 0

    def set_project(self, project_id: str) -> None:
        self.project_id = project_id

    def merge_file(self, loaded: Account) -> None:
        """Apply a re-read file to this in-memory account (same object: in-flight requests keep it).

        The file wins, except where memory is provably newer: our own refresh may be written a moment
        after a scan read the file, and a rotated-away refresh token must never come back from disk.
        """
        keep_token = loaded.refresh_token in self.retired_refresh_tokens
        same_grant = loaded.refresh_token == self.refresh_token
        fresher_in_memory = same_grant and self.expiry_timestamp > loaded.expiry_timestamp
        self.email, self.kind, self.path = loaded.email, loaded.kind, loaded.path
        self.api_key = loaded.api_key
        self.disabled, self.disabled_reason, self.disabled_at = (
            loaded.disabled, loaded.disabled_reason, loaded.disabled_at)
        self.project_id = loaded.project_id or self.project_id
        if keep_token:
            return
        self.refresh_token = loaded.refresh_token
        if not fresher_in_memory:
            self.access_token, self.expiry_timestamp = loaded.access_token, loaded.expiry_timestamp


def parse_account(data: Any, *, path: Path | None = None) -> Account:
    """One account from its JSON object; ``ValueError`` when it is neither an OAuth nor an API-key account."""
    if not isinstance(data, dict):
        raise ValueError("an account file must hold a JSON object")
    ident = str(data.get("id") or (path.stem if path else "") or "")
    email = str(data.get("email") or data.get("name") or "")
    disabled, reason = _disabled_state(data)
    at = int(data.get("disabled_at") or 0) if isinstance(data.get("disabled_at"), int | float) else 0
    if isinstance(data.get("api_key"), str) and data["api_key"]:
        return Account(ident, email or ident, "api_key", path, api_key=data["api_key"],
                       disabled=disabled, disabled_reason=reason, disabled_at=at)
    token = data.get("token")
    if not isinstance(token, dict):
        raise ValueError("no 'token' object and no 'api_key'")
    try:
        expiry = float(token.get("expiry_timestamp") or 0)
    except (TypeError, ValueError):
        raise ValueError("token.expiry_timestamp is not a number") from None
    return Account(
        ident, email or str(token.get("email") or ident), "oauth", path,
        access_token=str(token.get("access_token") or ""),
        refresh_token=str(token.get("refresh_token") or ""),
        expiry_timestamp=expiry,
        project_id=str(token.get("project_id") or data.get("project_id") or ""),
        disabled=disabled, disabled_reason=reason, disabled_at=at,
    )


def _disabled_state(data: dict[str, Any]) -> tuple[bool, str]:
    if data.get("disabled"):
        return True, str(data.get("disabled_reason") or "disabled")
    # Antigravity-Manager's "proxy_disabled" means "not for the proxy"; quota protection is per model there.
    if data.get("proxy_disabled") and data.get("proxy_disabled_reason") != "quota_protection":
        return True, str(data.get("proxy_disabled_reason") or "proxy_disabled")
    return False, ""


# ---- reading ------------------------------------------------------------------------------------
def read_account(path: Path) -> Account:
    """Blocking; ``OSError`` or ``ValueError`` (orjson's decode error is one) when it cannot be used."""
    return parse_account(orjson.loads(read_regular_file(path)), path=path)


def read_regular_file(path: Path, limit: int = MAX_ACCOUNT_FILE) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; ``NotAnAccountFile`` for anything else.

    Opening a FIFO blocks until a writer comes (and a device may never end), so the type is checked
    before opening, and the open is non-blocking in case the path was swapped in between; the
    descriptor is checked again. Symbolic links are followed: their target must pass the same checks.
    """
    _check_regular(os.stat(path), limit)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        _check_regular(os.fstat(fd), limit)
        data = b""
        while len(data) <= limit and (piece := os.read(fd, limit + 1 - len(data))):
            data += piece
    finally:
        os.close(fd)
    if len(data) > limit:
        raise NotAnAccountFile(f"larger than {limit} bytes; skipped")
    return data


def _check_regular(st: os.stat_result, limit: int) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise NotAnAccountFile(f"not a regular file ({_file_kind(st.st_mode)}); skipped")
    if st.st_size > limit:
        raise NotAnAccountFile(f"{st.st_size} bytes, larger than the {limit}-byte limit; skipped")


def _file_kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((name for test, name in kinds if test(mode)), "not a file")


def account_paths(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.json") if not p.name.startswith("."))


def stamp_of(path: Path) -> Stamp:
    st = os.stat(path)
    return st.st_mtime_ns, st.st_size, st.st_ino


# ---- writing ------------------------------------------------------------------------------------
@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on a hidden ``.<file>.lock`` beside the account file.

    Not on the file itself: the atomic rename replaces its inode, and a lock on the old one would
    not stop a writer who opens the new one.
    """
    # O_NONBLOCK: a FIFO planted under the lock's name fails the open instead of blocking it.
    fd = os.open(lock_path(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write to a temp file in the same directory, fsync, then rename over the target."""
    payload = orjson.dumps(data, option=orjson.OPT_INDENT_2)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (a crash right after it must not bring the old file back)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def update_account_file(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """Re-read the file under the lock, let ``change`` edit the object in place, write it atomically.

    Fields the gateway does not own (quota, device profile, ...) stay as Antigravity-Manager left them.
    """
    with locked(path):
        data = orjson.loads(read_regular_file(path))
        if not isinstance(data, dict):
            raise ValueError(f"{path.name} does not hold a JSON object")
        change(data)
        write_json_atomic(path, data)


def set_token_fields(data: dict[str, Any], account: Account) -> None:
    token = found if isinstance(found := data.get("token"), dict) else {}
    token.update(access_token=account.access_token, refresh_token=account.refresh_token,
                 expiry_timestamp=int(account.expiry_timestamp),
                 expires_in=max(0, int(account.expiry_timestamp - time.time())))
    if account.project_id:
        token["project_id"] = account.project_id
    data["token"] = token


def set_disabled_fields(data: dict[str, Any], disabled: bool, reason: str = "", at: int = 0) -> None:
    """Disable with reason and time, or enable (Antigravity-Manager's ``proxy_disabled`` included)."""
    data["disabled"] = disabled
    if disabled:
        data["disabled_reason"] = reason or "disabled"
        data["disabled_at"] = at or int(time.time())
        return
    for key in ("disabled_reason", "disabled_at", "proxy_disabled_reason", "proxy_disabled_at"):
        data.pop(key, None)
    if data.get("proxy_disabled"):
        data["proxy_disabled"] = False


def save_tokens(account: Account) -> None:
    if account.path is not None:
        update_account_file(account.path, lambda d: set_token_fields(d, account))


def save_disabled(account: Account) -> None:
    if account.path is not None:
        update_account_file(account.path, lambda d: set_disabled_fields(
            d, account.disabled, account.disabled_reason, account.disabled_at))


def stored_refresh_token(account: Account) -> str:
    """The refresh token on disk now (another program may have rotated it since we loaded)."""
    if account.path is None:
        return account.refresh_token
    try:
        return read_account(account.path).refresh_token
    except (OSError, ValueError):
        return account.refresh_token


class AccountFiles:
    """The account-file writes the token service needs, off the event loop."""

    async def save_tokens(self, account: Account) -> None:
        await asyncio.to_thread(save_tokens, account)

    async def save_disabled(self, account: Account) -> None:
        await asyncio.to_thread(save_disabled, account)

    async def stored_refresh_token(self, account: Account) -> str:
        return await asyncio.to_thread(stored_refresh_token, account)
