"""Mutual TLS contexts for the store's peer and client ports.

Why: a TLS cluster must refuse any connection whose peer has no certificate signed by the
cluster's CA, on both ports, as etcd does with --client-cert-auth and --peer-client-cert-auth.
How: one ``TLSFiles`` (cert, key, CA bundle) per process; the server context requires and
verifies a client certificate, the client context verifies the server against the CA and
presents its own certificate. Tests make the files with trustme.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

from kvcheck.exitcodes import UsageError


@dataclass(frozen=True)
class TLSFiles:
    cert: Path  # PEM certificate chain of this process
    key: Path  # PEM private key
    ca: Path  # PEM bundle of the CA(s) that sign the other side's certificates

    def check(self) -> None:
        for label, path in (("cert", self.cert), ("key", self.key), ("ca", self.ca)):
            if not Path(path).is_file():
                raise FileNotFoundError(f"TLS {label} file not found: {path}")


def server_context(files: TLSFiles) -> ssl.SSLContext:
    """Server side: present our certificate, require and verify the client's."""
    files.check()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(files.ca))
    ctx.load_cert_chain(str(files.cert), str(files.key))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def client_context(files: TLSFiles | None, ca: Path | None = None) -> ssl.SSLContext:
    """Client side: verify the server against the CA; present our certificate if given.

    Certificates are issued for 127.0.0.1 and localhost; host names are checked.
    """
    if files is not None:
        files.check()
        ca = files.ca
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca) if ca else None)
    if files is not None:
        ctx.load_cert_chain(str(files.cert), str(files.key))
    return ctx


def client_context_from_flags(cacert: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    """The client context etcdctl-style flags ask for: ``--cacert`` alone (verify the server),
    or all three (also present a client certificate); any other mix is a usage error."""
    if cert and key and cacert:
        return client_context(TLSFiles(cert, key, cacert))
    if cacert and not (cert or key):
        return client_context(None, ca=cacert)
    raise UsageError("TLS needs --cacert, and --cert with --key for a client certificate")
