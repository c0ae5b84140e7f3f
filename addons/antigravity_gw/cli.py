"""``python -m antigravity_gw accounts ...``: manage the account directory the gateway reads.

    accounts list [--json]                         every account file and its state on disk
    accounts list --live [--url URL] [--refresh]   the running gateway's view: live state and quota
    accounts login [--no-browser]                  sign a Google account in (OAuth + PKCE) and add it
    accounts add --refresh-token RT --email E [--project P]
    accounts add --api-key KEY [--email LABEL]
    accounts import [DATA_DIR]                     copy Antigravity-Manager's accounts (~/.antigravity_tools)
    accounts enable|disable|remove ACCOUNT         by id, email or file name

``--dir`` defaults to ``ag_accounts``'s default; ``--set ag_name=value`` takes any gateway option
(``env:NAME`` / ``file:PATH`` for secrets), e.g. the OAuth client for ``login``. Every change is an
atomic write under the same lock the gateway uses; a running gateway applies it within a second or two
(it watches the directory). Cooldowns and quota live in the running gateway's memory: ``list`` shows
what the files say, ``list --live`` and mitmweb's command bar (``ag.accounts``) the live state. Secrets
are never printed: tokens and keys appear masked (``…Ab3x``). ``-`` as a token or key reads it from
stdin, keeping it out of the shell history.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import orjson

from . import account_view, usage_cli
from .cli_options import settings_from
from .settings import DEFAULT_ACCOUNTS_DIR, resolve_secret
from .upstream.accounts import (
    Account,
    account_paths,
    lock_path,
    read_account,
    read_regular_file,
    set_disabled_fields,
    update_account_file,
    write_json_atomic,
)

DEFAULT_MANAGER_DIR = "~/.antigravity_tools"
MAX_INDEX_FILE = 16 * 1024 * 1024  # Antigravity-Manager's accounts.json: an index, a few KiB per account
SAFE_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
OAUTH_CLIENT_OPTIONS = "the gateway's ag_oauth_client_id and ag_oauth_client_secret"
ADD_HINT = ("add one with 'scripts/ag accounts add --refresh-token - --email you@gmail.com' (an OAuth "
            "account) or 'scripts/ag accounts add --api-key -' (a Gemini API key), or copy "
            "Antigravity-Manager's with 'scripts/ag accounts import'; to try the gateway without an account: "
            "scripts/gateway --demo")
LIVE_STATE_HINT = ("cooldowns live in the running gateway: run 'ag.accounts' in mitmweb's command bar "
                   "(or mitmproxy's console)")


class CliError(Exception):
    """A problem the user can fix; printed without a traceback."""


def mask(secret: str) -> str:
    """Enough to tell two secrets apart, never enough to use one."""
    if not secret:
        return "-"
    return "…" + secret[-4:] if len(secret) > 12 else "…"


# ---- reading the directory ------------------------------------------------------------------------
def load_dir(directory: Path) -> list[tuple[Path, Account]]:
    if not directory.is_dir():
        raise CliError(f"{directory} is not a directory (create it, or pass --dir)")
    out = []
    for path in account_paths(directory):
        try:
            out.append((path, read_account(path)))
        except (OSError, ValueError) as e:
            print(f"warning: {path.name}: {e}", file=sys.stderr)
    return out


def find(directory: Path, key: str) -> tuple[Path, Account]:
    """One account by id, email or file name; ambiguity is an error, not a guess."""
    matches = [(p, a) for p, a in load_dir(directory) if key in (a.id, a.email, p.name, p.stem)]
    if not matches:
        raise CliError(f"no account {key!r} in {directory}")
    if len(matches) > 1:
        raise CliError(f"{key!r} matches {len(matches)} accounts ({', '.join(p.name for p, _ in matches)}); "
                       "use the id")
    return matches[0]


def describe(path: Path, a: Account, now: float) -> dict[str, Any]:
    """An account as ``list`` shows it; every secret masked."""
    if a.disabled:
        since = f" since {_utc(a.disabled_at)}" if a.disabled_at else ""
        state, detail = "disabled", f"{a.disabled_reason}{since}"
    elif a.kind == "api_key":
        state, detail = "ready", f"api key {mask(a.api_key)}"
    elif not a.refresh_token and a.expiry_timestamp <= now:
        state, detail = "unusable", "access token expired and no refresh token"
    else:
        token = (f"access token valid until {_utc(a.expiry_timestamp)}" if a.expiry_timestamp > now
                 else "access token expired: refreshed on first use")
        token += f" (refreshing needs {OAUTH_CLIENT_OPTIONS})"
        state = "ready"
        project = a.project_id or "(from loadCodeAssist)"
        detail = f"{token}, refresh token {mask(a.refresh_token)}, project {project}"
    return {"id": a.id, "email": a.email, "kind": a.kind, "state": state, "detail": detail, "file": path.name}


def _utc(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# ---- the verbs ------------------------------------------------------------------------------------
DEFAULT_GATEWAY_URL = f"http://127.0.0.1:{os.environ.get('AG_PORT', '8045')}"
LIVE_TIMEOUT = 60.0  # seconds; ?refresh=1 waits for Cloud Code's quota answers (about 20 s at most)


def cmd_list(args: argparse.Namespace, out: TextIO) -> None:
    """Nothing to list is not an error: a new user's first command, so it says what to do next."""
    if args.live:
        _list_live(args, out)
        return
    now = time.time()
    present = args.dir.is_dir()
    rows = [describe(p, a, now) for p, a in load_dir(args.dir)] if present else []
    if args.json:
        out.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if not rows:
        where = args.dir if present else f"{args.dir} (the directory does not exist yet)"
        out.write(f"no accounts in {where}: {ADD_HINT}\n")
        return
    columns = ("id", "email", "kind", "state", "detail")
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns[:-1]}
    out.write("  ".join(c.upper().ljust(widths.get(c, 0)) for c in columns).rstrip() + "\n")
    for r in rows:
        out.write("  ".join(str(r[c]).ljust(widths.get(c, 0)) for c in columns).rstrip() + "\n")
    out.write(f"({len(rows)} account(s) in {args.dir}; state on disk — {LIVE_STATE_HINT})\n")


def _list_live(args: argparse.Namespace, out: TextIO) -> None:
    """Ask the running gateway (``GET /ag/accounts``, with ag_api_key when inbound auth wants it)."""
    _, values = settings_from(args.set)
    key = resolve_secret(values.ag_api_key, what="ag_api_key") if values.ag_api_key else ""
    url = args.url.rstrip("/") + "/ag/accounts" + ("?refresh=1" if args.refresh else "")
    request = urllib.request.Request(url, headers={"authorization": f"Bearer {key}"} if key else {})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a loopback gateway: no proxy
    try:
        with opener.open(request, timeout=LIVE_TIMEOUT) as resp:
            data = orjson.loads(resp.read())
    except urllib.error.HTTPError as e:
        hint = " (set --set ag_api_key=env:NAME, the gateway's key)" if e.code == 401 else ""
        body = e.read()[:300].decode("utf-8", "replace")
        raise CliError(f"{url} answered {e.code}{hint}: {body}") from None
    except (OSError, ValueError) as e:
        raise CliError(f"could not ask the gateway at {args.url} ({e}); is it running? (--url URL)") from None
    if args.json:
        out.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    for line in account_view.table(data.get("accounts") or [], time.time()):
        out.write(line + "\n")
    out.write(f"(live from {args.url} at {data.get('generated_at')})\n")


def cmd_login(args: argparse.Namespace, out: TextIO) -> None:
    from .login import LoginFailed, login

    settings, _ = settings_from(args.set)
    try:
        signed = asyncio.run(login(settings, out, open_browser=not args.no_browser, timeout=args.timeout))
    except LoginFailed as e:
        raise CliError(f"login failed: {e}") from None
    except KeyboardInterrupt:
        raise CliError("login stopped") from None
    args.dir.mkdir(parents=True, exist_ok=True)
    store_oauth_account(args.dir, signed.email, signed.refresh_token, out, access_token=signed.access_token,
                        expiry=signed.expiry_timestamp, project=signed.project_id)


def cmd_add(args: argparse.Namespace, out: TextIO) -> None:
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.api_key is not None:
        _add_api_key(args.dir, _secret(args.api_key, "API key"), args.email, out)
        return
    if not args.email:
        raise CliError("--email is required with --refresh-token")
    store_oauth_account(args.dir, args.email, _secret(args.refresh_token, "refresh token"), out,
                        project=args.project)


def _secret(value: str, what: str) -> str:
    secret = sys.stdin.readline().strip() if value == "-" else value.strip()
    if not secret:
        raise CliError(f"empty {what}")
    return secret


def store_oauth_account(directory: Path, email: str, refresh_token: str, out: TextIO, *,
                        access_token: str = "", expiry: float = 0.0, project: str | None = None) -> None:
    """A new OAuth account file, or a known email's file given the new grant (its id and the rest kept)."""
    existing = [(p, a) for p, a in load_dir(directory) if a.kind == "oauth" and a.email == email]
    lifetime = max(0, int(expiry - time.time())) if access_token else 0
    if existing:  # a new sign-in of a known account: give it the new grant, keep everything else
        path, account = existing[0]

        def renew(data: dict[str, Any]) -> None:
            token = found if isinstance(found := data.get("token"), dict) else {}
            token.update(refresh_token=refresh_token, access_token=access_token, expiry_timestamp=int(expiry),
                         expires_in=lifetime)
            if project:
                token["project_id"] = project
            data["token"] = token
            set_disabled_fields(data, False)

        update_account_file(path, renew)
        out.write(f"updated {email} ({account.id}): new refresh token {mask(refresh_token)}, enabled\n")
        return
    now = int(time.time())
    ident = str(uuid.uuid4())
    token: dict[str, Any] = {"access_token": access_token, "refresh_token": refresh_token,
                             "expires_in": lifetime, "expiry_timestamp": int(expiry), "token_type": "Bearer",
                             "email": email}
    if project:
        token["project_id"] = project
    write_json_atomic(directory / f"{ident}.json", {
        "id": ident, "email": email, "name": None, "created_at": now, "last_used": now, "token": token,
        "disabled": False, "proxy_disabled": False})
    out.write(f"added {email} ({ident}), refresh token {mask(refresh_token)}\n")


def _add_api_key(directory: Path, api_key: str, label: str | None, out: TextIO) -> None:
    for _, a in load_dir(directory):
        if a.kind == "api_key" and a.api_key == api_key:
            raise CliError(f"that API key is already account {a.label} ({a.id})")
    ident = str(uuid.uuid4())
    name = label or f"key-{api_key[-4:]}"
    write_json_atomic(directory / f"{ident}.json", {
        "id": ident, "email": name, "api_key": api_key, "created_at": int(time.time()), "disabled": False})
    out.write(f"added API key {mask(api_key)} as {name} ({ident})\n")


def cmd_import(args: argparse.Namespace, out: TextIO) -> None:
    source = args.source.expanduser()
    src_accounts = source / "accounts"
    if not src_accounts.is_dir():
        raise CliError(f"{source} has no accounts/ directory (is it Antigravity-Manager's data dir?)")
    if src_accounts.resolve() == args.dir.expanduser().resolve():
        out.write(f"{src_accounts} is already the gateway's account directory: nothing to copy\n")
        return
    args.dir.mkdir(parents=True, exist_ok=True)
    present = load_dir(args.dir)
    ids = {a.id for _, a in present}
    emails = {a.email for _, a in present if a.kind == "oauth"}
    copied = skipped = 0
    for path in _manager_files(source, out):
        try:
            data = orjson.loads(read_regular_file(path))
            account = read_account(path)
        except (OSError, ValueError) as e:
            out.write(f"skipped {path.name}: {e}\n")
            skipped += 1
            continue
        known = account.id in ids or (account.kind == "oauth" and account.email in emails)
        if known and not args.overwrite:
            out.write(f"skipped {account.label}: already present (use --overwrite to replace it)\n")
            skipped += 1
            continue
        write_json_atomic(import_target(args.dir, account.id), data)
        out.write(f"imported {account.label} ({account.id}){' [disabled]' if account.disabled else ''}\n")
        copied += 1
    out.write(f"{copied} imported, {skipped} skipped, into {args.dir}\n")


def account_file_name(ident: str) -> str:
    """``<id>.json`` when the id is a plain name (Antigravity-Manager's are UUIDs); otherwise a name made
    of its safe characters and a hash of it, so an id such as ``../../x``, ``/etc/cron.d/x`` or one with
    a NUL can never name a path outside the directory (and two odd ids never share a file)."""
    if SAFE_STEM.fullmatch(ident) and not ident.endswith("."):
        return f"{ident}.json"
    readable = re.sub(r"[^A-Za-z0-9_-]+", "_", ident).strip("_")[:60] or "account"
    digest = hashlib.sha256(ident.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{readable}-{digest}.json"


def import_target(directory: Path, ident: str) -> Path:
    """Where an imported account goes: always a direct child of ``directory`` (checked, not assumed)."""
    target = directory / account_file_name(ident)
    if target.parent != directory or target.name.startswith("."):
        raise CliError(f"refusing to write account {ident!r} outside {directory}")
    return target


def _manager_files(source: Path, out: TextIO) -> list[Path]:
    """The files listed in ``accounts.json`` first (the manager's order), then any others."""
    files = account_paths(source / "accounts")
    try:
        index = orjson.loads(read_regular_file(source / "accounts.json", MAX_INDEX_FILE))
    except (OSError, ValueError):
        return files
    listed = [str(e.get("id")) for e in (index.get("accounts") or []) if isinstance(e, dict)] \
        if isinstance(index, dict) else []
    by_stem = {p.stem: p for p in files}
    for ident in listed:
        if ident not in by_stem:
            out.write(f"warning: accounts.json lists {ident} but accounts/{ident}.json is missing\n")
    ordered = [by_stem[i] for i in listed if i in by_stem]
    return ordered + [p for p in files if p not in ordered]


def cmd_enable(args: argparse.Namespace, out: TextIO) -> None:
    path, account = find(args.dir, args.account)
    update_account_file(path, lambda d: set_disabled_fields(d, False))
    out.write(f"enabled {account.label} ({account.id})\n")


def cmd_disable(args: argparse.Namespace, out: TextIO) -> None:
    path, account = find(args.dir, args.account)
    reason = args.reason or "disabled with the CLI"
    update_account_file(path, lambda d: set_disabled_fields(d, True, reason))
    out.write(f"disabled {account.label} ({account.id}): {reason}\n")


def cmd_remove(args: argparse.Namespace, out: TextIO) -> None:
    path, account = find(args.dir, args.account)
    path.unlink()
    lock_path(path).unlink(missing_ok=True)
    out.write(f"removed {account.label} ({account.id}): {path.name} deleted\n")


# ---- the parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m antigravity_gw", description="antigravity-gateway tools")
    tools = parser.add_subparsers(dest="tool", required=True)
    accounts = tools.add_parser("accounts", help="manage the account directory (ag_accounts)",
                                description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--dir", type=Path, default=None,
                        help=f"account directory (default: ag_accounts, {DEFAULT_ACCOUNTS_DIR})")
    common.add_argument("--set", action="append", default=[], metavar="ag_name=value",
                        help="a gateway option, as mitmdump takes it (env:NAME / file:PATH for secrets); "
                             "repeatable")
    verbs = accounts.add_subparsers(dest="verb", required=True)
    p = verbs.add_parser("list", parents=[common], help="accounts and their state on disk")
    p.add_argument("--json", action="store_true", help="JSON instead of a table (secrets masked)")
    p.add_argument("--live", action="store_true",
                   help="ask the running gateway (GET /ag/accounts): live state, quota per model, buckets")
    p.add_argument("--url", default=DEFAULT_GATEWAY_URL,
                   help=f"the gateway, with --live (default {DEFAULT_GATEWAY_URL})")
    p.add_argument("--refresh", action="store_true",
                   help="with --live: have the gateway ask for the quota first")
    p.set_defaults(run=cmd_list)
    p = verbs.add_parser("login", parents=[common],
                         help="sign a Google account in (browser, OAuth with PKCE) and add it")
    p.add_argument("--no-browser", action="store_true", help="only print the URL to open")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds to wait for the sign-in (default 300)")
    p.set_defaults(run=cmd_login)
    p = verbs.add_parser("add", parents=[common], help="add an account by refresh token or API key")
    kind = p.add_mutually_exclusive_group(required=True)
    kind.add_argument("--refresh-token", help="OAuth refresh token ('-' reads it from stdin)")
    kind.add_argument("--api-key", help="Gemini API key ('-' reads it from stdin)")
    p.add_argument("--email", help="the account's email (required with --refresh-token; a label for keys)")
    p.add_argument("--project", help="Cloud Code project id (default: from loadCodeAssist on first use)")
    p.set_defaults(run=cmd_add)
    p = verbs.add_parser("import", parents=[common], help="copy an Antigravity-Manager data dir's accounts")
    p.add_argument("source", nargs="?", type=Path, default=Path(DEFAULT_MANAGER_DIR),
                   help=f"its data directory: accounts/ and accounts.json (default {DEFAULT_MANAGER_DIR})")
    p.add_argument("--overwrite", action="store_true", help="replace accounts already present")
    p.set_defaults(run=cmd_import)
    for name, run, text in (("enable", cmd_enable, "enable an account"), ("disable", cmd_disable,
                            "disable an account"), ("remove", cmd_remove, "delete an account's file")):
        p = verbs.add_parser(name, parents=[common], help=text)
        p.add_argument("account", help="id, email or file name")
        if name == "disable":
            p.add_argument("--reason", help="stored as disabled_reason")
        p.set_defaults(run=run)
    usage_cli.add_parser(tools)
    return parser


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.dir is None:
            args.dir = settings_from(args.set)[0].accounts_dir if args.set else Path(DEFAULT_ACCOUNTS_DIR)
        args.dir = args.dir.expanduser()
        args.run(args, out or sys.stdout)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
