"""The one place that touches the `kubernetes` package: auth, TLS and raw REST calls.

We use the client for what it does well (kubeconfig auth, exec plugins, TLS) and
read responses as raw JSON into dicts: faster than its generated models and
indifferent to schema drift. Pinned to kubernetes 35.x,
whose dependency tree is pure Python and whose `call_api` signature is the
classic one; 37.x changes both.
"""
from __future__ import annotations

import gc
import json
import re
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, TextIO, Tuple

from cpumodel.errors import Conflict, NotFound, SourceError
from cpumodel.sources.kubeconfig import KubeconfigChoice

GET_ATTEMPTS = 4  # 1 try + 3 retries on 429/5xx, idempotent GETs only
MAX_RETRY_AFTER = 10.0
PAGE_SIZE = 500
MAX_LIST_RESTARTS = 3


@dataclass(frozen=True)
class Call:
    """What a request is for, so errors can name the verb, resource and object."""

    verb: str  # get, list, patch
    resource: str  # e.g. "virtualmachines.kubevirt.io"
    namespace: Optional[str] = None
    name: Optional[str] = None


class ApiError(SourceError):
    def __init__(self, message: str, status: int, reason: str = ""):
        super().__init__(message)
        self.status = status
        self.reason = reason


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
    if status == 401:
        return ApiError("unauthorized: %s rejected our credentials; log in again or refresh the kubeconfig (%s)"
                        % (server, message or "Unauthorized"), status, reason)
    if status == 403:
        return ApiError("forbidden: RBAC does not allow you to %s %s %s%s" % (
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


def connection_error(exc: BaseException, server: str, timeout: Optional[float]) -> SourceError:
    import urllib3.exceptions as ue

    text = str(exc)
    reason = getattr(exc, "reason", None)
    inner = reason if isinstance(reason, BaseException) else exc
    if isinstance(inner, ue.NameResolutionError) or "Name or service not known" in text or "nodename nor servname" in text:
        return SourceError("cannot resolve the host of %s (DNS lookup failed)" % server)
    if isinstance(inner, ue.NewConnectionError):
        return SourceError("cannot connect to %s: connection refused or unreachable" % server)
    if isinstance(inner, (ue.ReadTimeoutError, ue.ConnectTimeoutError)) or "timed out" in text:
        limit = "%gs" % timeout if timeout else "the default"
        return SourceError("timed out after %s waiting for %s (raise --request-timeout)" % (limit, server))
    if isinstance(inner, ue.SSLError) or "SSL" in text or "certificate" in text:
        return SourceError("TLS error talking to %s: %s" % (server, text.splitlines()[0][:200]))
    return SourceError("cannot talk to %s: %s" % (server, text.splitlines()[0][:200] if text else type(exc).__name__))


def build_configuration(choice: KubeconfigChoice):
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    try:
        if choice.in_cluster:
            config.load_incluster_config(client_configuration=configuration)
        else:
            config.load_kube_config_from_dict(choice.config, context=choice.context,
                                              client_configuration=configuration, persist_config=False)
    except (ConfigException, OSError, ValueError, KeyError, TypeError) as exc:
        if choice.in_cluster:
            raise SourceError("no kubeconfig, and the in-cluster service account is not usable: %s" % exc)
        raise SourceError("invalid kubeconfig for context %s: %s" % (choice.context, exc))
    # The client's urllib3 retries would turn one --request-timeout into four; we retry ourselves.
    configuration.retries = False
    return configuration


class KubeClient:
    """Raw JSON over the kubernetes client's authenticated connection pool."""

    def __init__(self, choice: KubeconfigChoice, timeout: Optional[float], verbosity: int, log: TextIO):
        from kubernetes import client

        self.server = choice.server
        self.timeout = timeout
        self.verbosity = verbosity
        self.log = log
        self.requests = 0
        self._api = client.ApiClient(build_configuration(choice))

    def _log(self, method: str, path: str, query: Sequence[Tuple[str, str]], status: Any, started: float) -> None:
        if self.verbosity > 0:
            from urllib.parse import urlencode

            url = path + ("?" + urlencode(list(query)) if query else "")
            self.log.write("%s %s %s in %d milliseconds\n" % (method, self.server + url, status,
                                                                (time.monotonic() - started) * 1000))

    def _send(self, method, path, query, headers, body):
        from kubernetes.client.exceptions import ApiException
        import urllib3.exceptions as ue

        started = time.monotonic()
        self.requests += 1
        timeout = (self.timeout, self.timeout) if self.timeout else None
        try:
            resp = self._api.call_api(path, method, query_params=list(query), header_params=headers, body=body,
                                      auth_settings=["BearerToken"], _preload_content=False,
                                      _return_http_data_only=True, _request_timeout=timeout)
            data = resp.data
            self._log(method, path, query, resp.status, started)
            return resp.status, data, {}
        except ApiException as exc:
            if exc.status == 0:  # the client's wrapping of a TLS failure
                self._log(method, path, query, "error", started)
                raise connection_error(Exception(exc.reason or "SSL error"), self.server, self.timeout)
            self._log(method, path, query, exc.status, started)
            body_bytes = exc.body if isinstance(exc.body, bytes) else str(exc.body or "").encode()
            return exc.status, body_bytes, dict(exc.headers or {})
        except (ue.HTTPError, OSError) as exc:
            self._log(method, path, query, "error", started)
            raise connection_error(exc, self.server, self.timeout)

    def request(self, call: Call, method: str, path: str, query: Sequence[Tuple[str, str]] = (),
                body: Any = None, content_type: str = "application/json",
                accept: str = "application/json") -> Dict[str, Any]:
        return _decode(self.request_bytes(call, method, path, query, body, content_type, accept))

    def request_bytes(self, call: Call, method: str, path: str, query: Sequence[Tuple[str, str]] = (),
                      body: Any = None, content_type: str = "application/json",
                      accept: str = "application/json") -> bytes:
        """The response body of a successful request (GETs retried on 429/5xx); errors raised."""
        headers = {"Accept": accept, "Content-Type": content_type, "Accept-Encoding": "gzip",
                   "User-Agent": "kubectl-cpumodel"}
        attempts = GET_ATTEMPTS if method == "GET" else 1
        for attempt in range(attempts):
            status, data, resp_headers = self._send(method, path, query, headers, body)
            if 200 <= status < 300:
                return data
            retryable = status == 429 or status >= 500
            if not retryable or attempt == attempts - 1:
                raise http_error(call, status, data, self.server)
            time.sleep(_retry_delay(resp_headers, attempt))
        raise AssertionError("unreachable")

    def list_items(self, call: Call, path: str, query: Sequence[Tuple[str, str]] = (),
                   accept: str = "application/json", keep: Optional[Callable[[Dict[str, Any]], Any]] = None,
                   items_of: Callable[[Dict[str, Any]], List[Dict[str, Any]]] = lambda page: page.get("items") or []
                   ) -> List[Any]:
        """Every item of a list, page by page (`keep` trims each page's items as it arrives).

        While one page is decoded, the next is already being fetched: its continue token is
        read from the head of the raw page (kube-apiserver writes `metadata` before `items`),
        so network and server time overlap with JSON decoding. An expired continue token
        (410 Gone) restarts the list from scratch, dropping what earlier pages gave, as
        kubectl does.
        """
        from concurrent.futures import ThreadPoolExecutor

        def fetch(token: str):
            q = list(query) + [("limit", str(PAGE_SIZE))] + ([("continue", token)] if token else [])
            return self.request_bytes(call, "GET", path, q, accept=accept)

        with ThreadPoolExecutor(max_workers=1) as prefetcher:
            for _ in range(MAX_LIST_RESTARTS + 1):
                try:
                    return self._collect_pages(fetch, prefetcher, keep, items_of)
                except ApiError as exc:
                    if exc.status != 410:
                        raise
        raise SourceError("listing %s kept expiring (HTTP 410 Gone); try again" % call.resource)

    @staticmethod
    def _collect_pages(fetch, prefetcher, keep, items_of) -> List[Any]:
        items: List[Any] = []
        pending = prefetcher.submit(fetch, "")
        while True:
            raw = pending.result()
            guessed = peek_continue(raw)
            if guessed:
                pending = prefetcher.submit(fetch, guessed)
            page = _decode(raw)
            del raw
            token = (page.get("metadata") or {}).get("continue") or ""
            page_items = items_of(page)
            items.extend(map(keep, page_items) if keep else page_items)
            del page, page_items  # let each page go before the next is decoded
            if token != guessed:  # an unusual layout: fall back to fetching after decoding
                if guessed:
                    pending.cancel()
                    pending.exception()  # wait for the wasted request, ignore its outcome
                if token:
                    pending = prefetcher.submit(fetch, token)
            if not token:
                return items


_CONTINUE = re.compile(rb'^\s*\{[^{]*?"metadata"\s*:\s*\{[^{}]*?"continue"\s*:\s*"([^"\\]*)"')


def peek_continue(raw: bytes) -> str:
    """The continue token from the head of a raw list page, or "" if it is not right there."""
    match = _CONTINUE.match(raw[:4096])
    return match.group(1).decode() if match else ""


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
    gc.disable()
    try:
        return json.loads(data)
    except ValueError as exc:
        raise SourceError("the server sent a response that is not JSON: %s" % exc)
    finally:
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
