"""Raw REST calls (transport.py carries them), and the one place that imports the `kubernetes`
package: its kubeconfig loader owns auth-provider users (OIDC and friends) and their token refresh.

Everything else about credentials is resolved in kubeconfig.py/credentials.py, the way
client-go does it: importing the client costs a third of a second, most of a small cluster's
wait, and its generated models are never needed. Requests carry repeated headers (one
Impersonate-Group per group), gzip is decoded in one call, and responses are read as raw JSON
into dicts: fast and indifferent to schema drift. Each request runs in a daemon thread while
the caller waits in short steps, so `--request-timeout` bounds a request's whole duration and
Ctrl-C stops a stalled request at once.
"""
from __future__ import annotations

import gc
import json
import re
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set, TextIO, Tuple

from cpumodel.errors import Conflict, Forbidden, NotFound, SourceError
from cpumodel.sources.kubeconfig import Access

GET_ATTEMPTS = 4  # 1 try + 3 retries on 429/5xx, idempotent GETs only
MAX_RETRY_AFTER = 10.0
PAGE_SIZE = 500
MAX_LIST_RESTARTS = 3
POLL = 0.05  # how often a waiting thread looks at the clock and lets Ctrl-C in
# How long a list waits for the next page's bytes to arrive before it decodes the page in hand (see _collect_pages).
RECEIVE_WAIT = 0.1


@dataclass(frozen=True)
class Call:
    """What a request is for, so errors can name the verb, resource and object."""

    verb: str  # get, list, patch
    resource: str  # e.g. "virtualmachines.kubevirt.io"
    namespace: Optional[str] = None
    name: Optional[str] = None


class Transient(SourceError):
    """A connection reset or similar: worth another try when the request is safe to repeat."""


class Unreachable(SourceError):
    """The server could not be reached, or did not answer in time."""


class ApiError(SourceError):
    def __init__(self, message: str, status: int, reason: str = ""):
        super().__init__(message)
        self.status = status
        self.reason = reason


class ForbiddenError(ApiError, Forbidden):
    """403: RBAC said no. Reads the contract calls optional catch it (reader.optional)."""


def _status_message(body: bytes) -> Tuple[str, str]:
    try:
        status = json.loads(body)
        return str(status.get("message") or ""), str(status.get("reason") or "")
    except (ValueError, AttributeError):
        return body.decode("utf-8", "replace").strip()[:300], ""


def _scope(call: Call) -> str:
    return 'in namespace "%s"' % call.namespace if call.namespace else "at cluster scope"


def http_error(call: Call, status: int, body: bytes, server: str) -> SourceError:
    message, reason = _status_message(body)
    if status == 401:  # kubectl's words, so users recognise them
        return ApiError("You must be logged in to the server (Unauthorized): %s rejected the credentials; log in "
                        "again or refresh the kubeconfig" % server, status, reason)
    if status == 403:
        return ForbiddenError("forbidden: RBAC does not allow you to %s %s %s%s" % (
            call.verb, call.resource, _scope(call), ": " + message if message else ""), status, reason)
    if status == 404:
        if call.name:
            where = ' in namespace "%s"' % call.namespace if call.namespace else ""
            return NotFound('%s "%s" not found%s' % (call.resource, call.name, where))
        return NotFound("the server does not serve %s (%s)" % (call.resource, message or "not found"))
    if status == 409:
        return Conflict(message or "conflict")
    return ApiError("%s %s failed: HTTP %d %s%s" % (call.verb, call.resource, status, reason,
                                                    ": " + message if message else ""), status, reason)


# OpenSSL verify codes -> Go's x509 wording, which kubectl users know.
_X509 = {2: "certificate signed by unknown authority", 18: "certificate signed by unknown authority",
         19: "certificate signed by unknown authority", 20: "certificate signed by unknown authority",
         21: "certificate signed by unknown authority", 9: "certificate has expired or is not yet valid",
         10: "certificate has expired or is not yet valid", 62: "certificate is not valid for the server's name",
         64: "certificate is not valid for the server's name"}


def tls_reason(exc: BaseException) -> str:
    import ssl

    inner: Optional[BaseException] = exc
    while inner is not None and not isinstance(inner, ssl.SSLError):
        inner = getattr(inner, "reason", None) or inner.__context__ or inner.__cause__
    if isinstance(inner, ssl.SSLCertVerificationError):
        wording = _X509.get(inner.verify_code)
        detail = inner.verify_message or ""
        return "x509: %s (%s)" % (wording, detail) if wording else "x509: %s" % detail
    if isinstance(inner, ssl.SSLError):
        return "TLS handshake failed (%s)" % (inner.reason or inner.strerror or "SSL error")
    return str(exc).splitlines()[0][:200]


def connection_error(exc: BaseException, access: Access, timeout: Optional[float]) -> SourceError:
    import http.client
    import socket
    import ssl

    from cpumodel.sources.transport import ProxyFailure

    server = access.server
    if isinstance(exc, ProxyFailure):
        from cpumodel.sources.kubeconfig import without_userinfo

        return SourceError("cannot connect to %s through the proxy %s: %s" % (
            server, without_userinfo(access.proxy or "")[0], str(exc.error).splitlines()[0][:200] or type(exc.error).__name__))
    text = str(exc)
    if isinstance(exc, socket.gaierror):
        return SourceError("cannot resolve the host of %s (DNS lookup failed)" % server)
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return SourceError("TLS error talking to %s: %s" % (server, tls_reason(exc)))
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return timed_out(server, timeout)
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, http.client.HTTPException)):
        return Transient("the connection to %s broke: %s" % (server, text.splitlines()[0][:200] if text else
                                                              type(exc).__name__))
    if isinstance(exc, OSError) and exc.errno is not None:  # refused, no route, network down
        return Unreachable("cannot connect to %s: connection refused or unreachable" % server)
    return SourceError("cannot talk to %s: %s" % (server, text.splitlines()[0][:200] if text else type(exc).__name__))


def timed_out(server: str, timeout: Optional[float]) -> SourceError:
    limit = "%gs" % timeout if timeout else "the default"
    return Unreachable("timed out after %s waiting for %s (raise --request-timeout)" % (limit, server))


def auth_provider_configuration(config: Dict[str, Any], context: str):
    """OIDC and other auth-provider users: the kubernetes client's loader owns their token refresh."""
    from kubernetes import client
    from kubernetes import config as kube_config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    try:
        kube_config.load_kube_config_from_dict(config, context=context, client_configuration=configuration,
                                               persist_config=False)
    except (ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
        raise SourceError("getting credentials: auth-provider of context %s: %s" % (context, str(exc).splitlines()[0]))
    return configuration


def large_buffers_in_own_mappings() -> None:
    """glibc's malloc raises its mmap threshold to the size of the last large block freed (up to 32 MiB): after the
    first list page, every page-sized buffer (500 full nodes: 2.5 MB gzipped, 22 MB inflated) comes from the heap,
    where the objects decoded meanwhile split it, so each next page takes new memory (50-100 MB more peak RSS at
    5,000 nodes, README "Performance"). A fixed threshold keeps such buffers in mappings of their own, returned
    whole when freed; smaller allocations are left as they are. Elsewhere (macOS, musl) nothing is changed."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        mallopt = ctypes.CDLL(None).mallopt
    except (ImportError, OSError, AttributeError):
        return
    mallopt(-3, 4 << 20)  # M_MMAP_THRESHOLD (malloc.h): 4 MiB


class _Background:
    """A call running in a daemon thread; waiting for it honours a deadline and Ctrl-C. `received`: an event the
    call sets once its response's bytes are in (list pages)."""

    def __init__(self, fn: Callable[[], Any], received: Optional[threading.Event] = None):
        self.received = received
        self._done = threading.Event()
        self._value: Any = None
        self._error: Optional[BaseException] = None
        threading.Thread(target=self._run, args=(fn,), daemon=True).start()

    def _run(self, fn) -> None:
        try:
            self._value = fn()
        except BaseException as exc:  # handed to the waiting thread
            self._error = exc
        finally:
            self._done.set()

    def result(self, deadline: Optional[float] = None, on_timeout: Callable[[], BaseException] = TimeoutError):
        while not self._done.wait(POLL):
            if deadline is not None and time.monotonic() >= deadline:
                raise on_timeout()
        if self._error is not None:
            raise self._error
        return self._value


class KubeClient:
    """Raw JSON over the kubernetes client's connection pool, with the Access's credentials."""

    def __init__(self, access: Access, timeout: Optional[float], verbosity: int, log: TextIO):
        self.access = access
        self.server = access.server
        self.timeout = timeout
        self.verbosity = verbosity
        self.log = log
        self.requests = 0
        self.provider = auth_provider_configuration(*access.auth_provider) if access.auth_provider else None
        large_buffers_in_own_mappings()
        from cpumodel.sources.transport import Transport

        self._transport = Transport(access, timeout)

    def _log(self, method: str, path: str, query: Sequence[Tuple[str, str]], status: Any, started: float) -> None:
        if self.verbosity > 0:
            from urllib.parse import urlencode

            url = path + ("?" + urlencode(list(query)) if query else "")
            self.log.write("%s %s %s in %d milliseconds\n" % (method, self.server + url, status,
                                                                (time.monotonic() - started) * 1000))

    def _headers(self, accept: str, content_type: Optional[str]) -> List[Tuple[str, str]]:
        headers = [("Accept", accept), ("Accept-Encoding", "gzip"), ("User-Agent", "kubectl-cpumodel")]
        if content_type:
            headers.append(("Content-Type", content_type))
        authorization = self.access.authorization
        if self.provider is not None:
            authorization = self.provider.get_api_key_with_prefix("authorization")
        if authorization:
            headers.append(("Authorization", authorization))
        if self.access.impersonate_user:
            headers.append(("Impersonate-User", self.access.impersonate_user))
        for group in self.access.impersonate_groups:
            headers.append(("Impersonate-Group", group))  # one header per group, as client-go sends them
        if self.access.impersonate_uid:
            headers.append(("Impersonate-Uid", self.access.impersonate_uid))
        return headers

    def _exchange(self, method: str, target: str, headers, body: Optional[bytes],
                  received: Optional[threading.Event] = None):
        """One HTTP exchange, read to the end: (status, body, headers). `received` is set once the body is in,
        before it is inflated (or when the exchange failed)."""
        try:
            status, data, resp_headers = self._transport.exchange(method, target, headers, body)
        finally:
            if received is not None:
                received.set()
        if {k.lower(): v for k, v in resp_headers.items()}.get("content-encoding", "").lower() == "gzip":
            data = gunzip(data)
        return status, data, resp_headers

    def _send(self, method, path, query, headers, body, received=None):
        from http.client import HTTPException
        from urllib.parse import urlencode

        started = time.monotonic()
        self.requests += 1
        target = path + ("?" + urlencode(list(query)) if query else "")
        payload = None if body is None else json.dumps(body).encode()
        exchange = _Background(lambda: self._exchange(method, target, headers, payload, received))
        deadline = started + self.timeout if self.timeout else None
        try:
            status, data, resp_headers = exchange.result(deadline, lambda: timed_out(self.server, self.timeout))
        except SourceError:
            self._log(method, path, query, "timeout", started)
            raise
        except (OSError, HTTPException, zlib.error, ValueError) as exc:
            self._log(method, path, query, "error", started)
            if isinstance(exc, zlib.error):
                raise SourceError("the server sent a response that is not valid gzip: %s" % exc)
            if isinstance(exc, ValueError) and not isinstance(exc, OSError):  # http.client refuses a header
                # Not the value itself: it may be a credential.
                raise SourceError("cannot send the request to %s: a header value (credentials or --as/--as-group) "
                                  "holds a line break or another character HTTP headers cannot carry" % self.server)
            raise connection_error(exc, self.access, self.timeout)
        self._log(method, path, query, status, started)
        return status, data, resp_headers

    def request(self, call: Call, method: str, path: str, query: Sequence[Tuple[str, str]] = (),
                body: Any = None, content_type: str = "application/json",
                accept: str = "application/json", repeatable: bool = False) -> Dict[str, Any]:
        return _decode(self.request_bytes(call, method, path, query, body, content_type, accept, repeatable))

    def request_bytes(self, call: Call, method: str, path: str, query: Sequence[Tuple[str, str]] = (),
                      body: Any = None, content_type: str = "application/json",
                      accept: str = "application/json", repeatable: bool = False,
                      received: Optional[threading.Event] = None) -> bytes:
        """The response body of a successful request; errors raised (`received`: see _exchange).

        GETs, and writes the caller marks `repeatable` (a patch guarded by a resourceVersion: a
        repeat after a lost answer meets a 409, never a second change), are retried with a bounded
        backoff on 429 (honouring Retry-After), 5xx and broken connections, as client-go does."""
        headers = self._headers(accept, content_type if body is not None else None)
        attempts = GET_ATTEMPTS if method == "GET" or repeatable else 1
        for attempt in range(attempts):
            try:
                status, data, resp_headers = self._send(method, path, query, headers, body, received)
            except Transient:
                if attempt == attempts - 1:
                    raise
                time.sleep(_retry_delay({}, attempt))
                continue
            if 200 <= status < 300:
                return data
            retryable = status == 429 or status >= 500
            if not retryable or attempt == attempts - 1:
                raise http_error(call, status, data, self.server)
            time.sleep(_retry_delay(resp_headers, attempt))
        raise AssertionError("unreachable")

    def list_items(self, call: Call, path: str, query: Sequence[Tuple[str, str]] = (),
                   accept: str = "application/json", keep: Optional[Callable[[Dict[str, Any]], Any]] = None,
                   items_of: Callable[[Dict[str, Any]], List[Dict[str, Any]]] = lambda page: page.get("items") or [],
                   info: Optional[Dict[str, Any]] = None) -> List[Any]:
        """Every item of a list, page by page (`keep` trims each page's items as it arrives).

        While one page is decoded, the next is already being fetched: its continue token is
        read from the head of the raw page (kube-apiserver writes `metadata` before `items`),
        so network and server time overlap with JSON decoding. An expired continue token
        (410 Gone) restarts the list from scratch, dropping what earlier pages gave, as
        kubectl does. `info` receives the list's resourceVersion (where a watch starts).
        """
        def fetch(token: str) -> _Background:
            q = list(query) + [("limit", str(PAGE_SIZE))] + ([("continue", token)] if token else [])
            received = threading.Event()
            return _Background(lambda: self.request_bytes(call, "GET", path, q, accept=accept, received=received),
                               received)

        for _ in range(MAX_LIST_RESTARTS + 1):
            try:
                return self._collect_pages(fetch, keep, items_of, call.resource, info)
            except ApiError as exc:
                if exc.status != 410:
                    raise
        raise SourceError("listing %s kept expiring (HTTP 410 Gone); try again" % call.resource)

    @staticmethod
    def _collect_pages(fetch, keep, items_of, what: str = "objects", info: Optional[Dict[str, Any]] = None
                       ) -> List[Any]:
        """A server (or a broken proxy) that repeats a continue token, or whose list outgrows by more than a page
        what its `remainingItemCount` announced, would page for ever: that ends in one clear error."""
        items: List[Any] = []
        seen: Set[str] = set()
        announced: Optional[int] = None

        def endless(why: str) -> SourceError:
            return SourceError("listing %s: the server %s; the list would never end (a broken server or proxy?)"
                               % (what, why))

        pending = fetch("")
        while True:
            raw = pending.result()
            guessed = peek_continue(raw)
            if guessed in seen:
                raise endless("sent the same continue token twice")
            if guessed:
                pending = fetch(guessed)
                # json.loads holds the interpreter lock for the whole page (~0.1 s for 500 nodes), and the fetching
                # thread needs it to read the socket: let the next page's bytes in first, so that inflating them
                # (which lets go of the lock) runs on the other core while this page is decoded. Bounded, so a slow
                # link still overlaps its transfer with decoding (the kernel buffers what arrives meanwhile).
                if pending.received is not None:
                    pending.received.wait(RECEIVE_WAIT)
            page = _decode(raw)
            del raw
            if not isinstance(page, dict) or not isinstance(page.get("metadata") or {}, dict):
                raise SourceError("the server answered a list request with %s, not a list object"
                                  % type(page).__name__)
            token = (page.get("metadata") or {}).get("continue") or ""
            if info is not None and not seen:
                info["resourceVersion"] = str((page.get("metadata") or {}).get("resourceVersion") or "")
            remaining = (page.get("metadata") or {}).get("remainingItemCount")
            page_items = items_of(page)
            if not isinstance(page_items, list):
                raise SourceError("the server sent a list whose items are not a list")
            items.extend(map(keep, page_items) if keep else page_items)
            if token in seen:
                raise endless("sent the same continue token twice")
            seen.add(token)
            if announced is None and isinstance(remaining, int) and not isinstance(remaining, bool):
                announced = len(items) + remaining
            if announced is not None and len(items) > announced + PAGE_SIZE:
                raise endless("announced %d items (remainingItemCount) but has sent %d" % (announced, len(items)))
            del page, page_items  # let each page go before the next is decoded
            if token != guessed:  # an unusual layout: fall back to fetching after decoding
                if guessed:
                    try:
                        pending.result()  # wait for the wasted request, ignore its outcome
                    except SourceError:
                        pass
                if token:
                    pending = fetch(token)
            if not token:
                return items


    def watch(self, call: Call, path: str, query: Sequence[Tuple[str, str]], read_timeout: float
              ) -> Iterator[Dict[str, Any]]:
        """The events of a watch (`watch=1` in `query`), decoded line by line as they arrive; the connection is
        given back for reuse when the server ends the watch cleanly (its timeoutSeconds), closed otherwise.
        A connection that cannot be made or breaks raises WatchBroken (the caller reconnects); an HTTP error
        raises as a request's would (410 Gone: the resourceVersion is too old, the caller lists again)."""
        from http.client import HTTPException
        from urllib.parse import urlencode

        headers = [h for h in self._headers("application/json", None) if h[0] != "Accept-Encoding"]
        started = time.monotonic()
        self.requests += 1
        try:
            response, release = self._transport.stream("GET", path + "?" + urlencode(list(query)), headers,
                                                       read_timeout)
        except (OSError, HTTPException) as exc:
            self._log("WATCH", path, query, "error", started)
            error = connection_error(exc, self.access, read_timeout)
            if isinstance(error, (Transient, Unreachable)):
                raise WatchBroken(str(error))
            raise error
        self._log("WATCH", path, query, response.status, started)
        clean = False
        try:
            if response.status != 200:
                data = response.read()
                clean = True
                raise http_error(call, response.status, data, self.server)
            while True:
                line = response.readline()
                if not line:
                    clean = True
                    return
                if line.strip():
                    yield _decode(line)
        except (OSError, HTTPException) as exc:
            raise WatchBroken("the watch of %s broke: %s" % (call.resource, str(exc).splitlines()[0][:200] if str(exc)
                                                                 else type(exc).__name__))
        finally:
            release(clean)


class WatchBroken(Transient):
    """A watch connection that could not be made, broke, or went quiet past its read timeout: reconnect."""


_CONTINUE = re.compile(rb'^\s*\{[^{]*?"metadata"\s*:\s*\{[^{}]*?"continue"\s*:\s*"([^"\\]*)"')


def peek_continue(raw: bytes) -> str:
    """The continue token from the head of a raw list page, or "" if it is not right there."""
    match = _CONTINUE.match(raw[:4096])
    return match.group(1).decode() if match else ""


def gunzip(data: bytes) -> bytes:
    """A gzip body in one call that lets go of the interpreter lock all along: the output buffer is sized from the
    gzip trailer (ISIZE, the length mod 2**32) so zlib never stops to grow it, which takes the lock, and the lock
    is held for a whole page by json.loads in the thread decoding the page before. The trailer is only a hint: a
    hostile one cannot ask for more than deflate's 1032:1 ratio, and a body of several gzip members (zlib stops
    after the first; Go's reader, kubectl's, reads them all) is read member by member."""
    size = int.from_bytes(data[-4:], "little") if len(data) >= 18 else 0
    out = zlib.decompress(data, 16 + zlib.MAX_WBITS, min(size, 1032 * len(data)) + 64)
    if len(out) & 0xFFFFFFFF == size:
        return out
    parts = []
    while data:
        member = zlib.decompressobj(16 + zlib.MAX_WBITS)
        parts += [member.decompress(data), member.flush()]
        if not member.eof:
            raise zlib.error("the gzip stream ends in the middle of a member")
        data = member.unused_data
    return b"".join(parts)


def _retry_delay(headers: Dict[str, str], attempt: int) -> float:
    retry_after = {k.lower(): v for k, v in headers.items()}.get("retry-after")
    try:
        return min(float(retry_after), MAX_RETRY_AFTER) if retry_after else 0.2 * (2 ** attempt)
    except ValueError:
        return 0.2 * (2 ** attempt)


def _decode(data: bytes) -> Dict[str, Any]:
    if not data:
        return {}
    # Large lists allocate millions of small objects; the cyclic GC only slows that down.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return json.loads(data)
    except ValueError as exc:
        raise SourceError("the server sent a response that is not JSON: %s" % exc)
    finally:
        if collecting:
            gc.enable()


def parse_duration(text: str) -> Optional[float]:
    """kubectl's --request-timeout: "0" = none, a bare integer = seconds, else a Go duration."""
    text = text.strip()
    if text.isdigit():
        return float(text) or None
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
    parts: List[Tuple[str, str]] = re.findall(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(text)
    total = sum(float(n) * units[u] for n, u in parts)
    return total or None
