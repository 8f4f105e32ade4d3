"""A small forwarding HTTP proxy for tests: plain `GET http://host/...` requests and `CONNECT host:port` tunnels.

Every host name is mapped to 127.0.0.1 (tests use names such as `kube.test` so that the
client does not skip the proxy for a loopback address, as Go's and our proxy rules do),
and each request is logged as (method, target). Stdlib only; loopback only.
"""
from __future__ import annotations

import select
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Tuple
from urllib.parse import urlsplit


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    log: List[Tuple[str, str]]

    def log_message(self, *args) -> None:
        pass

    def do_CONNECT(self) -> None:
        self.log.append(("CONNECT", self.path))
        _, _, port = self.path.rpartition(":")
        upstream = socket.create_connection(("127.0.0.1", int(port)))
        self.send_response(200, "Connection established")
        self.end_headers()
        self._pipe(self.connection, upstream)

    def _forward(self) -> None:
        self.log.append((self.command, self.path))
        target = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        upstream = socket.create_connection(("127.0.0.1", target.port or 80))
        path = target.path + ("?" + target.query if target.query else "")
        head = "%s %s HTTP/1.1\r\n" % (self.command, path)
        head += "".join("%s: %s\r\n" % (k, v) for k, v in self.headers.items() if k.lower() != "proxy-connection")
        upstream.sendall(head.encode() + b"\r\n" + body)
        self.close_connection = True
        self._pipe(self.connection, upstream)

    do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = _forward

    @staticmethod
    def _pipe(client: socket.socket, upstream: socket.socket) -> None:
        sockets = [client, upstream]
        try:
            while True:
                readable, _, _ = select.select(sockets, [], [], 10)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()


def serve_proxy() -> Tuple[ThreadingHTTPServer, str, List[Tuple[str, str]]]:
    """A running proxy on 127.0.0.1: (server, its URL, the log of what it forwarded)."""
    log: List[Tuple[str, str]] = []
    handler = type("BoundProxyHandler", (ProxyHandler,), {"log": log})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server, "http://127.0.0.1:%d" % server.server_address[1], log
