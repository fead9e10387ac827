"""The `hashmatch` command: the person's, the platform's and the operator's front door.

People hash their photos and videos here, on their own machine, and submit only the hashes;
they check or withdraw their case with its PIN. Platforms match files or files of hex hashes.
Operators run the server, register platforms and bulk-load lists: those commands come from the
server package (server/commands.py, through the `hashmatch.cli` entry point). The command only
parses arguments and drives `HashmatchClient` / `StreamingMatcher`; what it prints is decided
in `output.py`. This package never imports `hashmatch.server`.

Exit codes: 0 all went well, 1 some item failed or the server refused, 2 usage error.
"""
from __future__ import annotations

import argparse
import datetime
import json
import dataclasses
import getpass
import importlib.metadata
import itertools
import os
import re
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path


from hashmatch.clients import output
from hashmatch.clients.client import (
    ACTIONS, DEFAULT_TARGET, DEFAULT_TIMEOUT_S, FeedbackReport, HashmatchClient, HashmatchError,
    MD5_BYTES, PDQ_BYTES, TlsFiles)

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
QUALITY_FLOOR = output.QUALITY_FLOOR
# Inputs up to this many hashes go in one MatchBatch call; more go over a MatchStream.
STREAM_ABOVE = 1000
SHOWN_BAD_LINES = 20


def _version() -> str:
    try:
        return importlib.metadata.version("hashmatch")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


class UsageError(Exception):
    """The command line cannot work as given (exit code 2)."""


class HashmatchInputError(Exception):
    """An input file the command cannot open at all (exit code 1)."""


# ---------------------------------------------------------------------- shared steps


def _hashing():
    from hashmatch.clients import hashing  # Pillow and PyAV load only for commands that hash
    return hashing


def hash_paths(paths: list[str], reporter: output.Reporter, seconds_per_hash: float = 1.0,
                dihedral: bool = False):
    """Hashes each file locally; yields (path, ImageHashes | VideoHashes) for those that work.

    A file that cannot be read or is neither image nor video is reported and skipped. Progress
    (files, and frames of each video) goes to stderr when it is a terminal.
    """
    hashing = _hashing()
    paths = list(expand_folders(paths))
    with reporter.progress(len(paths), "file", "hashing", hidden=len(paths) < 2) as files_bar:
        for path in paths:
            frames_bar = None

            def frames_done(done, total):
                nonlocal frames_bar
                if frames_bar is None:
                    frames_bar = reporter.progress(total, "frame", Path(path).name)
                frames_bar.update(done - frames_bar.n)

            try:
                hashes = hashing.hash_file(path, progress=frames_done,
                                           seconds_per_hash=seconds_per_hash, dihedral=dihedral)
            except (hashing.UnsupportedFileError, OSError) as error:
                message, code = _file_problem(path, error)
                reporter.fail(message, path=path, code=code)
            except Exception as error:  # a decoder's own failure must not stop the other files
                reporter.fail(f"{path}: could not hash it ({type(error).__name__}: {error})",
                              path=path, code="INTERNAL")
            else:
                yield path, hashes
            finally:
                if frames_bar is not None:
                    frames_bar.close()
            files_bar.update(1)


def expand_folders(paths):
    """Each path, with a folder replaced by the files under it (sorted; hidden ones skipped)."""
    for path in paths:
        if not os.path.isdir(path):
            yield path
            continue
        for folder, subfolders, files in os.walk(path):
            subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
            yield from (os.path.join(folder, f) for f in sorted(files) if not f.startswith("."))


def _file_problem(path: str, error: Exception) -> tuple[str, str]:
    """(message, code) for a file that could not be hashed; codes use the server's names."""
    if isinstance(error, FileNotFoundError):
        return f"{path}: no such file", "NOT_FOUND"
    if isinstance(error, OSError) and error.strerror:
        return f"{path}: cannot read it ({error.strerror})", "PERMISSION_DENIED"
    message = str(error)
    return (message if message.startswith(path) else f"{path}: {message}"), "INVALID_ARGUMENT"


def _is_video(hashes) -> bool:
    return hasattr(hashes, "frames")


def read_hash_lines(path: str, reporter: output.Reporter, allowed=("pdq", "md5")):
    """Reads a file of hex hashes (`-` = stdin), one per line: 64 hex = PDQ, 32 hex = MD5.

    Blank lines and lines starting with '#' are skipped; only the first field of a line counts
    (so `hash,quality,name` lines from PDQ tools work). Yields (line_number, kind, hash bytes);
    bad lines are reported with their number and skipped.
    """
    kinds = {2 * PDQ_BYTES: "pdq", 2 * MD5_BYTES: "md5"}
    bad_lines = 0
    try:
        stream = sys.stdin if path == "-" else open(path, encoding="utf-8", errors="replace")
    except OSError as error:
        raise HashmatchInputError(f"{path}: cannot read it ({error.strerror or error})") from None
    with stream:
        for number, line in enumerate(stream, start=1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            token = text.replace(",", " ").split()[0]
            kind = kinds.get(len(token))
            try:
                value = bytes.fromhex(token)
            except ValueError:
                kind = None
            if kind is None or kind not in allowed:
                wanted = " or ".join(f"{2 * (PDQ_BYTES if k == 'pdq' else MD5_BYTES)} hex digits "
                                     f"({k})" for k in allowed)
                bad_lines += 1
                reporter.fail(f"{path}:{number}: not a hash: expected {wanted}, got "
                              f"{_preview(token)}", show=bad_lines <= SHOWN_BAD_LINES,
                              line=number)
                continue
            yield number, kind, value
    if bad_lines > SHOWN_BAD_LINES:
        reporter.note(f"hashmatch: {path}: {bad_lines} bad lines in all "
                      f"({bad_lines - SHOWN_BAD_LINES} not shown)")


def _preview(token: str) -> str:
    return repr(token if len(token) <= 40 else token[:37] + "...")


def match_pairs(client: HashmatchClient, kind: str, pairs: list[tuple], threshold, reporter,
                include_video_frames: bool = False, describe=str):
    """Matches (item_id, hash) pairs of one kind; returns {item_id: [MatchHit, ...]}.

    Small inputs take one MatchBatch call; larger ones go through a StreamingMatcher. A batch
    the server rejects is reported (its items count as failed); a broken stream raises.
    """
    hits = defaultdict(list)
    if not pairs:
        return hits
    if len(pairs) <= STREAM_ABOVE:
        ids = [item_id for item_id, _ in pairs]
        for found in client.match_batch(kind, [h for _, h in pairs], threshold,
                                        include_video_frames):
            hits[ids[found.position]].append(found)
        return hits
    from hashmatch.clients.streaming import StreamingMatcher
    with reporter.progress(len(pairs), "hash", f"matching {kind}") as bar, \
            StreamingMatcher(client, kind, threshold=threshold,
                             include_video_frames=include_video_frames) as matcher:
        for outcome in matcher.match(pairs):
            bar.update(len(outcome.item_ids))
            if outcome.error is not None:
                reporter.fail(f"{len(outcome.item_ids)} {kind} hashes "
                              f"({describe(outcome.item_ids[0])} to "
                              f"{describe(outcome.item_ids[-1])}) were not matched: "
                              f"{outcome.error}", code=outcome.error.code.name)
                continue
            for item_id, found in outcome.matches:
                hits[item_id].append(found)
    return hits


def tls_of(args) -> TlsFiles | None:
    """The TLS that --tls, --ca, --cert and --key ask for (None: plaintext)."""
    try:
        return TlsFiles.wanted(args.tls, args.ca, args.cert, args.key)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _client(args, api_key: str | None = None) -> HashmatchClient:
    """A client of every server in --server (or $HASHMATCH_SERVER), calls spread over them;
    TLS when --tls, --ca or --cert is given."""
    tls = tls_of(args)
    try:
        return HashmatchClient(args.server, api_key=api_key, timeout=args.timeout, tls=tls)
    except OSError as error:
        raise UsageError(f"cannot read a TLS file: {error}") from None
    except ValueError as error:
        raise UsageError(f"--server: {getattr(error, 'message', error)}") from None


class _ServerAddresses(argparse.Action):
    """--server given again adds servers (as does a comma list); the first replaces the default."""

    def __call__(self, parser, namespace, values, option_string=None):
        given = getattr(namespace, self.dest, None)
        setattr(namespace, self.dest, (given if isinstance(given, list) else []) + [values])


def _api_key(args) -> str:
    key = args.api_key or os.environ.get("HASHMATCH_API_KEY")
    if not key:
        raise UsageError("a platform API key is needed: --api-key KEY or HASHMATCH_API_KEY")
    return key


def cmd_admin(args, reporter: output.Reporter) -> None:
    command = args.admin_command
    with _client(args, _api_key(args)) as client:
        if command == "platforms":
            now = time.time()
            for record in client.platforms():
                reporter.emit(*output.platform(record, now))
        elif command == "add":
            roles = args.roles.split(",")
            reporter.emit(*output.new_platform(args.name, client.add_platform(args.name, roles),
                                               roles))
        elif command == "rotate":
            api_key, key_id, sequence = client.rotate_key(args.name, args.grace)
            reporter.emit(*output.new_key(args.name, api_key, key_id, args.grace, sequence))
        elif command == "revoke":
            reporter.emit(*output.revoked_keys(args.name, *client.revoke_key(args.name,
                                                                               args.key_id)))
        elif command == "roles":
            reporter.emit(*output.platform_roles(args.name, *client.set_roles(
                args.name, args.roles.split(","))))
        else:
            after = 0
            while rows := client.audit(args.since, after):
                for record in rows:
                    reporter.emit(*output.audit_row(record))
                after = rows[-1]["id"]


def parse_duration(text: str) -> float:
    """Seconds from "90", "30s", "15m", "24h" or "7d"."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (e.g. 90, 30m, 24h, 7d)")
    return float(match[1]) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


parse_duration.__name__ = "duration"     # argparse names the type in its error message


def parse_since(text: str) -> int:
    """Unix seconds from a duration back from now, or an ISO date/time (UTC unless it says)."""
    try:
        return int(time.time() - parse_duration(text))
    except ValueError:
        pass
    moment = datetime.datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.timezone.utc)
    return int(moment.timestamp())


parse_since.__name__ = "duration or date"


def _pin(args) -> str:
    if args.pin:
        return args.pin
    if os.environ.get("HASHMATCH_PIN"):
        return os.environ["HASHMATCH_PIN"]
    if sys.stdin.isatty():
        try:
            pin = getpass.getpass(f"PIN for case {args.case_id}: ").strip()
        except EOFError:  # Ctrl-D: the person chose not to type it
            pin = ""
            sys.stderr.write("\n")
        if pin:
            return pin
    raise UsageError("the case PIN is needed: type it when asked (in a terminal), "
                     "set HASHMATCH_PIN, or pass --pin")


# ---------------------------------------------------------------------- person


def cmd_hash(args, reporter: output.Reporter) -> None:
    for _, hashes in hash_paths(args.files, reporter, args.seconds_per_hash):
        if _is_video(hashes):
            reporter.emit(*output.video_hashes(hashes, show_frames=args.frames))
        else:
            reporter.emit(*output.image_hashes(hashes))


def cmd_submit(args, reporter: output.Reporter) -> None:
    media, items = [], []
    for path, hashes in hash_paths(args.files, reporter, args.seconds_per_hash):
        kind = "video" if _is_video(hashes) else "image"
        if kind == "image" and hashes.quality < QUALITY_FLOOR:
            reporter.note(f"{path}: PDQ quality {hashes.quality} is below {QUALITY_FLOOR} (too "
                          "little detail for a reliable perceptual match), so only exact copies "
                          "of this file will be matched (MD5).")
            hashes = _without_pdq(hashes)
            sent = "md5 only (low quality)"
        elif kind == "image":
            sent = "pdq + md5"
        else:
            usable = sum(1 for frame in hashes.frames if frame.quality >= QUALITY_FLOOR)
            if not usable:
                reporter.note(f"{path}: no frame of this video has PDQ quality >= "
                              f"{QUALITY_FLOOR}, so only exact copies will be matched (MD5).")
            sent = f"md5 + {usable} frame hashes"
        media.append(hashes)
        items.append({"path": path, "kind": kind, "sent": sent})
    if not media:
        reporter.fail("nothing to submit: no file could be hashed")
        return
    if reporter.failures and not args.partial:
        reporter.fail("nothing was submitted because some files could not be hashed; fix or "
                      "leave them out, or pass --partial to submit the others")
        return
    with _client(args) as client:
        case = client.submit_case(media)
    for item, entry_id in zip(items, case.entry_ids):
        item["entry_id"] = entry_id
    reporter.emit(*output.submitted_case(case, items))


def _without_pdq(hashes):
    return dataclasses.replace(hashes, pdq=b"", quality=0)


def cmd_status(args, reporter: output.Reporter) -> None:
    pin = _pin(args)
    with _client(args) as client:
        reporter.emit(*output.case_status(client.case_status(args.case_id, pin)))


def cmd_withdraw(args, reporter: output.Reporter) -> None:
    pin = _pin(args)
    with _client(args) as client:
        sequence = client.withdraw(args.case_id, pin)
    reporter.emit(*output.withdrawn_case(args.case_id, sequence))


# ---------------------------------------------------------------------- platform


def cmd_match(args, reporter: output.Reporter) -> None:
    if bool(args.files) == bool(args.hashes):
        raise UsageError("give either FILE... or --hashes FILE")
    with _client(args, _api_key(args)) as client:
        if args.hashes:
            _match_hash_file(client, args, reporter)
        else:
            _match_files(client, args, reporter)


def _match_files(client, args, reporter) -> None:
    hashed = list(hash_paths(args.files, reporter, args.seconds_per_hash, args.dihedral))
    pdq_pairs = [(i, variant) for i, (_, h) in enumerate(hashed) if not _is_video(h) and h.pdq
                 for variant in (h.dihedral or (h.pdq,))]
    md5_pairs = [(i, h.md5) for i, (_, h) in enumerate(hashed)]
    hits = defaultdict(list)
    for kind, pairs in (("pdq", pdq_pairs), ("md5", md5_pairs)):
        found = match_pairs(client, kind, pairs, args.threshold, reporter,
                            args.include_video_frames, describe=lambda i: hashed[i][0])
        for item_id, item_hits in found.items():
            hits[item_id].extend(item_hits)
    for i, (path, hashes) in enumerate(hashed):
        if _is_video(hashes):
            try:
                hits[i].extend(_match_video(client, path, hashes, args.threshold, reporter))
            except HashmatchError as error:
                reporter.fail(f"{path}: the video could not be matched: {error}", path=path,
                              code=error.code.name)
                continue
        item_hits = _closest_per_entry(hits[i])
        kind = "video" if _is_video(hashes) else "image"
        reporter.emit(*output.file_matches(path, kind, item_hits))


def _closest_per_entry(hits: list) -> list:
    """One hit per (entry, kind), the closest: the 8 dihedral variants of a photo can all hit
    the same entry. MD5 first, then by distance."""
    closest = {}
    for hit in hits:
        key = (hit.entry_id, hit.kind)
        if key not in closest or hit.distance < closest[key].distance:
            closest[key] = hit
    return sorted(closest.values(), key=lambda h: (h.kind != "md5", h.distance, h.entry_id))


def _match_video(client, path, hashes, threshold, reporter) -> list:
    if not any(frame.quality >= QUALITY_FLOOR for frame in hashes.frames):
        reporter.note(f"{path}: no frame has PDQ quality >= {QUALITY_FLOOR}; matched by MD5 only")
        return []
    return client.match_video(hashes, threshold=threshold)


def _match_hash_file(client, args, reporter) -> None:
    """Matches a file of hex hashes and prints the lines that match.

    Up to STREAM_ABOVE hashes: one MatchBatch per kind, printed in line order. More: read and
    matched as a stream (one StreamingMatcher per kind), so a file or pipe of any length runs
    in constant memory; lines are printed as their answers arrive.
    """
    started = time.monotonic()
    lines = read_hash_lines(args.hashes, reporter)
    head = list(itertools.islice(lines, STREAM_ABOVE + 1))
    matched = _LineCounter()

    def print_hits(kind, number, value, hits):
        matched.add()
        reporter.emit(*output.hash_line_matches(args.hashes, number, value.hex(), kind, hits))

    if len(head) <= STREAM_ABOVE:
        for kind in ("pdq", "md5"):
            pairs = [((number, value), value) for number, k, value in head if k == kind]
            found = match_pairs(client, kind, pairs, args.threshold, reporter,
                                args.include_video_frames, describe=lambda item: f"line {item[0]}")
            for number, value in sorted(found):
                print_hits(kind, number, value, found[(number, value)])
        total = len(head)
    else:
        total = _stream_hash_lines(client, args, reporter, itertools.chain(head, lines),
                                   print_hits)
    reporter.summary(*output.match_summary(total, matched.count, time.monotonic() - started))


class _LineCounter:
    def __init__(self):
        self.count = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.count += 1


def _stream_hash_lines(client, args, reporter, lines, print_hits) -> int:
    """Feeds (line, kind, hash) onto one stream per kind; returns how many were sent."""
    from hashmatch.clients.streaming import StreamingMatcher

    matchers, readers, total = {}, [], 0
    bar = reporter.progress(None, "hash", "matching")
    try:
        for number, kind, value in lines:
            matcher = matchers.get(kind)
            if matcher is None:
                matcher = matchers[kind] = StreamingMatcher(
                    client, kind, threshold=args.threshold,
                    include_video_frames=args.include_video_frames)
                reader = threading.Thread(target=_print_outcomes, daemon=True,
                                          args=(matcher, kind, reporter, print_hits, bar))
                reader.start()
                readers.append(reader)
            matcher.add((number, value), value)
            total += 1
    except BaseException:
        for matcher in matchers.values():
            matcher.cancel()
        raise
    finally:
        for matcher in matchers.values():
            matcher.close()
        for reader in readers:
            reader.join()
        bar.close()
    for matcher in matchers.values():
        if matcher.error is not None:
            raise matcher.error
    return total


def _print_outcomes(matcher, kind, reporter, print_hits, bar) -> None:
    for outcome in matcher.results():
        bar.update(len(outcome.item_ids))
        if outcome.error is not None:
            first, last = outcome.item_ids[0][0], outcome.item_ids[-1][0]
            reporter.fail(f"{len(outcome.item_ids)} {kind} hashes (lines {first} to {last}) "
                          f"were not matched: {outcome.error}", code=outcome.error.code.name)
            continue
        hits_by_line = defaultdict(list)
        for item, hit in outcome.matches:
            hits_by_line[item].append(hit)
        for (number, value), hits in hits_by_line.items():
            print_hits(kind, number, value, hits)


def cmd_info(args, reporter: output.Reporter) -> None:
    with _client(args, _api_key(args)) as client:
        reporter.emit(*output.list_info(client.list_info()))


# ---------------------------------------------------------------------- feedback


def _reports_from(path: str) -> list:
    """FeedbackReports from a file of JSON lines (- = stdin), read whole before any call: a bad
    line raised inside gRPC's request iterator would reach the user as a bare UNKNOWN."""
    try:
        lines = sys.stdin if path == "-" else open(path, encoding="utf-8")
    except OSError as error:
        raise HashmatchInputError(f"{path}: cannot read it ({error.strerror or error})") from None
    reports = []
    with lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                fields = json.loads(line)
                fields["hash"] = bytes.fromhex(fields["hash"])
                fields["tags"] = tuple(fields.get("tags", ()))
                reports.append(FeedbackReport(**fields))
            except (ValueError, KeyError, TypeError) as error:
                raise HashmatchInputError(f"{path} line {number}: not a report ({error}); "
                                          "expected JSON with report_id, entry_id, hash (hex), "
                                          "action") from None
    return reports


def cmd_feedback(args, reporter: output.Reporter) -> None:
    if args.file:
        reports = _reports_from(args.file)
    elif args.entry_id is not None and args.hash and args.action:
        try:
            match_hash = bytes.fromhex(args.hash)
        except ValueError:
            raise UsageError(f"HASH must be hex, got {_preview(args.hash)!r}") from None
        reports = [FeedbackReport(args.report_id or f"{args.entry_id}/{args.hash}",
                                  args.entry_id, match_hash, args.action, args.kind,
                                  args.reason or "", tuple(args.tag or ()), args.occurred)]
    else:
        raise UsageError("give ENTRY_ID HASH --action ACTION, or --file FILE")
    with _client(args, _api_key(args)) as client:
        for ack in client.report_actions(reports):
            reporter.emit(*output.report_ack(ack))


def cmd_review(args, reporter: output.Reporter) -> None:
    with _client(args, _api_key(args)) as client:
        if args.review_command == "list":
            held = client.held_entries()
            for entry in held:
                reporter.emit(*output.held_entry(entry))
            if not held:
                reporter.note("no entry is held or disputed")
        elif args.review_command == "history":
            decisions = client.review_history(args.entry_id)
            for entry in decisions:
                reporter.emit(*output.decision(entry))
            if not decisions:
                reporter.note(f"no review decision about entry {args.entry_id}")
        elif args.review_command == "suppress":
            try:
                hashes = [bytes.fromhex(h) for h in args.hashes]
            except ValueError:
                raise UsageError("suppress takes 64-hex-digit PDQ hashes") from None
            held = client.suppress(hashes, args.note)
            reporter.emit(*output.suppressed(len(hashes), held))
        else:
            sequence = client.review(args.entry_id, args.review_command, args.note)
            reporter.emit(*output.review_decision(args.entry_id, args.review_command, sequence))


# ---------------------------------------------------------------------- command line


class CommandTable:
    """Adds subcommands to `hashmatch`, each with the flags that apply to it (--json always,
    --server and --timeout where it calls a server). The server package adds the operator
    commands through the `hashmatch.cli` entry point with `register(table)`."""

    def __init__(self, subparsers, output_flags: argparse.ArgumentParser,
                 server_flags: argparse.ArgumentParser):
        self._subparsers, self._output, self._server = subparsers, output_flags, server_flags
        self._groups = {}

    def command(self, name: str, handler, help_text: str, group: str | None = None,
                calls_server: bool = False):
        """A subcommand (`hashmatch NAME` or `hashmatch GROUP NAME`); returns its parser."""
        parent = self._groups[group] if group else self._subparsers
        parents = [self._output] + ([self._server] if calls_server else [])
        sub = parent.add_parser(name, help=help_text, description=help_text, parents=parents)
        sub.set_defaults(handler=handler)
        return sub

    def group(self, name: str, help_text: str) -> None:
        """`hashmatch NAME COMMAND ...`: a command made of subcommands."""
        sub = self._subparsers.add_parser(name, help=help_text, description=help_text)
        self._groups[name] = sub.add_subparsers(dest=f"{name}_command", metavar="COMMAND",
                                                required=True)


def tls_flags(parser: argparse.ArgumentParser, default) -> None:
    """--tls, --ca, --cert, --key (read back with tls_of): every command that connects, and
    the operator's `mirror`."""
    parser.add_argument("--tls", action="store_true", default=default or False,
                        help="connect with TLS, trusting the system's CAs (implied by --ca)")
    parser.add_argument("--ca", metavar="FILE", default=default,
                        help="TLS: trust the server certificate's CA in this PEM file")
    parser.add_argument("--cert", metavar="FILE", default=default,
                        help="TLS: client certificate (PEM), for servers that ask for one")
    parser.add_argument("--key", metavar="FILE", default=default,
                        help="TLS: private key (PEM) of --cert")


def build_parser() -> argparse.ArgumentParser:
    output_flags = argparse.ArgumentParser(add_help=False)
    output_flags.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                              help="print one JSON object per line")
    common = argparse.ArgumentParser(add_help=False)
    server_help = ("server HOST:PORT; repeat it or give a comma list for several servers that "
                   "hold the same list (calls are spread over those SERVING), or one "
                   f"dns:///NAME:PORT (default: $HASHMATCH_SERVER or {DEFAULT_TARGET})")
    common.add_argument("--server", action=_ServerAddresses, default=argparse.SUPPRESS,
                        help=server_help)
    common.add_argument("--timeout", type=float, default=argparse.SUPPRESS,
                        help=f"seconds to wait for each answer (default {DEFAULT_TIMEOUT_S:g})")
    tls_flags(common, argparse.SUPPRESS)

    parser = argparse.ArgumentParser(
        prog="hashmatch",
        description="Hash photos and videos on this device, submit or match only their hashes.",
        epilog="Exit codes: 0 ok, 1 some item failed or the server refused, 2 usage error.")
    parser.add_argument("--json", action="store_true", default=False,
                        help="print one JSON object per line")
    parser.add_argument("--server", action=_ServerAddresses,
                        default=os.environ.get("HASHMATCH_SERVER", DEFAULT_TARGET),
                        help=server_help)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S,
                        help=f"seconds to wait for each answer (default {DEFAULT_TIMEOUT_S:g})")
    tls_flags(parser, None)
    parser.add_argument("--version", action="version", version=f"hashmatch {_version()}")
    table = CommandTable(parser.add_subparsers(dest="command", metavar="COMMAND", required=True),
                         output_flags, common)

    def command(name, handler, help_text):
        return table.command(name, handler, help_text, calls_server=True)

    def seconds_per_hash(sub):
        sub.add_argument("--seconds-per-hash", type=float, default=1.0,
                         help="videos: hash one frame every this many seconds (default 1)")

    sub = table.command("hash", cmd_hash, "hash photos and videos locally and print the hashes")
    sub.add_argument("files", nargs="+", metavar="FILE")
    sub.add_argument("--frames", action="store_true",
                     help="videos: print every frame's hash (JSON output always has them)")
    seconds_per_hash(sub)

    sub = command("submit", cmd_submit,
                  "hash photos and videos locally and submit only the hashes as a new case")
    sub.add_argument("files", nargs="+", metavar="FILE")
    sub.add_argument("--partial", action="store_true",
                     help="submit the files that could be hashed even if others could not")
    seconds_per_hash(sub)

    pin_help = ("the case PIN (better: leave it out and type it when asked, or set "
                "HASHMATCH_PIN, so it stays out of shell history)")
    sub = command("status", cmd_status, "show the state of your case")
    sub.add_argument("case_id", metavar="CASE_ID")
    sub.add_argument("--pin", help=pin_help)

    sub = command("withdraw", cmd_withdraw,
                  "withdraw your case: its hashes stop matching at once")
    sub.add_argument("case_id", metavar="CASE_ID")
    sub.add_argument("--pin", help=pin_help)

    api_key_help = "platform API key (default: $HASHMATCH_API_KEY)"
    sub = command("match", cmd_match,
                  "platform: match files (hashed locally) or a file of hex hashes")
    sub.add_argument("files", nargs="*", metavar="FILE")
    sub.add_argument("--hashes", metavar="FILE",
                     help="file of hex hashes, one per line (64 hex = PDQ, 32 hex = MD5; "
                          "- = stdin); only matching lines are printed")
    sub.add_argument("--api-key", help=api_key_help)
    sub.add_argument("--threshold", type=int,
                     help="PDQ: largest Hamming distance that matches (inclusive; default: "
                          "the server's, 31)")
    sub.add_argument("--include-video-frames", action="store_true",
                     help="PDQ: also match photos against the frames of listed videos")
    sub.add_argument("--dihedral", action="store_true",
                     help="PDQ: also match each photo's 7 rotations and mirror images (8 "
                          "queries per photo)")
    seconds_per_hash(sub)

    sub = command("info", cmd_info, "show the list's size, limits and matching backend")
    sub.add_argument("--api-key", help=api_key_help)

    sub = command("feedback", cmd_feedback,
                  "platform: report what you did about a match (key role 'feedback')")
    sub.add_argument("entry_id", type=int, nargs="?", metavar="ENTRY_ID",
                     help="the entry that matched")
    sub.add_argument("hash", nargs="?", metavar="HASH", help="your hash that matched, in hex")
    sub.add_argument("--action", choices=sorted(ACTIONS), help="what you did")
    sub.add_argument("--report-id", help="your idempotency key (default ENTRY_ID/HASH): the "
                                         "same report sent again is counted once")
    sub.add_argument("--kind", default="pdq", choices=("pdq", "md5", "vpdq"),
                     help="what matched (default pdq)")
    sub.add_argument("--reason", help="your reason code (at most 64 characters)")
    sub.add_argument("--tag", action="append", help="a tag (repeatable)")
    sub.add_argument("--occurred", type=int, default=0, metavar="UNIX",
                     help="when you acted (default: now)")
    sub.add_argument("--file", metavar="FILE",
                     help="many reports, JSON lines with report_id, entry_id, hash (hex), "
                          "action, optional kind, reason_code, tags, occurred_unix (- = stdin)")
    sub.add_argument("--api-key", help=api_key_help)

    table.group("review", "admin: entries held back or disputed, and the suppression list (key "
                          "role 'admin')")
    for name, help_text in (("list", "list held and disputed entries"),
                            ("reinstate", "let a held or disputed entry match again"),
                            ("remove", "remove a held or disputed entry from the list"),
                            ("suppress", "add known benign PDQ hashes that must never match"),
                            ("history", "the review decisions about an entry: who, when, what")):
        sub = table.command(name, cmd_review, help_text, group="review", calls_server=True)
        if name in ("reinstate", "remove", "history"):
            sub.add_argument("entry_id", type=int, metavar="ENTRY_ID")
        if name == "suppress":
            sub.add_argument("hashes", nargs="+", metavar="PDQ_HEX")
        if name in ("reinstate", "remove", "suppress"):
            sub.add_argument("--note", default="", help="kept with the decision")
        sub.add_argument("--api-key", help="API key with the 'admin' role "
                                           "(default: $HASHMATCH_API_KEY)")

    table.group("admin", "admin: platforms, roles, keys and the audit log over gRPC (key role "
                         "'admin'); the same as the operator commands on --db")
    for name, help_text in (("platforms", "list platforms, roles and keys (never key material)"),
                            ("add", "register a platform; prints its API key once"),
                            ("rotate", "issue a new key (printed once); current keys end after "
                                       "--grace"),
                            ("revoke", "end a platform's keys now, on every server"),
                            ("roles", "replace what a platform's keys may do"),
                            ("audit", "print audit rows, oldest first")):
        sub = table.command(name, cmd_admin, help_text, group="admin", calls_server=True)
        if name not in ("platforms", "audit"):
            sub.add_argument("name", metavar="NAME")
        if name in ("add", "roles"):
            sub.add_argument("--roles", required=name == "roles", default="match",
                             help="comma-separated from match, feedback, replicate, admin")
        if name == "rotate":
            sub.add_argument("--grace", type=parse_duration, metavar="DURATION",
                             help="how long the current keys stay valid: seconds or 30m, 24h, "
                                  "7d (default: the server's, 24h; 0 ends them now)")
        if name == "revoke":
            sub.add_argument("--key-id", type=int, default=0, metavar="ID",
                             help="only this key (ids from `admin platforms`; default: all)")
        if name == "audit":
            sub.add_argument("--since", type=parse_since, default=0, metavar="WHEN",
                             help="only rows from the last DURATION (1h, 7d) or from a date")
        sub.add_argument("--api-key", help="API key with the 'admin' role "
                                           "(default: $HASHMATCH_API_KEY)")

    for entry in importlib.metadata.entry_points(group="hashmatch.cli"):
        entry.load()(table)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    reporter = output.Reporter(args.json)
    try:
        args.handler(args, reporter)
    except UsageError as error:
        parser.print_usage(sys.stderr)
        sys.stderr.write(f"hashmatch: error: {error}\n")
        return EXIT_USAGE
    except HashmatchError as error:
        reporter.fail(str(error), code=error.code.name)
    except HashmatchInputError as error:
        reporter.fail(str(error))
    except KeyboardInterrupt:
        sys.stderr.write("hashmatch: interrupted\n")
        return 130
    except BrokenPipeError:
        sys.stderr.close()
        return EXIT_FAILED
    return EXIT_FAILED if reporter.failures else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
