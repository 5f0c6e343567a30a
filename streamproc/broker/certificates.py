"""TLS for the local test broker: a throwaway certificate authority and a server certificate.

Only :class:`~streamproc.broker.LocalBroker` with ``tls=True`` uses them (the TLS tests): clients
trust ``ca.pem``; both expire after a week and are never meant for anything but loopback.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from streamproc.errors import BrokerError

__all__ = ["make_certificates"]


def make_certificates(tls: Path) -> Path:
    """A throwaway CA (``tls/ca.pem``) and a server certificate for 127.0.0.1 in ``tls``, made
    with openssl once per directory; returns the server's PEM keystore (key + certificate)."""
    keystore = tls / "server-keystore.pem"
    if keystore.exists():
        return keystore
    if shutil.which("openssl") is None:
        raise BrokerError("openssl is not on PATH: it makes the TLS test certificates")
    tls.mkdir(parents=True, exist_ok=True)
    (tls / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    steps = [
        [
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "7",
            "-subj",
            "/CN=streamproc-local-ca",
        ],
        [
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
        [
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "7",
            "-extfile",
            "san.ext",
        ],
    ]
    for step in steps:
        done = subprocess.run(["openssl", *step], cwd=tls, capture_output=True, text=True)
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise BrokerError(f"openssl {step[0]} failed: {last[0]}")
    keystore.write_text((tls / "server.key").read_text() + (tls / "server.pem").read_text())
    return keystore
