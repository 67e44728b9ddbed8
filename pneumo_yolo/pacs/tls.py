"""DICOM TLS with mutual certificates: the SSL contexts of the node (server) and of a sender (client)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path


class TlsError(ValueError):
    """TLS settings that cannot be used: a missing or unreadable certificate, key or CA file."""


@dataclass(frozen=True)
class TlsFiles:
    """Our certificate and private key (PEM), and the CA certificate(s) that the peer's certificate must chain to."""

    cert: Path
    key: Path
    ca: Path

    @classmethod
    def from_options(cls, cert: Path | None, key: Path | None, ca: Path | None) -> TlsFiles | None:
        """All three of ``--tls-cert``, ``--tls-key``, ``--tls-ca``, or none (plain TCP); anything else is a :class:`TlsError`."""
        given = {"--tls-cert": cert, "--tls-key": key, "--tls-ca": ca}
        if not any(given.values()):
            return None
        missing = [name for name, value in given.items() if value is None]
        if missing:
            raise TlsError(f"DICOM TLS needs --tls-cert, --tls-key and --tls-ca together; missing {', '.join(missing)}")
        assert cert and key and ca
        return cls(Path(cert), Path(key), Path(ca))

    def _context(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        context = ssl.create_default_context(purpose, cafile=str(self.ca))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_cert_chain(str(self.cert), str(self.key))
        return context

    def server_context(self) -> ssl.SSLContext:
        """The node's context: it presents its certificate and requires a client certificate signed by the CA."""
        return self._checked(ssl.Purpose.CLIENT_AUTH)

    def client_context(self) -> ssl.SSLContext:
        """A sender's context: it presents its certificate and checks the node's against the CA and its host name."""
        return self._checked(ssl.Purpose.SERVER_AUTH)

    def _checked(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        for name, path in (("--tls-cert", self.cert), ("--tls-key", self.key), ("--tls-ca", self.ca)):
            if not path.is_file():
                raise TlsError(f"{name} {path} is not a file")
        try:
            return self._context(purpose)
        except (ssl.SSLError, OSError, ValueError) as error:
            raise TlsError(
                f"the TLS files {self.cert}, {self.key}, {self.ca} cannot be used together ({error})"
            ) from None
