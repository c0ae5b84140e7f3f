"""Account files in Antigravity-Manager's format: parse them, and write them back without losing a byte.

An OAuth account file holds ``token.{access_token, refresh_token, expiry_timestamp, project_id}``;
an API-key account holds ``api_key`` instead of ``token``. Unknown fields are kept as they were:
the gateway shares the directory with Antigravity-Manager. Every write is atomic (temp file, fsync,
rename) under an exclusive lock, so a crash or a second writer never leaves half a file behind.
This module does blocking file I/O: callers on the event loop run it with ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

logger = logging.getLogger(__name__)

AccountKind = Literal["oauth", "api_key"]


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
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        """How the account appears in logs, headers and errors: never a secret."""
        return self.email or self.id

    @property
    def usable(self) -> bool:
        return not self.disabled and bool(self.api_key if self.kind == "api_key" else self.refresh_token or self.access_token)

    def token_expires_within(self, seconds: float, now: float) -> bool:
        return self.kind == "oauth" and (not self.access_token or self.expiry_timestamp - seconds <= now)

    def __repr__(self) -> str:  # secrets never reach a log line through repr()
        return f"Account({self.label!r}, {self.kind}, disabled={self.disabled})"


def parse_account(data: dict[str, Any], *, path: Path | None = None) -> Account:
    """One account from its JSON object; ``ValueError`` when it is neither an OAuth nor an API-key account."""
    if not isinstance(data, dict):
        raise ValueError("an account file must hold a JSON object")
    ident = str(data.get("id") or (path.stem if path else "") or "")
    email = str(data.get("email") or data.get("name") or "")
    disabled, reason = _disabled_state(data)
    if isinstance(data.get("api_key"), str) and data["api_key"]:
        return Account(ident, email or ident, "api_key", path, api_key=data["api_key"],
                       disabled=disabled, disabled_reason=reason, raw=data)
    token = data.get("token")
    if not isinstance(token, dict):
        raise ValueError("no 'token' object and no 'api_key'")
    return Account(
        ident, email or str(token.get("email") or ident), "oauth", path,
        access_token=str(token.get("access_token") or ""),
        refresh_token=str(token.get("refresh_token") or ""),
        expiry_timestamp=float(token.get("expiry_timestamp") or 0),
        project_id=str(token.get("project_id") or data.get("project_id") or ""),
        disabled=disabled, disabled_reason=reason, raw=data,
    )


def _disabled_state(data: dict[str, Any]) -> tuple[bool, str]:
    if data.get("disabled"):
        return True, str(data.get("disabled_reason") or "disabled")
    # Antigravity-Manager's "proxy_disabled" means "not for the proxy"; quota protection is per model there.
    if data.get("proxy_disabled") and data.get("proxy_disabled_reason") != "quota_protection":
        return True, str(data.get("proxy_disabled_reason") or "proxy_disabled")
    return False, ""


def account_to_json(account: Account) -> dict[str, Any]:
    """The account's raw object with the fields the gateway owns brought up to date."""
    data = dict(account.raw)
    if account.kind == "oauth":
        token = dict(data.get("token") or {})
        token.update(access_token=account.access_token, refresh_token=account.refresh_token,
                     expiry_timestamp=int(account.expiry_timestamp))
        if account.project_id:
            token["project_id"] = account.project_id
        data["token"] = token
    else:
        data["api_key"] = account.api_key
    data.setdefault("id", account.id)
    if account.email:
        data.setdefault("email", account.email)
    data["disabled"] = account.disabled
    if account.disabled:
        data["disabled_reason"] = account.disabled_reason
        data.setdefault("disabled_at", int(time.time()))
    return data


def load_accounts(directory: Path) -> tuple[list[Account], list[str]]:
    """Every ``*.json`` account in ``directory``; unreadable files are reported, never fatal."""
    accounts: list[Account] = []
    problems: list[str] = []
    if not directory.is_dir():
        return accounts, [f"{directory} is not a directory"]
    for path in sorted(directory.glob("*.json")):
        try:
            accounts.append(parse_account(orjson.loads(path.read_bytes()), path=path))
        except (OSError, ValueError) as e:  # orjson.JSONDecodeError is a ValueError
            problems.append(f"{path.name}: {e}")
    return accounts, problems


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on ``<file>.lock`` beside the account file."""
    lock_path = path.with_name(path.name + ".lock")
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


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


def save_account(account: Account) -> None:
    """Persist the gateway-owned fields, merged into the file's current content under the lock."""
    if account.path is None:
        return
    with locked(account.path):
        try:
            on_disk = orjson.loads(account.path.read_bytes())
        except (OSError, ValueError):
            on_disk = {}
        if isinstance(on_disk, dict):
            # Someone else (Antigravity-Manager, the CLI) may have edited other fields since we loaded.
            account.raw = {**on_disk, **{k: v for k, v in account.raw.items() if k not in on_disk}}
        write_json_atomic(account.path, account_to_json(account))
