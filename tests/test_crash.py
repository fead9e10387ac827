"""kill -9 right after acknowledgements: every acknowledged case must be there after a restart.

The server runs as a real subprocess (`python -m hashmatch.server`); submissions keep arriving
from several threads while it is killed, so some are in flight at the moment of the kill. Only
acknowledged ones are checked (an unacknowledged one may or may not have been kept).
"""
import os
import signal
import subprocess
import sys
import threading
import time

import grpc
import numpy as np
import pytest

from hashmatch.server.store import Store
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc


def start(db_path, port_file, log) -> subprocess.Popen:
    if port_file.exists():
        port_file.unlink()
    process = subprocess.Popen(
        [sys.executable, "-m", "hashmatch.server", "--db", str(db_path), "--listen",
         "127.0.0.1:0", "--port-file", str(port_file), "--worker-threads", "4"],
        stdout=log, stderr=subprocess.STDOUT)
    for _ in range(600):
        if port_file.exists():
            return process
        assert process.poll() is None, "server exited before serving"
        time.sleep(0.05)
    process.kill()
    pytest.fail("server did not start serving")


def test_acknowledged_cases_survive_sigkill(tmp_path):
    db_path, port_file = tmp_path / "list.db", tmp_path / "port"
    store = Store(db_path)
    api_key = store.add_platform("crash-test")
    store.close()
    log = open(tmp_path / "server.log", "wb")
    process = start(db_path, port_file, log)
    target = f"127.0.0.1:{port_file.read_text().strip()}"

    acknowledged, lock, stop = [], threading.Lock(), threading.Event()

    def submit(worker: int):
        rng = np.random.default_rng(worker)
        channel = grpc.insecure_channel(target)
        cases = pb_grpc.CasesStub(channel)
        while not stop.is_set():
            pdq = rng.integers(0, 256, 32, dtype=np.uint8).tobytes()
            md5 = rng.integers(0, 256, 16, dtype=np.uint8).tobytes()
            try:
                case = cases.SubmitCase(pb.SubmitCaseRequest(media=[pb.MediaHashes(
                    image=pb.ImageHashes(pdq=pdq, md5=md5, quality=90))]), timeout=10)
            except grpc.RpcError:
                break
            with lock:
                acknowledged.append((case, pdq, md5))
        channel.close()

    workers = [threading.Thread(target=submit, args=(w,)) for w in range(4)]
    for w in workers:
        w.start()
    while True:
        with lock:
            if len(acknowledged) >= 20:
                break
        time.sleep(0.01)
        assert process.poll() is None
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    with lock:
        survivors = list(acknowledged)
    stop.set()
    for w in workers:
        w.join()

    process = start(db_path, port_file, log)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port_file.read_text().strip()}")
        cases, matching = pb_grpc.CasesStub(channel), pb_grpc.MatchingStub(channel)
        key = [("x-api-key", api_key)]
        pdqs = b"".join(pdq for _, pdq, _ in survivors)
        md5s = b"".join(md5 for _, _, md5 in survivors)
        by_pdq = matching.MatchBatch(pb.MatchRequest(signal_type=pb.SIGNAL_TYPE_PDQ, hashes=pdqs,
                                                     threshold=0), metadata=key)
        by_md5 = matching.MatchBatch(pb.MatchRequest(signal_type=pb.SIGNAL_TYPE_MD5, hashes=md5s),
                                     metadata=key)
        expected = [(i, case.entry_ids[0]) for i, (case, _, _) in enumerate(survivors)]
        assert [(m.position, m.entry_id) for m in by_pdq.matches] == expected
        assert [(m.position, m.entry_id) for m in by_md5.matches] == expected
        for case, _, _ in survivors[-3:]:
            status = cases.GetCaseStatus(pb.GetCaseStatusRequest(case_id=case.case_id,
                                                                 pin=case.pin))
            assert status.state == pb.CASE_STATE_ACTIVE
        channel.close()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        log.close()

    logged = (tmp_path / "server.log").read_text()
    assert '"msg": "stopped"' in logged
    leaked = [s for s in [api_key, *(case.pin for case, _, _ in survivors)] if s in logged]
    assert leaked == []
