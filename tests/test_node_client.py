"""A second-language client (Node.js, @grpc/grpc-js, built from the .proto files alone) submits
a case and streams a batch to a real server; the answer must name the right positions, entries
and distances. Proves the API is usable without the Python generated code."""
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import grpc
import numpy as np
import pytest

from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / "tests" / "node"


def node_ready() -> str:
    """Path of `node`, with tests/node/node_modules installed; fails the test (no skip) if not."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.fail("node and npm are needed for the Node.js client test (CI has Node 20): "
                    "install Node.js >= 18 with npm")
    if not (NODE_DIR / "node_modules" / "@grpc" / "grpc-js").is_dir():
        done = subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefer-offline"],
                              cwd=NODE_DIR, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            pytest.fail(f"`npm install` in {NODE_DIR} failed:\n{done.stdout}\n{done.stderr}")
    return node


def google_protos_root() -> Path:
    """The folder holding google/rpc/status.proto (shipped by googleapis-common-protos)."""
    from google.rpc import status_pb2
    root = Path(status_pb2.__file__).resolve().parents[2]
    assert (root / "google" / "rpc" / "status.proto").is_file(), root
    return root


def flip(hash_: bytes, bits: list[int]) -> bytes:
    out = bytearray(hash_)
    for bit in bits:
        out[bit // 8] ^= 0x80 >> (bit % 8)
    return bytes(out)


def test_node_client_submits_and_matches(live_server):
    target, api_key = live_server.target, live_server.api_key
    node = node_ready()
    rng = np.random.default_rng(11)
    a, b, c, r0, r1 = (rng.integers(0, 256, 32, dtype=np.uint8).tobytes() for _ in range(5))
    bits = rng.permutation(256).tolist()
    queries = [r0, flip(a, bits[:5]), b, flip(c, bits[:31]), flip(c, bits[:32]), r1]
    cmd = [node, str(NODE_DIR / "client.js"), "--target", target,
           "--proto-root", str(ROOT / "proto"), "--include", str(google_protos_root()),
           "--api-key", api_key, "--submit", ",".join(h.hex() for h in (a, b, c)),
           "--query", ",".join(q.hex() for q in queries), "--threshold", "31"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    reply = json.loads(done.stdout)

    ids = [int(i) for i in reply["entry_ids"]]
    assert len(ids) == 3 and len(set(ids)) == 3 and reply["case_id"]
    assert len(reply["answers"]) == 1
    answer = reply["answers"][0]
    assert answer["sequence"] == 7 and answer["error"] is None
    got = [(m["position"], int(m["entry_id"]), m["distance"], m["signal_type"])
           for m in answer["matches"]]
    assert got == [(1, ids[0], 5, "SIGNAL_TYPE_PDQ"), (2, ids[1], 0, "SIGNAL_TYPE_PDQ"),
                   (3, ids[2], 31, "SIGNAL_TYPE_PDQ")]

    # The Python stub sees the same answer for the same batch: the two clients agree.
    with grpc.insecure_channel(target) as channel:
        same = pb_grpc.MatchingStub(channel).MatchBatch(
            pb.MatchRequest(sequence=7, signal_type=pb.SIGNAL_TYPE_PDQ,
                            hashes=b"".join(queries), threshold=31),
            metadata=(("x-api-key", api_key),), timeout=30)
    assert [(m.position, m.entry_id, m.distance) for m in same.matches] == \
        [g[:3] for g in got]


def test_node_client_without_key_is_unauthenticated(live_server):
    target = live_server.target
    node = node_ready()
    h = hashlib.sha256(b"any real-looking hash").hexdigest()  # "ab" * 32 is refused as degenerate
    cmd = [node, str(NODE_DIR / "client.js"), "--target", target,
           "--proto-root", str(ROOT / "proto"), "--include", str(google_protos_root()),
           "--api-key", "not-a-key", "--submit", h, "--query", h]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "code 16" in done.stderr  # UNAUTHENTICATED


def test_missing_node_fails_rather_than_skips(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="node and npm are needed"):
        node_ready()
