"""Certificates made for one test: a CA, a server and a client certificate it signed, and a stranger CA."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

# The names the server certificate is good for: the tests reach their servers on loopback.
SERVER_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class Certificates:
    ca: Path  # what clients trust
    server_cert: Path  # the server's certificate chain, signed by `ca`
    server_key: Path
    client_cert: Path  # a client certificate signed by `ca`, for servers that ask for one
    client_key: Path
    other_ca: Path  # a CA that signed none of these: the wrong one to trust
    garbage: Path  # a file that is no certificate at all

    def server_context(self) -> ssl.SSLContext:
        """A TLS server that requires a client certificate signed by `ca`."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=self.ca)
        context.load_cert_chain(self.server_cert, self.server_key)
        context.verify_mode = ssl.CERT_REQUIRED
        return context


def make_certificates(directory: Path) -> Certificates:
    ca, other = trustme.CA(), trustme.CA()
    server = ca.issue_cert(*SERVER_NAMES)
    client = ca.issue_cert("client@tests.example")
    files = {
        "ca": ca.cert_pem,
        "server_cert": server.cert_chain_pems[0],
        "server_key": server.private_key_pem,
        "client_cert": client.cert_chain_pems[0],
        "client_key": client.private_key_pem,
        "other_ca": other.cert_pem,
    }
    paths = {name: directory / f"{name}.pem" for name in files}
    for name, blob in files.items():
        blob.write_to_path(str(paths[name]))
    garbage = directory / "garbage.pem"
    garbage.write_text("not a certificate\n")
    return Certificates(**paths, garbage=garbage)
