"""TLS for the server: certificate, key and optional client CA files, re-read when renewed.

gRPC asks `CertificateFiles.fetch` for a configuration before each new TLS handshake; it answers
None (keep the current one) unless a file's modification time or size changed, and then reads
the files again. A renewal (certbot, cert-manager) therefore needs no restart; connections
already open keep the certificate they were made with. Files that cannot be read or parsed
mid-renewal leave the last good configuration in place, with a WARNING.
"""
import logging
import os

import grpc

log = logging.getLogger("hashmatch.server")


class CertificateFiles:
    def __init__(self, cert: str, key: str, client_ca: str | None = None):
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._stamp = self._stamps()
        self.initial = self._configuration()

    def _paths(self) -> list[str]:
        return [self.cert, self.key] + ([self.client_ca] if self.client_ca else [])

    def _stamps(self) -> tuple:
        stamps = []
        for path in self._paths():
            info = os.stat(path)
            stamps.append((info.st_mtime_ns, info.st_size))
        return tuple(stamps)

    def _configuration(self):
        def read(path):
            with open(path, "rb") as f:
                return f.read()
        return grpc.ssl_server_certificate_configuration(
            [(read(self.key), read(self.cert))],
            root_certificates=read(self.client_ca) if self.client_ca else None)

    def fetch(self):
        """A new configuration when the files changed since the last one, else None."""
        try:
            stamp = self._stamps()
            if stamp == self._stamp:
                return None
            configuration = self._configuration()
        except (OSError, ValueError) as exc:
            log.warning("TLS files unreadable; keeping the last certificate",
                        extra={"fields": {"cert": self.cert, "error": str(exc)}})
            return None
        self._stamp = stamp
        log.info("TLS certificate reloaded", extra={"fields": {"cert": self.cert}})
        return configuration


def server_credentials(cert: str, key: str, client_ca: str | None) -> grpc.ServerCredentials:
    """TLS credentials that follow renewals of the files; with `client_ca`, mTLS: clients must
    present a certificate signed by it."""
    files = CertificateFiles(cert, key, client_ca)
    return grpc.dynamic_ssl_server_credentials(files.initial, files.fetch,
                                               require_client_authentication=bool(client_ca))
