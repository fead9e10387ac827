"""A durable mirror keeps the entries held and disputed: `hashmatch serve --db COPY` must not
match what the source holds back. Holds reach the copy in two ways, both covered: the snapshot
(SnapshotEnd's held and disputed entries) and later change batches (the log's state ops),
including a reinstatement that lifts a hold the snapshot carried."""
from hashmatch.core.signals import SIGNAL_PDQ
from hashmatch.server.mirror import Mirror
from hashmatch.server.outcomes import FLOOD, NOT_VIOLATING, REINSTATE, Report
from hashmatch.server.replica_store import open_replica_store
from test_poisoning import photos
from test_replication import replicate_key
from test_server import hits, match
from test_several_servers import wait_until


def test_a_server_on_a_mirrors_copy_holds_what_the_source_holds(start_server, random_hashes,
                                                                 connect, tmp_path):
    primary = start_server()
    app = primary.app
    hashes = random_hashes(5, seed=44)
    a, b, c, d, e = app.keeper.submit_case(photos(*hashes)).entry_ids

    def done(sequence: int) -> None:
        app.follower.catch_up(sequence)

    done(app.store.hold([a, c], FLOOD, "test: held before the snapshot"))
    done(app.store.report_action("platform-0", Report("r1", e, SIGNAL_PDQ, hashes[4].tobytes(),
                                                      NOT_VIOLATING), 1).sequence)
    mirror = Mirror(open_replica_store(str(tmp_path / "mirror.db")), primary.target,
                    replicate_key(primary.db_path)[0][1])
    thread = mirror.start()
    try:
        wait_until(lambda: mirror.token and mirror.sequence == app.state.sequence,
                   "the mirror's snapshot")
        done(app.store.hold([b], FLOOD, "test: held after the snapshot"))
        done(app.store.decide(c, REINSTATE, "test", "a real copy"))
        wait_until(lambda: mirror.sequence == app.state.sequence, "the mirror's changes")
    finally:
        mirror.stop()
        thread.join(10)
        mirror.store.close()
    primary.stop()

    copy = start_server(db_path=str(tmp_path / "mirror.db"))
    assert sorted(copy.app.state.holds.held) == sorted([a, b])
    response = match(connect(copy), hashes.tobytes())
    assert hits(response) == [(2, c, 0), (3, d, 0), (4, e, 0)]
    assert [m.disputed for m in response.matches] == [False, False, True]
