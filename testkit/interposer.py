"""A reverse proxy between the plugin and an API server (the real kube-apiserver over TLS, or the fake), for the
watch tests: it forwards every request, streams watch responses line by line as they arrive, and on demand
breaks the connections of the running watches, or makes the next watch of a resource ask for resourceVersion "1"
(older than the server keeps: the server itself answers 410 Gone, as it does to a client that was away too
long). Stdlib only; loopback only.
"""
from __future__ import annotations

import http.client
import json
import re
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List, Optional, Set, Tuple
from urllib.parse import urlsplit

HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection",
               "accept-encoding", "content-length", "host"}


class Interposer:
    def __init__(self, upstream: str, ca_file: Optional[str] = None):
        url = urlsplit(upstream)
        self.host, self.port, self.https = url.hostname or "127.0.0.1", url.port or 443, url.scheme == "https"
        self.context = ssl.create_default_context(cafile=ca_file) if self.https else None
        self.log: List[Tuple[str, str, int]] = []
        self.watches: Dict[socket.socket, http.client.HTTPConnection] = {}
        self.aged: Set[str] = set()  # resource paths whose next watch asks for resourceVersion "1"
        self.lock = threading.Lock()
        self.server: Optional[ThreadingHTTPServer] = None
        self.url = ""

    # ---- what tests do ---------------------------------------------------------------------------------------
    def start(self) -> "Interposer":
        proxy = self

        class Handler(_Handler):
            interposer = proxy

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        return self

    def stop(self) -> None:
        self.drop_watches()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    def drop_watches(self) -> int:
        """Break every running watch's connection (as a load balancer or a restarting server would)."""
        with self.lock:
            dropped = list(self.watches.items())
            self.watches.clear()
        for sock, upstream in dropped:
            for end in (sock, upstream.sock):
                try:
                    end.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
                except (OSError, AttributeError):
                    pass
        return len(dropped)

    def age_next_watch(self, path: str) -> None:
        self.aged.add(path)

    def watching(self, path_part: str) -> int:
        """How many watch requests whose path holds `path_part` have been made."""
        return sum(1 for method, target, _ in self.log if method == "GET" and path_part in target
                   and "watch=1" in target)

    def answered(self, path_part: str, status: int) -> bool:
        return any(path_part in target and code == status for _, target, code in self.log)

    # ---- forwarding ------------------------------------------------------------------------------------------
    def connect(self) -> http.client.HTTPConnection:
        if self.https:
            return http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=900)
        return http.client.HTTPConnection(self.host, self.port, timeout=900)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    interposer: Interposer

    def log_message(self, *args) -> None:
        pass

    def _forward(self) -> None:
        proxy = self.interposer
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS}
        upstream = proxy.connect()
        target = self.path
        watch = "watch=1" in target or "watch=true" in target
        if watch and urlsplit(target).path in proxy.aged:
            proxy.aged.discard(urlsplit(target).path)
            target = re.sub(r"resourceVersion=[^&]*", "resourceVersion=1", target)
        try:
            upstream.request(self.command, target, body=body, headers=headers)
            response = upstream.getresponse()
            with proxy.lock:
                proxy.log.append((self.command, self.path, response.status))
            if watch and response.status == 200:
                self._stream(response, upstream)
            else:
                self._whole(response)
        finally:
            upstream.close()

    def _head(self, response: http.client.HTTPResponse, extra: Dict[str, str]) -> None:
        self.send_response(response.status)
        for name, value in response.getheaders():
            if name.lower() not in HOP_HEADERS:
                self.send_header(name, value)
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()

    def _whole(self, response: http.client.HTTPResponse) -> None:
        data = response.read()
        self._head(response, {"Content-Length": str(len(data))})
        self.wfile.write(data)

    def _stream(self, response: http.client.HTTPResponse, upstream: http.client.HTTPConnection) -> None:
        proxy = self.interposer
        with proxy.lock:
            proxy.watches[self.connection] = upstream
        try:
            self._head(response, {"Transfer-Encoding": "chunked"})
            while True:
                line = response.readline()
                if not line:
                    break
                if b'"ERROR"' in line and json.loads(line).get("object", {}).get("code") == 410:
                    with proxy.lock:
                        proxy.log.append(("GET", self.path, 410))  # a 410 Gone sent as a watch event
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException):
            self.close_connection = True
        finally:
            with proxy.lock:
                proxy.watches.pop(self.connection, None)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _forward
