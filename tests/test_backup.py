"""Backup and restore as docs/DEPLOY.md describes them: an online SQLite backup taken while the
server serves, restored into a new file, gives a server with the same list at the same sequence."""
import sqlite3

from hashmatch.v1 import hashmatch_pb2 as pb
from test_server import PDQ, hits, image, match, video


def online_backup(db_path: str, copy_path: str) -> None:
    """What `sqlite3 DB ".backup COPY"` does: SQLite's online backup API, safe while serving."""
    source, target = sqlite3.connect(db_path), sqlite3.connect(copy_path)
    try:
        source.backup(target)
    finally:
        source.close(), target.close()


def test_online_backup_restores_the_list_at_its_sequence(start_server, connect, random_hashes,
                                                         tmp_path):
    server = start_server(imported=random_hashes(500, seed=20))
    stubs = connect(server)
    photos, frames = random_hashes(2, seed=21), random_hashes(4, seed=22)
    kept = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(photos[0]),
                                                             video(frames, md5=b"v" * 16)]))
    later = stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(photos[1])]))
    before = stubs.list_info.GetListInfo(pb.GetListInfoRequest(), metadata=stubs.key)

    copy = str(tmp_path / "restored.db")
    online_backup(server.db_path, copy)
    # Changes after the backup belong to the original only.
    stubs.cases.WithdrawCase(pb.WithdrawCaseRequest(case_id=later.case_id, pin=later.pin))
    stubs.cases.SubmitCase(pb.SubmitCaseRequest(media=[image(random_hashes(1, seed=23)[0])]))
    server.stop()

    restored = connect(start_server(db_path=copy))
    after = restored.list_info.GetListInfo(pb.GetListInfoRequest(), metadata=restored.key)
    assert after.last_sequence == before.last_sequence
    assert ({c.signal_type: c.count for c in after.counts}
            == {c.signal_type: c.count for c in before.counts})
    assert hits(match(restored, photos.tobytes())) == [(0, kept.entry_ids[0], 0),
                                                       (1, later.entry_ids[0], 0)]
    assert [m.signal_type for m in match(restored, photos.tobytes()).matches] == [PDQ, PDQ]
    status = restored.cases.GetCaseStatus(pb.GetCaseStatusRequest(case_id=later.case_id,
                                                                  pin=later.pin))
    assert status.state == pb.CASE_STATE_ACTIVE
