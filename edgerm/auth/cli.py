"""``edgerm-master init`` and ``edgerm token create|revoke|list``: the credentials file from the shell.

::

    edgerm-master init [--state-dir DIR] [--format text|env|json]
    edgerm token create --role agent|framework|admin|metrics|join [--name N] [--expires 30d]
                        [--agent-id ID] [--framework-id ID] [--state-dir DIR] [--quiet]
                        [--reload]
    edgerm token revoke NAME [--state-dir DIR] [--reload]
    edgerm token list [--state-dir DIR] [--json]

Rules: these act on ``STATE_DIR/credentials.yaml`` locally (under its lock,
:mod:`edgerm.auth.credentials`); a running master picks the change up on
SIGHUP, and a revoked token stops working at once then. ``--reload`` sends
that SIGHUP to the master whose pid is in ``STATE_DIR/master.pid`` (only if
that process is an ``edgerm`` master).
A token is printed once, when it is made, and never again: the file keeps
its hash only. Exit status 0, 1 when the file cannot be changed (e.g. a
name in use, init over an existing file), 2 for bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from edgerm.auth import credentials as creds
from edgerm.auth.client import JOIN_TOKEN_ENV, TOKEN_ENV
from edgerm.auth.principal import Role
from edgerm.errors import ConfigError, EdgermError
from edgerm.ids import AgentId, FrameworkId
from edgerm.paths import default_master_state_dir


def _state_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"the master's state dir (default {default_master_state_dir()})",
    )


def _path(state_dir: Path | None) -> Path:
    return (state_dir if state_dir is not None else default_master_state_dir()) / creds.CREDENTIALS_FILE


# -- init -------------------------------------------------------------------------------


def init_main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="edgerm-master init", description="Create the master's state dir with an admin and a join token."
    )
    _state_dir_arg(p)
    p.add_argument(
        "--format",
        choices=["text", "env", "json"],
        default="text",
        help='text (default); env: shell export lines (eval "$(edgerm-master init --format env)"); json',
    )
    args = p.parse_args(argv)
    path = _path(args.state_dir)
    store = creds.CredentialStore(creds.Credentials())
    admin, _ = store.issue(Role.ADMIN, "admin")
    join, _ = store.issue(Role.JOIN, "join")

    def create(current: creds.Credentials) -> creds.Credentials:
        if len(current):
            raise ConfigError(f"{path} already holds credentials: add more with `edgerm token create`")
        return store.credentials

    try:
        creds.update(path, create, create=True)
    except (ConfigError, OSError) as e:
        print(f"edgerm-master init: {e}", file=sys.stderr)
        return 1
    if args.format == "env":
        print(f"export {TOKEN_ENV}={shlex.quote(admin)}")
        print(f"export {JOIN_TOKEN_ENV}={shlex.quote(join)}")
    elif args.format == "json":
        print(json.dumps({"state_dir": str(path.parent), "admin_token": admin, "join_token": join}))
    else:
        print(f"created {path} (token hashes only: the tokens are shown now and never again)")
        print(f"admin token: {admin}")
        print(f"  for `edgerm`, the dashboard (/?token=...) and frameworks: --token or {TOKEN_ENV}")
        print(f"join token:  {join}")
        print(f"  for new agents: edgerm-agent --join-token ... or {JOIN_TOKEN_ENV}")
    return 0


# -- token ---------------------------------------------------------------------------------


def _reload_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reload", action="store_true", help="then SIGHUP the running master of this state dir")


def reload_master(state_dir: Path) -> int:
    """SIGHUP the master recorded in ``STATE_DIR/master.pid``; its pid. ConfigError if there is none running."""
    pid_file = state_dir / "master.pid"
    try:
        pid = int(pid_file.read_text(encoding="ascii").strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        raise ConfigError(f"no running master recorded in {pid_file}: send it SIGHUP yourself") from None
    if b"edgerm" not in cmdline:  # a stale pid file: never signal another program
        raise ConfigError(f"{pid_file} names process {pid}, which is not an edgerm master")
    os.kill(pid, signal.SIGHUP)
    return pid


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edgerm token", description="Manage the master's credentials.")
    sub = p.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="make a new credential and print its token once")
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", help="the credential's name (default: ROLE-RANDOM)")
    create.add_argument("--expires", metavar="DURATION", help="e.g. 12h, 30d (default: never)")
    create.add_argument("--agent-id", help="agent credentials: the agent id it speaks for (required)")
    create.add_argument("--framework-id", help="framework credentials: the only framework id it may use")
    create.add_argument("--quiet", action="store_true", help="print the token only")
    _reload_arg(create)
    _state_dir_arg(create)
    revoke = sub.add_parser("revoke", help="remove a credential by name (the master stops accepting it on SIGHUP)")
    revoke.add_argument("name")
    _reload_arg(revoke)
    _state_dir_arg(revoke)
    listing = sub.add_parser("list", help="the credentials (names, roles, bindings; never tokens)")
    listing.add_argument("--json", action="store_true")
    _state_dir_arg(listing)
    return p


def token_main(argv: Sequence[str] | None = None) -> int:
    p = _parser()
    args = p.parse_args(argv)
    path = _path(args.state_dir)
    try:
        if args.command == "create":
            code = _create(p, args, path)
        elif args.command == "revoke":
            code = _revoke(args.name, path)
        else:
            return _list(path, args.json)
        if code == 0 and args.reload:
            pid = reload_master(path.parent)
            print(f"sent SIGHUP to the master (pid {pid}): it re-reads {path}", file=sys.stderr)
        return code
    except (EdgermError, OSError) as e:
        print(f"edgerm token: {e}", file=sys.stderr)
        return 1


def _create(p: argparse.ArgumentParser, args: argparse.Namespace, path: Path) -> int:
    role = Role(args.role)
    if role is Role.AGENT and not args.agent_id:
        p.error("--role agent needs --agent-id (or let the agent join with a join token)")
    if args.agent_id and role is not Role.AGENT:
        p.error("--agent-id is for --role agent")
    if args.framework_id and role is not Role.FRAMEWORK:
        p.error("--framework-id is for --role framework")
    expires_in = creds.parse_duration(args.expires) if args.expires else None
    store = creds.CredentialStore(path=path)
    token, credential = store.issue(
        role,
        args.name,
        expires_in=expires_in,
        agent_id=AgentId(creds.check_agent_id(args.agent_id)) if args.agent_id else None,
        framework_id=FrameworkId(args.framework_id) if args.framework_id else None,
    )
    if args.quiet:
        print(token)
    else:
        print(f"created {credential.role.value} credential {credential.name} in {path}")
        print(f"token: {token}")
        print("(shown once; a running master accepts it after SIGHUP: --reload, or kill -HUP <master pid>)")
    return 0


def _revoke(name: str, path: Path) -> int:
    store = creds.CredentialStore(path=path)
    if not store.revoke(name):
        print(f"edgerm token: no credential named {name!r} in {path}", file=sys.stderr)
        return 1
    print(f"revoked {name} in {path} (a running master stops accepting it on SIGHUP: kill -HUP <master pid>)")
    return 0


def _list(path: Path, as_json: bool) -> int:
    entries = list(creds.CredentialFiles(path).credentials)
    rows = [
        {
            "name": c.name,
            "role": c.role.value,
            "created": c.created,
            "expires": c.expires,
            "agent_id": c.agent_id or "",
            "framework_id": c.framework_id or "",
        }
        for c in entries
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    now = time.time()
    print(f"{'NAME':<40} {'ROLE':<10} {'EXPIRES':<22} BINDING")
    for c in entries:
        if c.expires is None:
            expires = "never"
        else:
            left = c.expires - now
            expires = "expired" if left <= 0 else time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(c.expires))
        binding = f"agent {c.agent_id}" if c.agent_id else (f"framework {c.framework_id}" if c.framework_id else "-")
        print(f"{c.name:<40} {c.role.value:<10} {expires:<22} {binding}")
    return 0
