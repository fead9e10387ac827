"""The client-library snippets of docs/WALKTHROUGH.md and docs/FEEDBACK.md run as written
against a real server."""
import os
import pathlib
import shutil
import subprocess
import sys

import grpc

from fidelity_table import SHARED
from hashmatch.server.store import open_store
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

ROOT = pathlib.Path(__file__).resolve().parents[1]


def python_blocks(path: pathlib.Path) -> list[str]:
    text = path.read_text()
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


def test_walkthrough_client_snippet_runs_as_written(live_server, tmp_path):
    # The second block (several servers) goes on from the first's names: it runs after it.
    snippet = "".join(python_blocks(ROOT / "docs" / "WALKTHROUGH.md")[:2])
    assert "submit_case" in snippet and "StreamingMatcher(client" in snippet
    assert "dns:///" in snippet
    photo = SHARED / "conformance" / "images" / "reg-test-input" / "dih" / "bridge-1-original.jpg"
    shutil.copy(photo, tmp_path / "IMG_0001.jpg")
    env = dict(os.environ, HASHMATCH_SERVER=live_server.target,
               HASHMATCH_API_KEY=live_server.api_key)
    done = subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["active", "True 0", "upload-1 True", "INVALID_ARGUMENT"]


def test_feedback_snippet_reports_a_match_once(live_server, tmp_path):
    snippet = python_blocks(ROOT / "docs" / "FEEDBACK.md")[0]
    beach = bytes.fromhex("d0ab32bb0beb5afced032503f414cd44af54d86148cd58b35a8d1b26bf6a38d5")
    assert beach.hex() in snippet and "report_actions" in snippet
    (entry,) = pb_grpc.CasesStub(grpc.insecure_channel(live_server.target)).SubmitCase(
        pb.SubmitCaseRequest(media=[pb.MediaHashes(image=pb.ImageHashes(pdq=beach, quality=100))]
                             )).entry_ids
    store = open_store(live_server.db_path)
    try:
        key = store.add_platform("sitea", ["match", "feedback"])
    finally:
        store.close()
    env = dict(os.environ, HASHMATCH_SERVER=live_server.target, A=key)
    runs = [subprocess.run([sys.executable, "-c", snippet], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120) for _ in range(2)]
    assert [(r.returncode, r.stdout) for r in runs] == [
        (0, f"upload-9120/{entry} False\n"), (0, f"upload-9120/{entry} True\n")], runs[0].stderr
