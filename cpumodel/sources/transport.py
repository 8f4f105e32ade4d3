"""HTTP/1.1 to the API server over the standard library's http.client, with kubectl's TLS and proxy rules.

Why not urllib3 (the kubernetes client's transport): importing it costs about 50 ms, a third of
a small cluster's whole answer (benchmarks/run.py), and we need little of it: one keep-alive
connection at a time, TLS with a CA bundle, client certificates and an SNI override, HTTP and
CONNECT proxies. Everything here is what client-go's transport does for these settings.
"""
from __future__ import annotations

import base64
import http.client
import re
import select
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import unquote, urlsplit

from cpumodel.sources.kubeconfig import Access


class ProxyFailure(OSError):
    """The proxy could not be reached, or refused the tunnel."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


def _tls_context(access: Access):
    """TLS as client-go sets it up: the kubeconfig's CA alone when it names one, else the system's trusted
    roots found the way Go finds them (system_roots), and certifi's bundle only where no system store exists."""
    import ssl

    if access.ca_file:
        context = ssl.create_default_context(cafile=access.ca_file)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies names and chains, trusts nothing yet
        roots = system_roots(access.ssl_cert_file, access.ssl_cert_dir)
        if roots:
            _load_roots(context, roots)
        elif not _platform_store(context):
            bundle = _certifi_bundle()
            if bundle:
                context.load_verify_locations(cafile=bundle)
    if not access.verify:  # --insecure-skip-tls-verify: kubectl says nothing per request about it; neither do we
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if access.cert_file:
        context.load_cert_chain(access.cert_file, access.key_file)
    return context


# Go's crypto/x509 (root_linux.go, root_unix.go, Go 1.26): the first of these files that can be read, or only
# $SSL_CERT_FILE when set; then every file in these directories (or the ':'-separated $SSL_CERT_DIR), skipping
# links to a file in the same directory. kubectl is built with Go, so this is the trust a kubectl user has.
CERT_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt", "/etc/ssl/ca-bundle.pem",
              "/etc/pki/tls/cacert.pem", "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem", "/etc/ssl/cert.pem")
CERT_DIRS = ("/etc/ssl/certs", "/etc/pki/tls/certs")
_PEM_CERTIFICATE = re.compile(rb"-----BEGIN CERTIFICATE-----\s.*?-----END CERTIFICATE-----", re.S)


def system_roots(cert_file: Optional[str] = None, cert_dir: Optional[str] = None) -> List[str]:
    """The PEM certificates Go's loadSystemRoots would trust on Linux and the BSDs (each once)."""
    import os
    import sys

    if sys.platform in ("win32", "darwin"):  # Go asks the platform's own verifier there
        return []
    found: Dict[bytes, None] = {}

    def add(path: str) -> bool:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError:
            return False
        for block in _PEM_CERTIFICATE.findall(data):
            found.setdefault(block, None)
        return True

    for path in ([cert_file] if cert_file else CERT_FILES):
        if add(path):
            break
    for directory in (cert_dir.split(":") if cert_dir else CERT_DIRS):
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            continue
        for entry in entries:
            if entry.is_symlink() and "/" not in os.readlink(entry.path):
                continue  # a link to a file in the same directory, read under its own name
            add(entry.path)
    return [block.decode("ascii", "replace") for block in found]


def _load_roots(context, roots: List[str]) -> None:
    """All at once; where one certificate does not parse, the others one by one (Go skips what it cannot parse)."""
    import ssl

    try:
        context.load_verify_locations(cadata="\n".join(roots))
    except ssl.SSLError:
        for pem in roots:
            try:
                context.load_verify_locations(cadata=pem)
            except ssl.SSLError:
                pass


def _platform_store(context) -> bool:
    """Windows: the system certificate store, as Go uses it there. Elsewhere nothing to add."""
    import sys

    if sys.platform != "win32":
        return False
    context.load_default_certs()
    return bool(context.cert_store_stats().get("x509_ca"))


def _certifi_bundle() -> Optional[str]:
    """certifi's bundle (vendored in the krew archive): the trust of last resort, for machines without a
    system store (macOS, whose keychain Python cannot read; minimal containers)."""
    try:
        import certifi

        return certifi.where()
    except ImportError:
        return None


class _Connection(http.client.HTTPSConnection):
    """TLS to the API server (directly or inside a proxy's CONNECT tunnel), verified against the name kubectl
    would use: --tls-server-name when given, else the server's host."""

    def __init__(self, host: str, port: int, timeout: Optional[float], context, server_name: str, proxied: bool):
        super().__init__(host, port, timeout=timeout, context=context)
        self._server_name = server_name
        self._proxied = proxied

    def connect(self) -> None:
        try:
            http.client.HTTPConnection.connect(self)  # TCP (to the proxy) and the CONNECT tunnel, if any
        except OSError as exc:
            if self._proxied:
                raise ProxyFailure(exc)
            raise
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self._server_name)


class _PlainConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, timeout: Optional[float], proxied: bool):
        super().__init__(host, port, timeout=timeout)
        self._proxied = proxied

    def connect(self) -> None:
        try:
            super().connect()
        except OSError as exc:
            if self._proxied:
                raise ProxyFailure(exc)
            raise


class Transport:
    """Keep-alive connections to one server, reused one request at a time (requests may run in threads)."""

    def __init__(self, access: Access, timeout: Optional[float]):
        url = urlsplit(access.server)
        self.https = url.scheme == "https"
        self.host = url.hostname or ""
        self.port = url.port or (443 if self.https else 80)
        self.base_path = url.path.rstrip("/")
        self.origin = "%s://%s" % (url.scheme, url.netloc.rpartition("@")[2])
        self.server_name = access.tls_server_name or self.host
        self.access = access
        self.timeout = timeout
        self.proxy_headers: Dict[str, str] = {}
        self.proxy: Optional[Tuple[str, int]] = None
        if access.proxy:
            proxy = urlsplit(access.proxy)
            self.proxy = (proxy.hostname or "", proxy.port or 80)
            if proxy.username is not None:
                user = "%s:%s" % (unquote(proxy.username), unquote(proxy.password or ""))
                self.proxy_headers["Proxy-Authorization"] = "Basic " + base64.b64encode(user.encode()).decode()
        self._context: Any = None
        self._idle: List[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connect(self) -> http.client.HTTPConnection:
        host, port = self.proxy or (self.host, self.port)
        if not self.https:
            return _PlainConnection(host, port, self.timeout, self.proxy is not None)
        if self._context is None:
            self._context = _tls_context(self.access)
        conn = _Connection(host, port, self.timeout, self._context, self.server_name, self.proxy is not None)
        if self.proxy:
            conn.set_tunnel(self.host, self.port, headers=self.proxy_headers)
        return conn

    def _take(self) -> http.client.HTTPConnection:
        """An idle connection the server has not closed meanwhile (as urllib3 checks), else a new one."""
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                sock = conn.sock
                if sock is not None and not select.select([sock], [], [], 0)[0]:
                    return conn
                conn.close()  # readable while idle: closed by the server (or garbage): not reusable
        return self._connect()

    def _give_back(self, conn: http.client.HTTPConnection, response: http.client.HTTPResponse) -> None:
        if response.will_close:
            conn.close()
            return
        with self._lock:
            self._idle.append(conn)

    def target(self, path_and_query: str) -> str:
        """The request target: absolute for a plain-HTTP proxy, else the path under the server's own path."""
        path = self.base_path + path_and_query
        return self.origin + path if self.proxy and not self.https else path

    def _request(self, conn: http.client.HTTPConnection, method: str, path_and_query: str,
                 headers: Sequence[Tuple[str, str]], body: Optional[bytes]) -> None:
        conn.putrequest(method, self.target(path_and_query), skip_accept_encoding=True)
        for name, value in headers:
            conn.putheader(name, value.encode("utf-8"))  # as client-go sends them; latin-1 would fail
        if self.proxy and not self.https:
            for name, value in self.proxy_headers.items():
                conn.putheader(name, value)
        if body is not None:
            conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)

    def stream(self, method: str, path_and_query: str, headers: Sequence[Tuple[str, str]], read_timeout: float
               ) -> Tuple[http.client.HTTPResponse, Callable[[bool], None]]:
        """A request whose response is read as it arrives (a watch): the response, and `release(clean)`, which
        gives the connection back for reuse when the response ended cleanly, and closes it otherwise. Reads wait
        up to `read_timeout` (a healthy watch is quiet between events, longer than a request timeout)."""
        conn = self._take()
        conn.timeout = read_timeout
        if conn.sock is not None:
            conn.sock.settimeout(read_timeout)
        try:
            self._request(conn, method, path_and_query, headers, None)
            response = conn.getresponse()
        except BaseException:
            conn.close()
            raise

        def release(clean: bool) -> None:
            if clean and response.isclosed() and not response.will_close and conn.sock is not None:
                conn.timeout = self.timeout
                conn.sock.settimeout(self.timeout)
                self._give_back(conn, response)
            else:
                conn.close()
        return response, release

    def exchange(self, method: str, path_and_query: str, headers: Sequence[Tuple[str, str]],
                 body: Optional[bytes]) -> Tuple[int, bytes, Dict[str, str]]:
        """One request, its response read to the end: (status, raw body, headers)."""
        conn = self._take()
        try:
            self._request(conn, method, path_and_query, headers, body)
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            conn.close()
            raise
        self._give_back(conn, response)
        return response.status, data, dict(response.getheaders())
