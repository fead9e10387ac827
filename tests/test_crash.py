"""kill -9 right after acknowledgements: every acknowledged case must be there after a restart.

The server runs as a real subprocess (`python -m hashmatch.server`); submissions keep arriving
from several threads while it is killed, so some are in flight at the moment of the kill. Only
acknowledged ones are checked (an unacknowledged one may or may not have been kept).
"""
import json
import os
import signal
import threading
import time

import grpc
import numpy as np

from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc


def submit_until_stopped(target, worker, acknowledged, lock, stop):
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


def test_acknowledged_cases_survive_sigkill(server_process):
    first = server_process("--worker-threads", "4")
    acknowledged, lock, stop = [], threading.Lock(), threading.Event()
    workers = [threading.Thread(target=submit_until_stopped,
                                args=(first.target, w, acknowledged, lock, stop))
               for w in range(4)]
    for w in workers:
        w.start()
    while True:
        with lock:
            if len(acknowledged) >= 20:
                break
        assert first.process.poll() is None
        time.sleep(0.01)
    os.kill(first.process.pid, signal.SIGKILL)
    first.process.wait()
    with lock:
        survivors = list(acknowledged)
    stop.set()
    for w in workers:
        w.join()

    second = server_process(db_path=first.db_path)
    channel = grpc.insecure_channel(second.target)
    cases, matching = pb_grpc.CasesStub(channel), pb_grpc.MatchingStub(channel)
    key = [("x-api-key", first.api_key)]
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
        status = cases.GetCaseStatus(pb.GetCaseStatusRequest(case_id=case.case_id, pin=case.pin))
        assert status.state == pb.CASE_STATE_ACTIVE
    channel.close()
    assert second.stop() == 0

    logged = first.log_path.read_text() + second.log_path.read_text()
    assert '"msg": "stopped"' in logged
    serving = [json.loads(line) for line in second.log_path.read_text().splitlines()
               if '"msg": "serving"' in line]
    # The restart reports what it loaded and what the index holds (32-byte hashes at least).
    assert serving[0]["pdq"] >= len(survivors)
    assert serving[0]["index_bytes"] >= 32 * serving[0]["pdq"]
    secrets = [first.api_key, second.api_key, *(case.pin for case, _, _ in survivors)]
    assert [s for s in secrets if s in logged] == []
