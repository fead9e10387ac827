"""`hashmatch feedback`, `hashmatch review` and `hashmatch status` (in-process `main(argv)`), and
the client library's feedback path from a StreamingMatcher run, against a real server."""
import json

import numpy as np

from hashmatch.clients import cli
from hashmatch.clients.client import HashmatchClient
from hashmatch.clients.streaming import StreamingMatcher
from tests.test_feedback import near, platform_key, submit_photo


def run(capsys, *argv):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()] if "--json" in argv else out, err


def test_feedback_review_and_status_commands(live_server, capsys, tmp_path):
    channel = live_server.channel()
    (case, pdq), (other, other_pdq) = submit_photo(channel, 20), submit_photo(channel, 21)
    (_, reporter), = platform_key(live_server.db_path, "acme-uploads")
    (_, admin), = platform_key(live_server.db_path, "alice", ("admin",))
    server = ("--server", live_server.target)
    code, acks, _ = run(capsys, "feedback", case.entry_ids[0], pdq.hex(), "--action", "removed",
                        "--report-id", "t-1", "--api-key", reporter, "--json", *server)
    assert code == 0 and acks == [{"report_id": "t-1", "duplicate": False, "disputed": False}]
    lines = tmp_path / "reports.jsonl"
    lines.write_text("".join(json.dumps(r) + "\n" for r in (
        {"report_id": "t-1", "entry_id": case.entry_ids[0], "hash": pdq.hex(),
         "action": "removed"},
        {"report_id": "t-2", "entry_id": case.entry_ids[0], "hash": pdq.hex(),
         "action": "needs_review", "tags": ["x"]})))
    code, acks, _ = run(capsys, "feedback", "--file", lines, "--api-key", reporter, "--json",
                        *server)
    assert [a["duplicate"] for a in acks] == [True, False]
    code, out, _ = run(capsys, "status", case.case_id, "--pin", case.pin, *server)
    assert code == 0 and "copies found 2, removed 1" in out and "acme" not in out
    assert "Platforms have found copies of your photos or videos 2 times" in " ".join(out.split())
    code, out, _ = run(capsys, "review", "suppress", near(other_pdq, 2).hex(), "--note",
                       "test card", "--api-key", admin, *server)
    assert code == 0 and f"held for review: entries {other.entry_ids[0]}" in out
    code, held, _ = run(capsys, "review", "list", "--api-key", admin, "--json", *server)
    assert [(h["entry_id"], h["reason"], h["matching"]) for h in held] == [
        (other.entry_ids[0], "suppressed", False)]
    code, out, _ = run(capsys, "status", other.case_id, "--pin", other.pin, *server)
    assert "(under review)" in out and "suppress" not in out
    code, out, _ = run(capsys, "review", "reinstate", other.entry_ids[0], "--api-key", admin,
                       *server)
    assert code == 0 and "matches again" in out
    code, out, err = run(capsys, "review", "list", "--api-key", admin, *server)
    assert code == 0 and out == "" and "no entry is held or disputed" in err
    code, history, _ = run(capsys, "review", "history", other.entry_ids[0], "--api-key", admin,
                           "--json", *server)
    assert [(d["decision"], d["decided_by"]) for d in history] == [("reinstate", "alice")]
    code, _, err = run(capsys, "review", "list", "--api-key", reporter, *server)
    assert code == 1 and "PERMISSION_DENIED" in err


def test_streaming_outcomes_report_back(live_server):
    channel = live_server.channel()
    case, pdq = submit_photo(channel, 22)
    (_, key), = platform_key(live_server.db_path, "site")
    uploads = {f"upload-{i}": np.random.default_rng(100 + i).bytes(32) for i in range(50)}
    uploads["upload-7"] = near(pdq, 5)
    with HashmatchClient(live_server.target, api_key=key) as client:
        with StreamingMatcher(client, "pdq", batch_size=16) as matcher:
            outcomes = list(matcher.match(uploads.items()))
        reports = [r for o in outcomes for r in o.reports("removed", uploads.get)]
        assert [(r.report_id, r.entry_id) for r in reports] == [
            (f"upload-7/{case.entry_ids[0]}", case.entry_ids[0])]
        assert [a.duplicate for a in client.report_actions(reports + reports)] == [False, True]
        status = client.case_status(case.case_id, case.pin)
    assert (status.items[0].copies_found, status.items[0].copies_removed) == (1, 1)
    assert status.total.copies_removed == 1


def test_a_bad_feedback_file_is_named_before_anything_is_sent(capsys, tmp_path):
    """Read whole before the stream opens: the line (or the missing file) is reported, not a
    bare UNKNOWN from gRPC's request iterator. No server listens on port 1: nothing is sent."""
    bad = tmp_path / "reports.jsonl"
    bad.write_text(json.dumps({"report_id": "r1", "entry_id": 1, "hash": "00" * 32,
                               "action": "REMOVED"}) + "\n{not json\n")
    common = ("--server", "127.0.0.1:1", "--api-key", "k")
    code, _, err = run(capsys, "feedback", "--file", bad, *common)
    assert code == 1 and f"{bad} line 2: not a report" in err
    code, _, err = run(capsys, "feedback", "--file", tmp_path / "missing.jsonl", *common)
    assert code == 1 and "missing.jsonl: cannot read it" in err
