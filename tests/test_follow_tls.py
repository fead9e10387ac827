"""Copies of a list read over TLS and mTLS: `serve --follow` and `hashmatch mirror`, on real
servers and sockets, with certificates from a CA the test makes (tests/pki.py).

A TLS primary serves TLS only, so a copy that matches what the primary added was read over TLS.
A copy whose TLS settings do not fit the primary (plaintext to TLS, a CA that did not sign it,
no client certificate for mTLS) ends with an error that says what to check, instead of
retrying in silence.
"""
import os
import types

import grpc
import numpy as np
import pytest

from hashmatch.clients import cli
from hashmatch.clients.client import HashmatchError, TlsFiles
from hashmatch.clients.mirror import ListMirror
from hashmatch.clients.sync_client import SetUpFailed, SyncClient
from hashmatch.server.config import ServerConfig
from hashmatch.v1 import hashmatch_pb2 as pb
from hashmatch.v1 import hashmatch_pb2_grpc as pb_grpc
from bench.pki import CA
from test_replication import (mirror_process, new_case, photo_pdq, primary_digest,
                              replicate_key, same_as_primary, stored_copy)
from test_several_servers import wait_until


@pytest.fixture
def pki(tmp_path):
    """`ca`: the CA file of the primary's certificate (`cert`, `key`); `client_ca`: the CA
    file of client certificates; `tls`: a copy's settings with a client certificate."""
    servers, clients = CA(tmp_path, "server-ca"), CA(tmp_path, "client-ca")
    cert, key = servers.issue("primary")
    return types.SimpleNamespace(ca=str(servers.pem), cert=cert, key=key,
                                 client_ca=str(clients.pem),
                                 tls=TlsFiles(str(servers.pem), *clients.issue("follower")))


def tls_primary(start_server, pki, mtls: bool):
    return start_server(tls_cert=pki.cert, tls_key=pki.key,
                        tls_client_ca=pki.client_ca if mtls else None)


def finds(server, seed: int) -> bool:
    """Whether `server` (plaintext) matches the photo of new_case(seed)."""
    request = pb.MatchRequest(signal_type=pb.SIGNAL_TYPE_PDQ, hashes=photo_pdq(seed),
                              threshold=0)
    answer = pb_grpc.MatchingStub(server.channel()).MatchBatch(
        request, metadata=[("x-api-key", server.api_key)])
    return bool(answer.matches)


def follower(start_server, tmp_path, primary, name: str, **tls):
    key = replicate_key(primary.db_path, name=name)
    return start_server(db_path=str(tmp_path / f"{name}.db"), follow=primary.target,
                        follow_api_key=key[0][1], **tls)


def test_a_follower_copies_a_tls_primary(start_server, pki, tmp_path):
    primary = tls_primary(start_server, pki, mtls=False)
    copy = follower(start_server, tmp_path, primary, "follower", follow_ca=pki.ca)
    new_case(primary.target, 3, tls=TlsFiles(pki.ca))
    wait_until(lambda: finds(copy, 3), timeout=10, what="the case on the follower")
    assert not finds(copy, 4)


def test_an_mtls_primary_refuses_a_follower_without_a_client_certificate(start_server, pki,
                                                                        tmp_path):
    primary = tls_primary(start_server, pki, mtls=True)
    with pytest.raises(SetUpFailed) as refused:
        follower(start_server, tmp_path, primary, "no-cert", follow_ca=pki.ca)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "client certificate" in refused.value.details()

    copy = follower(start_server, tmp_path, primary, "with-cert", follow_ca=pki.ca,
                    follow_cert=pki.tls.cert, follow_key=pki.tls.key)
    new_case(primary.target, 5, tls=pki.tls)
    wait_until(lambda: finds(copy, 5), timeout=10, what="the case on the mTLS follower")


def test_list_mirror_copies_an_mtls_server_and_says_why_it_cannot(start_server, pki):
    primary = tls_primary(start_server, pki, mtls=True)
    new_case(primary.target, 6, tls=pki.tls)
    key = replicate_key(primary.db_path)[0][1]
    no_cert = ListMirror(primary.target, key, tls=TlsFiles(pki.ca))
    try:
        with pytest.raises(HashmatchError) as refused:
            no_cert.start(timeout=30)
    finally:
        no_cert.stop()
    assert refused.value.code == grpc.StatusCode.UNAVAILABLE
    assert "client certificate" in refused.value.message
    with ListMirror(primary.target, key, tls=pki.tls) as copy:
        assert len(copy.match(np.frombuffer(photo_pdq(6), np.uint8), threshold=0)) == 1


def renew(*paths: str) -> None:
    """Dates rewritten files 2 s later, so a renewal shows whatever the clock's resolution."""
    for path in paths:
        later = os.stat(path).st_mtime_ns + 2_000_000_000
        os.utime(path, ns=(later, later))


def test_a_follower_reconnects_with_its_renewed_client_certificate(start_server, pki,
                                                                   tmp_path):
    primary = tls_primary(start_server, pki, mtls=True)
    copy = follower(start_server, tmp_path, primary, "follower", follow_ca=pki.ca,
                    follow_cert=pki.tls.cert, follow_key=pki.tls.key)
    # The primary comes back trusting only a new client CA, and the follower's files now hold
    # a certificate from it: only the renewed files can reconnect.
    primary.stop()
    renewed = CA(tmp_path, "renewed-client-ca")
    renewed.issue("follower", cert_path=pki.tls.cert, key_path=pki.tls.key)
    renew(pki.tls.cert, pki.tls.key)
    primary = start_server(db_path=primary.db_path, listen=primary.target, tls_cert=pki.cert,
                           tls_key=pki.key, tls_client_ca=str(renewed.pem))
    new_case(primary.target, 8, tls=pki.tls)
    wait_until(lambda: finds(copy, 8), timeout=15, what="the case after the renewal")


def first_failure(target: str, tls: TlsFiles | None) -> SetUpFailed:
    """How a reader with these settings fails: at once, with a hint."""
    copy = types.SimpleNamespace(token=None, sequence=0)
    client = SyncClient(target, None, copy, tls)
    try:
        with pytest.raises(SetUpFailed) as failed:
            client.run()
    finally:
        client.stop()
    return failed.value


@pytest.mark.timeout(60)    # a regression retries forever
def test_settings_that_do_not_fit_the_primary_say_what_to_check(start_server, pki, tmp_path):
    primary = tls_primary(start_server, pki, mtls=False)
    assert "may serve TLS" in first_failure(primary.target, None).details()
    stranger = CA(tmp_path, "stranger")
    assert "TLS handshake failed" in first_failure(primary.target,
                                                   TlsFiles(str(stranger.pem))).details()


def test_hashmatch_mirror_copies_an_mtls_primary_durably(start_server, pki, tmp_path):
    primary = tls_primary(start_server, pki, mtls=True)
    new_case(primary.target, 1, tls=pki.tls)
    replicator = replicate_key(primary.db_path, roles=("replicate", "match"))
    db, log = str(tmp_path / "copy.db"), tmp_path / "mirror.log"
    process = mirror_process(primary.target, db, replicator, log, "--ca", pki.ca,
                             "--cert", pki.tls.cert, "--key", pki.tls.key)
    try:
        wait_until(lambda: log.exists() and '"event":"snapshot"' in log.read_text(),
                   timeout=30, what="the snapshot")
        new_case(primary.target, 2, video=True, tls=pki.tls)
        wait_until(lambda: same_as_primary(primary.target, replicator,
                                           lambda: stored_copy(db)[0],
                                           lambda: stored_copy(db)[1], pki.tls),
                   timeout=10, what="the copy to equal the primary")
    finally:
        process.terminate()
        process.wait()
    # 2 photos and their MD5s, and a video: its MD5 and 5 frames
    assert primary_digest(primary.target, replicator, pki.tls)[1] == 10


@pytest.mark.timeout(60)    # a regression retries forever
def test_mirror_tls_flags_are_checked(tmp_path, capsys):
    db = str(tmp_path / "copy.db")
    assert cli.main(["mirror", "--from", "127.0.0.1:1", "--db", db, "--cert", "c.pem"]) == \
        cli.EXIT_USAGE
    assert "cert and key" in capsys.readouterr().err
    assert cli.main(["mirror", "--from", "127.0.0.1:1", "--db", db, "--ca",
                     str(tmp_path / "missing.pem")]) == cli.EXIT_USAGE
    assert "cannot read a TLS file" in capsys.readouterr().err


def test_follow_tls_settings():
    assert ServerConfig(follow="p:1").follow_tls_files() is None
    assert ServerConfig(follow="p:1", follow_tls=True).follow_tls_files() == TlsFiles()
    assert ServerConfig(follow="p:1", follow_ca="ca.pem", follow_cert="c.pem",
                        follow_key="k.pem").follow_tls_files() == TlsFiles("ca.pem", "c.pem",
                                                                           "k.pem")
    with pytest.raises(ValueError, match="follow_cert and follow_key go together"):
        ServerConfig(follow="p:1", follow_cert="c.pem")
    with pytest.raises(ValueError, match="follow_ca is for following .* needs follow"):
        ServerConfig(follow_ca="ca.pem")
    with pytest.raises(ValueError, match="follow_tls"):
        ServerConfig(follow_tls=True)
