"""TLS and mTLS over real sockets, with certificates from a CA the test makes.

The server serves TLS from certificate files, re-reads them when they change (no restart), and
with a client CA requires client certificates signed by it. The client library and the CLI
connect with `TlsFiles` / --ca, --cert, --key.
"""
import os

import grpc
import pytest

from hashmatch.clients import cli
from hashmatch.clients.client import HashmatchClient, HashmatchError, TlsFiles
from bench.pki import CA


@pytest.fixture
def pki(tmp_path):
    ca = CA(tmp_path, "list-ca")
    cert, key = ca.issue("server")
    return ca, cert, key


def info(server, tls, api_key=None) -> int:
    """max_batch_hashes from GetListInfo over TLS at localhost (the certificate's name)."""
    with HashmatchClient(f"localhost:{server.port}", api_key=api_key or server.api_key,
                         timeout=5, tls=tls) as client:
        return client.list_info().max_batch_hashes


def refused(server, tls) -> HashmatchError:
    with pytest.raises(HashmatchError) as caught:
        info(server, tls)
    return caught.value


def test_tls_serves_trusting_clients_and_refuses_the_rest(start_server, pki, tmp_path):
    ca, cert, key = pki
    server = start_server(tls_cert=cert, tls_key=key)
    assert info(server, TlsFiles(ca=str(ca.pem))) == 16384
    assert refused(server, None).code == grpc.StatusCode.UNAVAILABLE   # plaintext client
    stranger = CA(tmp_path, "other-ca")
    assert refused(server, TlsFiles(ca=str(stranger.pem))).code == grpc.StatusCode.UNAVAILABLE


def test_mtls_needs_a_client_certificate_from_the_client_ca(start_server, pki, tmp_path):
    ca, cert, key = pki
    clients = CA(tmp_path, "client-ca")
    server = start_server(tls_cert=cert, tls_key=key, tls_client_ca=str(clients.pem))
    client_cert, client_key = clients.issue("platform")
    assert info(server, TlsFiles(str(ca.pem), client_cert, client_key)) == 16384
    assert refused(server, TlsFiles(ca=str(ca.pem))).code == grpc.StatusCode.UNAVAILABLE
    wrong_cert, wrong_key = ca.issue("not-a-client")   # signed, but not by the client CA
    assert refused(server, TlsFiles(str(ca.pem), wrong_cert, wrong_key)).code == \
        grpc.StatusCode.UNAVAILABLE


def test_a_renewed_certificate_is_served_without_a_restart(start_server, pki, tmp_path):
    ca, cert, key = pki
    server = start_server(tls_cert=cert, tls_key=key)
    assert info(server, TlsFiles(ca=str(ca.pem))) == 16384
    renewer = CA(tmp_path, "renewed-ca")
    renewer.issue("server", cert_path=cert, key_path=key)
    later = os.stat(cert).st_mtime_ns + 2_000_000_000
    for path in (cert, key):
        os.utime(path, ns=(later, later))
    assert info(server, TlsFiles(ca=str(renewer.pem))) == 16384
    assert refused(server, TlsFiles(ca=str(ca.pem))).code == grpc.StatusCode.UNAVAILABLE


def test_cli_connects_with_tls_flags(start_server, pki, capsys):
    ca, cert, key = pki
    server = start_server(tls_cert=cert, tls_key=key)
    target = f"localhost:{server.port}"
    assert cli.main(["info", "--server", target, "--api-key", server.api_key, "--ca",
                     str(ca.pem), "--json"]) == cli.EXIT_OK
    assert '"max_batch_hashes":16384' in capsys.readouterr().out
    assert cli.main(["info", "--server", target, "--api-key", server.api_key, "--timeout",
                     "3"]) == cli.EXIT_FAILED
    assert cli.main(["info", "--server", target, "--cert", cert]) == cli.EXIT_USAGE
