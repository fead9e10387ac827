"""The operator's commands of the `hashmatch` CLI: `serve`, `mirror`, `platform add`, `list import`.

They belong to the server (they open its store and run it), so they live here and reach the CLI
through the `hashmatch.cli` entry point: the client package never imports the server, and an
install without the server simply has no operator commands. `serve` takes every ServerConfig
setting from the same flag table as `python -m hashmatch.server`.
"""
import itertools
import os
import time

import numpy as np

from hashmatch.server import config as server_config
from hashmatch.server.config import ServerConfig
from hashmatch.server.media import PDQ_BYTES
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
    table.group("platform", "manage participating platforms")
    sub = table.command("add", cmd_platform_add, "register a platform and print its API key once",
                        group="platform")
    _with_store(sub, "name", "NAME")
    sub.add_argument("--roles", default="match",
                     help="what its key may do, comma-separated from match, feedback, "
                          "replicate, admin (default: match)")
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


def cmd_platform_add(args, reporter) -> None:
    from hashmatch.clients.cli import UsageError

    roles = [r.strip() for r in args.roles.split(",")]
    store = open_store(args.db)
    try:
        api_key = store.add_platform(args.name, roles)
    except ValueError as error:     # an unknown role, a taken name
        raise UsageError(str(error)) from None
    finally:
        store.close()
    shown = "" if roles == ["match"] else f" (roles: {', '.join(roles)})"
    reporter.emit({"platform": args.name, "api_key": api_key, "roles": roles},
                  f"Platform {args.name!r} added{shown}.\n  API key: {api_key}\nHand it to the "
                  "platform now: it is shown only this once (the server keeps a hash).")


def cmd_mirror(args, reporter) -> None:
    """Copies a server's list into --db until interrupted; a progress line at most each second."""
    import grpc

    from hashmatch.clients.cli import UsageError
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
        mirror = Mirror(store, args.source, args.api_key or os.environ.get("HASHMATCH_API_KEY"),
                        on_progress=progress)
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
    finally:
        if store is not None:
            store.close()
    reporter.emit({"path": args.file, "imported": imported, "bad_lines": reporter.failures},
                  f"{args.file}: imported {imported} PDQ hash(es)"
                  + (f", skipped {reporter.failures} bad line(s)" if reporter.failures else "")
                  + ("; running servers pick them up from the change log" if imported else ""))
