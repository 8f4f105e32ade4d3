"""Certificates for TLS tests, made with the openssl command line: a CA, server and client certificates."""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from typing import Optional, Sequence


@dataclass(frozen=True)
class Pair:
    cert: str
    key: str

    def pem(self) -> bytes:
        with open(self.cert, "rb") as fh:
            return fh.read()

    def key_pem(self) -> bytes:
        with open(self.key, "rb") as fh:
            return fh.read()


def available() -> bool:
    return shutil.which("openssl") is not None


def _run(*args: str) -> None:
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


def authority(folder: str, name: str = "test-ca") -> Pair:
    cert, key = os.path.join(folder, name + ".crt"), os.path.join(folder, name + ".key")
    _run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
         "-subj", "/CN=" + name, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=keyCertSign")
    return Pair(cert, key)


def issue(folder: str, ca: Pair, name: str, alt_names: Sequence[str] = (), client: bool = False,
          start: Optional[str] = None, end: Optional[str] = None) -> Pair:
    """A certificate signed by `ca`: for a server (alt_names such as IP:127.0.0.1, DNS:kube.test) or a client.

    `start`/`end` (YYYYMMDDHHMMSSZ) make certificates that are not yet, or no longer, valid.
    """
    cert, key, csr = (os.path.join(folder, name + ext) for ext in (".crt", ".key", ".csr"))
    _run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=" + name)
    ext = os.path.join(folder, name + ".ext")
    with open(ext, "w", encoding="utf-8") as fh:
        fh.write("extendedKeyUsage=%s\n" % ("clientAuth" if client else "serverAuth"))
        if alt_names:
            fh.write("subjectAltName=%s\n" % ",".join(alt_names))
    if start or end:
        _sign_with_dates(folder, ca, csr, cert, ext, start, end)
    else:
        _run("x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-out", cert,
             "-days", "2", "-extfile", ext)
    return Pair(cert, key)


def _sign_with_dates(folder: str, ca: Pair, csr: str, cert: str, ext: str, start, end) -> None:
    """`openssl ca` is the command that takes explicit validity dates."""
    db = os.path.join(folder, "ca-db")
    os.makedirs(db, exist_ok=True)
    open(os.path.join(db, "index.txt"), "a").close()
    config = os.path.join(folder, "ca.cnf")
    with open(config, "w", encoding="utf-8") as fh:
        fh.write("[ca]\ndefault_ca=test\n[test]\ndir=%s\ndatabase=$dir/index.txt\nnew_certs_dir=$dir\n"
                 "serial=$dir/serial\ndefault_md=sha256\npolicy=any\nunique_subject=no\n"
                 "[any]\ncommonName=supplied\n" % db)
    with open(os.path.join(db, "serial"), "w", encoding="utf-8") as fh:
        fh.write("1000\n")
    _run("ca", "-batch", "-config", config, "-cert", ca.cert, "-keyfile", ca.key, "-in", csr, "-out", cert,
         "-startdate", start or "20200101000000Z", "-enddate", end or "20300101000000Z", "-extfile", ext,
         "-notext")
