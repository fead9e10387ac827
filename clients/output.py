"""Everything the `hashmatch` command prints, in one place.

Each command produces records; a record is written either as one JSON object per line (--json,
for scripts) or as a line of text for people. Problems go to stderr as text in both modes, and
with --json also to stdout as an object with an "error" key, so a script reading stdout sees
every input accounted for. Progress bars go to stderr and only to a terminal.
"""
from __future__ import annotations

import dataclasses
import datetime
import json
import sys
import textwrap
import threading
from typing import TextIO

from tqdm import tqdm

from hashmatch.core.pdq import MIN_TRUSTED_QUALITY as QUALITY_FLOOR


class Reporter:
    def __init__(self, json_mode: bool, out: TextIO | None = None, err: TextIO | None = None):
        self.json_mode = json_mode
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.failures = 0
        self._lock = threading.RLock()  # streams report from their reader threads

    def emit(self, record: dict, text: str) -> None:
        """Writes one result: `record` as JSON with --json, else `text` (may span lines)."""
        with self._lock:
            if self.json_mode:
                _write(json.dumps(record, separators=(",", ":")), self.out)
            elif text:
                _write(text, self.out)

    def fail(self, message: str, show: bool = True, **fields) -> None:
        """Reports one failed item (counted: the command then exits non-zero).

        `show=False` keeps it off stderr (a flood of bad lines); --json still writes it.
        """
        with self._lock:
            self.failures += 1
            if show:
                _write(f"hashmatch: {message}", self.err)
            if self.json_mode:
                self.emit({"error": message, **fields}, "")

    def summary(self, record: dict, text: str) -> None:
        """The closing line of a long command: a JSON object with --json, else a note."""
        if self.json_mode:
            self.emit({"summary": record}, "")
        else:
            self.note(text)

    def note(self, text: str) -> None:
        """A remark for people (summaries, hints); stderr, so stdout stays the results."""
        with self._lock:
            _write(text, self.err)

    def progress(self, total: int | None, unit: str, description: str = "",
                 hidden: bool = False):
        """A tqdm bar on stderr when stderr is a terminal (and not `hidden`), else a silent one."""
        enabled = not hidden and self.err.isatty()
        return tqdm(total=total, unit=unit, desc=description, file=self.err,
                    disable=not enabled, leave=False, dynamic_ncols=True)


def _write(text: str, stream: TextIO) -> None:
    """Writes a line without tearing a progress bar that shares the terminal."""
    tqdm.write(text, file=stream)
    stream.flush()


def _when(unix_seconds: int) -> str:
    if not unix_seconds:
        return ""
    moment = datetime.datetime.fromtimestamp(unix_seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S UTC")


# ---------------------------------------------------------------------- hash


def image_hashes(hashes) -> tuple[dict, str]:
    record = {"path": str(hashes.path), "kind": "image", "md5": hashes.md5.hex(),
              "pdq": hashes.pdq.hex(), "quality": int(hashes.quality)}
    low = "  (below 50: too little detail to match reliably)" if hashes.quality < QUALITY_FLOOR else ""
    text = (f"{hashes.path}: image pdq={hashes.pdq.hex()} quality={hashes.quality} "
            f"md5={hashes.md5.hex()}{low}")
    return record, text


def video_hashes(hashes, show_frames: bool) -> tuple[dict, str]:
    frames = [{"frame": int(f.frame_number), "timestamp": round(float(f.timestamp), 3),
               "pdq": f.pdq.hex(), "quality": int(f.quality)} for f in hashes.frames]
    usable = sum(1 for f in hashes.frames if f.quality >= QUALITY_FLOOR)
    record = {"path": str(hashes.path), "kind": "video", "md5": hashes.md5.hex(),
              "fps": round(float(hashes.fps), 3), "frame_count": len(frames),
              "usable_frames": usable, "frames": frames}
    lines = [f"{hashes.path}: video md5={hashes.md5.hex()} {_sampled(hashes)}, {usable} with "
             f"quality >= {QUALITY_FLOOR}"]
    if show_frames:
        lines += [f"  frame {f['frame']} t={f['timestamp']:.3f}s pdq={f['pdq']} "
                  f"quality={f['quality']}" for f in frames]
    return record, "\n".join(lines)


def _sampled(hashes) -> str:
    """What was hashed of a video, e.g. '120 s, 120 frames at 1 frame/s (30 fps video)'."""
    frames = hashes.frames
    if len(frames) < 2:
        return f"{len(frames)} frame (of a {hashes.fps:.3g} fps video)"
    step = frames[1].frame_number - frames[0].frame_number
    seconds = frames[-1].timestamp - frames[0].timestamp + step / hashes.fps
    return (f"{seconds:.0f} s, {len(frames)} frames at {hashes.fps / step:.3g} frame/s "
            f"({hashes.fps:.3g} fps video)")


def match_summary(total: int, matched: int, elapsed: float) -> tuple[dict, str]:
    rate = total / elapsed if elapsed > 0 else 0.0
    record = {"checked": total, "matched": matched, "seconds": round(elapsed, 3),
              "hashes_per_s": round(rate)}
    text = f"{total} hash(es) checked, {matched} matched ({elapsed:.2f} s" + (
        f", {rate:,.0f} hashes/s)" if total and elapsed > 0 else ")")
    return record, text


# ---------------------------------------------------------------------- cases


def submitted_case(case, items: list[dict]) -> tuple[dict, str]:
    record = {"case_id": case.case_id, "pin": case.pin, "entry_ids": list(case.entry_ids),
              "items": items}
    lines = [f"Case submitted: {len(items)} item(s); only their hashes left this device."]
    for item in items:
        lines.append(f"  {item['path']}: {item['kind']} entry {item['entry_id']} "
                     f"({item['sent']})")
    lines += [
        "",
        f"  Case ID: {case.case_id}",
        f"  PIN:     {case.pin}",
        "",
        "Write the PIN down now: it is shown only this once and cannot be recovered.",
        "You need the case ID and the PIN to check the case or to withdraw it.",
    ]
    return record, "\n".join(lines)


def case_status(status) -> tuple[dict, str]:
    record = {"case_id": status.case_id, "state": status.state,
              "image_count": status.image_count, "video_count": status.video_count,
              "created_unix": status.created_unix, "withdrawn_unix": status.withdrawn_unix}
    text = (f"Case {status.case_id}: {status.state}\n"
            f"  {status.image_count} image(s), {status.video_count} video(s)\n"
            f"  submitted {_when(status.created_unix)}")
    if status.withdrawn_unix:
        text += f"\n  withdrawn {_when(status.withdrawn_unix)}"
    if status.summary:
        record["items"] = [dataclasses.asdict(item) for item in status.items]
        record["summary"] = status.summary
        text += "\n\n" + textwrap.fill(status.summary, 78, initial_indent="  ",
                                        subsequent_indent="  ")
        for number, item in enumerate(status.items, 1):
            text += (f"\n  item {number}: copies found {item.copies_found}, removed "
                     f"{item.copies_removed}"
                     + (f", last removed {_when(item.last_removed_unix)}"
                        if item.last_removed_unix else "")
                     + (" (under review)" if item.under_review else ""))
    return record, text


def withdrawn_case(case_id: str, sequence: int) -> tuple[dict, str]:
    record = {"case_id": case_id, "state": "withdrawn", "sequence": sequence}
    return record, f"Case {case_id} withdrawn: its hashes no longer match anything."


# ---------------------------------------------------------------------- matching


def hit(hit) -> dict:
    found = {"entry_id": hit.entry_id, "kind": hit.kind, "distance": hit.distance}
    if hit.video_frame:
        found["video_frame"] = True
    elif hit.kind == "vpdq":
        found["query_match_percent"] = round(hit.query_match_percent, 2)
        found["compared_match_percent"] = round(hit.compared_match_percent, 2)
    if hit.disputed:
        found["disputed"] = True
    if hit.same_hash_entries > 1:
        found["same_hash_entries"] = hit.same_hash_entries
    return found


def _hit_text(found: dict) -> str:
    if found.get("same_hash_entries"):
        others = found["same_hash_entries"] - 1
        return (_hit_text({k: v for k, v in found.items() if k != "same_hash_entries"})
                + (" [1 other entry holds" if others == 1 else f" [{others} other entries hold")
                + " the same hash]")
    if found.get("disputed"):
        return (_hit_text({k: v for k, v in found.items() if k != "disputed"})
                + " [disputed: platforms disagree about this entry]")
    if found.get("video_frame"):
        return (f"entry {found['entry_id']} (a frame of this listed video, pdq distance "
                f"{found['distance']})")
    if found["kind"] == "vpdq":
        return (f"entry {found['entry_id']} (video: {found['query_match_percent']:.1f}% of "
                f"this video's frames, {found['compared_match_percent']:.1f}% of the listed "
                f"video's, closest frame distance {found['distance']})")
    if found["kind"] == "md5":
        return f"entry {found['entry_id']} (md5: exact copy)"
    return f"entry {found['entry_id']} (pdq distance {found['distance']})"


def file_matches(path: str, kind: str, hits: list) -> tuple[dict, str]:
    found = [hit(h) for h in hits]
    record = {"path": path, "kind": kind, "matched": bool(found), "matches": found}
    if not found:
        return record, f"{path}: no match"
    return record, f"{path}: MATCH " + "; ".join(_hit_text(f) for f in found)


def hash_line_matches(label: str, line: int, hash_hex: str, kind: str,
                      hits: list) -> tuple[dict, str]:
    found = [hit(h) for h in hits]
    record = {"path": label, "line": line, "hash": hash_hex, "kind": kind,
              "matched": bool(found), "matches": found}
    text = f"{label}:{line}: {kind} {hash_hex}: " + (
        "MATCH " + "; ".join(_hit_text(f) for f in found) if found else "no match")
    return record, text


# ---------------------------------------------------------------------- operator


def list_info(info) -> tuple[dict, str]:
    record = {"counts": info.counts, "last_sequence": info.last_sequence,
              "default_threshold": info.default_threshold, "max_threshold": info.max_threshold,
              "max_batch_hashes": info.max_batch_hashes, "max_in_flight": info.max_in_flight,
              "kernel_backend": info.kernel_backend,
              "video_frame_count": info.video_frame_count}
    counts = ", ".join(f"{count} {kind}" for kind, count in sorted(info.counts.items())) or "empty"
    text = (f"list: {counts} ({info.video_frame_count} video frames)\n"
            f"last change: sequence {info.last_sequence}\n"
            f"threshold: default {info.default_threshold}, max {info.max_threshold}\n"
            f"batches: up to {info.max_batch_hashes} hashes, {info.max_in_flight} in flight "
            f"per stream\nkernel: {info.kernel_backend}")
    return record, text


# ---------------------------------------------------------------------- feedback and review


def report_ack(ack) -> tuple[dict, str]:
    record = dataclasses.asdict(ack)
    text = (f"report {ack.report_id}: " + ("already stored (counted once)" if ack.duplicate
                                          else "stored")
            + ("; the entry is disputed" if ack.disputed else ""))
    return record, text


def held_entry(entry) -> tuple[dict, str]:
    record = dataclasses.asdict(entry)
    text = (f"entry {entry.entry_id}: {entry.reason}, "
            f"{'still matching (flagged)' if entry.matching else 'not matching'}, since "
            f"{_when(entry.held_unix)}; {entry.not_violating_platforms} platform(s) reported "
            f"not violating" + (f"; {entry.detail}" if entry.detail else ""))
    return record, text


def review_decision(entry_id: int, decision: str, sequence: int) -> tuple[dict, str]:
    record = {"entry_id": entry_id, "decision": decision, "sequence": sequence}
    done = "matches again" if decision == "reinstate" else "is removed from the list"
    return record, f"entry {entry_id} {done} (change-log sequence {sequence})"


def decision(entry) -> tuple[dict, str]:
    return dataclasses.asdict(entry), (
        f"entry {entry.entry_id}: {entry.decision} by {entry.decided_by} "
        f"{_when(entry.decided_unix)} (sequence {entry.sequence})"
        + (f": {entry.note}" if entry.note else ""))


def suppressed(count: int, held: list[int]) -> tuple[dict, str]:
    record = {"added": count, "held_entries": held}
    text = f"{count} hash(es) added to the suppression list"
    if held:
        text += f"; held for review: entries {', '.join(map(str, held))}"
    return record, text


# ---------------------------------------------------------------------- platforms (operators)


def platform(record: dict, now: float) -> tuple[dict, str]:
    """A platform record {platform, roles, created, keys: [{id, created, expires, revoked,
    state}]} (times unix seconds, None when unset) as one line per key; never key material."""
    lines = [f"{record['platform']}  roles: {', '.join(record['roles'])}  added "
             f"{_when(record['created'])}"]
    for k in record["keys"]:
        lines.append(f"  key {k['id']}: {k['state']}, age {_age(now - k['created'])}, expires "
                     f"{_when(k['expires']) or 'never'}"
                     + (f", revoked {_when(k['revoked'])}" if k["revoked"] else ""))
    return record, "\n".join(lines)


def new_platform(name: str, api_key: str, roles) -> tuple[dict, str]:
    shown = "" if list(roles) == ["match"] else f" (roles: {', '.join(roles)})"
    return ({"platform": name, "api_key": api_key, "roles": list(roles)},
            f"Platform {name!r} added{shown}.\n  API key: {api_key}\nHand it to the platform "
            "now: it is shown only this once (the server keeps a hash).")


def new_key(name: str, api_key: str, key_id: int, grace_s: float | None, sequence: int):
    """A rotated key; `grace_s` None: the server's default grace."""
    record = {"platform": name, "api_key": api_key, "key_id": key_id, "grace_s": grace_s,
              "sequence": sequence}
    ended = ("stay valid for the server's default grace (24h)." if grace_s is None else
             f"stay valid for {_age(grace_s)}." if grace_s else "ended now.")
    return record, (f"Platform {name!r}: new key {key_id}.\n  API key: {api_key}\nHand it to the "
                    f"platform now: it is shown only this once. The previous keys {ended}")


def revoked_keys(name: str, revoked: int, sequence: int) -> tuple[dict, str]:
    return ({"platform": name, "revoked": revoked, "sequence": sequence},
            f"Platform {name!r}: {revoked} key(s) revoked"
            + ("; running servers refuse them within a second" if revoked else
               " (none was valid)"))


def platform_roles(name: str, roles, sequence: int) -> tuple[dict, str]:
    return ({"platform": name, "roles": list(roles), "sequence": sequence},
            f"Platform {name!r} roles: {', '.join(roles)}")


def audit_row(record: dict) -> tuple[dict, str]:
    """An audit record {id, at, actor, action, subject, detail}."""
    return record, (f"{_when(record['at'])}  {record['actor']}  {record['action']}  "
                    f"{record['subject']}  {record['detail']}")


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f}{unit}"
    return f"{max(0, seconds):.0f}s"
