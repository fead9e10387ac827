"""The operator's commands of the `hashmatch` CLI: `serve`, `mirror`, `platform list | add | rotate
| revoke | roles`, `audit list`, `list import`.

They belong to the server (they open its store and run it), so they live here and reach the CLI
through the `hashmatch.cli` entry point: the client package never imports the server, and an
install without the server simply has no operator commands. `serve` takes every ServerConfig
setting from the same flag table as `python -m hashmatch.server`.
"""
import argparse
import contextlib
import dataclasses
import getpass
import itertools
import os
import time

import numpy as np

from hashmatch.clients import output
from hashmatch.clients.cli import parse_duration, parse_since, tls_flags
from hashmatch.server import config as server_config
from hashmatch.server.config import ServerConfig
from hashmatch.server.errors import RequestError, status_for
from hashmatch.server.media import PDQ_BYTES
from hashmatch.server.platforms import DEFAULT_GRACE_S
from hashmatch.server.store import open_store

IMPORT_CHUNK = 1 << 20  # hex lines read and stored per step: memory stays flat on huge lists


def register(table) -> None:
    """Adds the operator commands to the CLI's `CommandTable` (clients/cli.py)."""
    server_config.add_flags(table.command(
        "serve", cmd_serve, "run the server on an SQLite file or a PostgreSQL list"))
    sub = table.command("mirror", cmd_mirror,
                        "keep a durable copy of a server's list in --db (resumes where it stopped)")
    _store_flag(sub)
    sub.add_argument("--from", dest="source", required=True, metavar="HOST:PORT",
                     help="the server to copy from")
    sub.add_argument("--api-key", help="API key with the 'replicate' role "
                                       "(default: $HASHMATCH_API_KEY)")
    sub.add_argument("--every", type=float, default=1.0,
                     help="seconds between progress lines while idle (default 1)")
    tls_flags(sub, argparse.SUPPRESS)   # TLS to --from, as every command that connects
    table.group("platform", "manage participating platforms")
    sub = table.command("add", cmd_platform_add, "register a platform and print its API key once",
                        group="platform")
    _with_store(sub, "name", "NAME")
    sub.add_argument("--roles", default="match",
                     help="what its key may do, comma-separated from match, feedback, "
                          "replicate, admin (default: match)")
    _store_flag(table.command("list", cmd_platform_list, "show platforms, roles and keys' ages "
                              "and states (never key material)", group="platform"))
    sub = table.command("rotate", cmd_platform_rotate, "issue a new API key (printed once); the "
                        "platform's current keys end after --grace", group="platform")
    _with_store(sub, "name", "NAME")
    sub.add_argument("--grace", type=parse_duration, default=float(DEFAULT_GRACE_S),
                     metavar="DURATION", help="how long the old keys stay valid: seconds or "
                     "30m, 24h, 7d (default 24h; 0 ends them now)")
    sub = table.command("revoke", cmd_platform_revoke, "end a platform's keys now, on every "
                        "server within a second", group="platform")
    _with_store(sub, "name", "NAME")
    sub.add_argument("--key-id", type=int, metavar="ID",
                     help="revoke only this key (ids from `platform list`; default: every key)")
    sub = table.command("roles", cmd_platform_roles, "replace what a platform's keys may do",
                        group="platform")
    _with_store(sub, "name", "NAME")
    sub.add_argument("--roles", required=True, help="comma-separated from match, feedback, "
                     "replicate, admin")
    table.group("audit", "read the audit log (admin actions, refused keys, withdrawals)")
    sub = table.command("list", cmd_audit_list, "print audit rows, oldest first", group="audit")
    _store_flag(sub)
    sub.add_argument("--since", type=parse_since, default=0, metavar="WHEN",
                     help="only rows from the last DURATION (1h, 7d) or from a date/time "
                          "(2026-12-01, 2026-12-01T08:00)")
    table.group("list", "manage the hash list")
    _with_store(table.command("import", cmd_list_import,
                              "bulk-load a file of hex PDQ hashes, one per line", group="list"),
                "file", "FILE")


def _with_store(sub, argument: str, metavar: str) -> None:
    sub.add_argument(argument, metavar=metavar)
    _store_flag(sub)


def _store_flag(sub) -> None:
    sub.add_argument("--db", default=ServerConfig.db_path,
                     help=f"the list's store: an SQLite file or a postgresql:// URL (default "
                          f"{ServerConfig.db_path})")


def cmd_serve(args, reporter) -> None:
    from hashmatch.clients.cli import UsageError
    from hashmatch.server.app import serve

    try:
        config = server_config.from_namespace(args)
    except ValueError as error:
        raise UsageError(str(error)) from None
    reporter.note(f"hashmatch: starting on {config.listen} with store {config.db_path} (Ctrl-C or "
                  "SIGTERM stops it; the server logs JSON lines to stderr)")
    serve(config)


def _actor() -> str:
    """Who runs an operator command, for the audit log."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


@contextlib.contextmanager
def _operating(args):
    """The store at --db; a refused change (a bad role, no such platform or key) is a usage
    error."""
    from hashmatch.clients.cli import UsageError

    store = open_store(args.db)
    try:
        yield store
    except (ValueError, LookupError) as error:
        raise UsageError(str(error)) from None
    finally:
        store.close()


def cmd_platform_list(args, reporter) -> None:
    with _operating(args) as store:
        platforms = store.platforms()
    now = time.time()
    for p in platforms:
        reporter.emit(*output.platform({
            "platform": p.name, "roles": list(p.roles), "created": p.created,
            "keys": [{"id": k.id, "created": k.created, "expires": k.expires,
                      "revoked": k.revoked, "state": k.state(now)} for k in p.keys]}, now))
    if not platforms:
        reporter.note(f"no platforms in {args.db}; add one with `hashmatch platform add NAME`")


def cmd_platform_rotate(args, reporter) -> None:
    with _operating(args) as store:
        api_key, key_id, sequence = store.rotate_key(args.name, args.grace, _actor())
    reporter.emit(*output.new_key(args.name, api_key, key_id, args.grace, sequence))


def cmd_platform_revoke(args, reporter) -> None:
    with _operating(args) as store:
        revoked, sequence = store.revoke_keys(args.name, args.key_id, _actor())
    reporter.emit(*output.revoked_keys(args.name, revoked, sequence))


def cmd_platform_roles(args, reporter) -> None:
    with _operating(args) as store:
        roles, sequence = store.set_roles(args.name, args.roles.split(","), _actor())
    reporter.emit(*output.platform_roles(args.name, roles, sequence))


def cmd_audit_list(args, reporter) -> None:
    after = 0
    with _operating(args) as store:
        while rows := store.audit_rows(args.since, after):
            for r in rows:
                reporter.emit(*output.audit_row(dataclasses.asdict(r)))
            after = rows[-1].id


def cmd_platform_add(args, reporter) -> None:
    roles = [r.strip() for r in args.roles.split(",")]
    with _operating(args) as store:
        api_key = store.add_platform(args.name, roles, _actor())
    reporter.emit(*output.new_platform(args.name, api_key, roles))


def cmd_mirror(args, reporter) -> None:
    """Copies a server's list into --db until interrupted; a progress line at most each second."""
    import grpc

    from hashmatch.clients.cli import UsageError, tls_of
    from hashmatch.clients.client import HashmatchError
    from hashmatch.server.mirror import Mirror
    from hashmatch.server.replica_store import open_replica_store

    store = open_replica_store(args.db)
    shown = [0.0]

    def progress(p) -> None:
        if p.event != "heartbeat" or time.monotonic() - shown[0] >= args.every:
            shown[0] = time.monotonic()
            reporter.emit({"event": p.event, "sequence": p.sequence, "head": p.head, "lag": p.lag,
                           "rows": p.rows, "rows_per_s": round(p.rows_per_s, 1)},
                          f"{p.event}: at sequence {p.sequence} of {p.head} (lag {p.lag}), "
                          f"{p.rows} rows copied, {p.rows_per_s:,.0f} rows/s")
    try:
        try:
            mirror = Mirror(store, args.source, args.api_key or os.environ.get(
                "HASHMATCH_API_KEY"), on_progress=progress, tls=tls_of(args))
        except OSError as error:    # the TLS files are read as the channel opens
            raise UsageError(f"cannot read a TLS file: {error}") from None
        reporter.note(f"mirroring {args.source} into {store.where} from sequence "
                      f"{mirror.sequence}" + ("" if mirror.token else " (snapshot first)"))
        mirror.run()
    except ValueError as error:
        raise UsageError(str(error)) from None
    except grpc.RpcError as error:
        raise HashmatchError(error.code(), f"{args.source} refused to replicate: "
                             f"{error.details()}") from None
    finally:
        store.close()


def cmd_list_import(args, reporter) -> None:
    from hashmatch.clients.cli import read_hash_lines

    lines = read_hash_lines(args.file, reporter, allowed=("pdq",))
    imported, store = 0, None
    try:
        with reporter.progress(None, "hash", "importing") as bar:
            while chunk := [value for _, _, value in itertools.islice(lines, IMPORT_CHUNK)]:
                store = store or open_store(args.db)
                packed = np.frombuffer(b"".join(chunk), np.uint8).reshape(-1, PDQ_BYTES)
                imported += store.import_pdq_hashes(packed)
                bar.update(len(chunk))
    except RequestError as error:   # the store refused (a limit, a database it cannot use)
        code, message = status_for(error)
        reporter.fail(f"{args.file}: {message}", code=code.name)
    finally:
        if store is not None:
            store.close()
    reporter.emit({"path": args.file, "imported": imported, "bad_lines": reporter.failures},
                  f"{args.file}: imported {imported} PDQ hash(es)"
                  + (f", skipped {reporter.failures} bad line(s)" if reporter.failures else "")
                  + ("; running servers pick them up from the change log" if imported else ""))
