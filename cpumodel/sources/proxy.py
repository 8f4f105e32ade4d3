"""Which proxy a request to the API server goes through, as kubectl decides it.

A cluster's `proxy-url` wins. Otherwise Go's net/http ProxyFromEnvironment
(golang.org/x/net/http/httpproxy): HTTPS_PROXY for https servers, HTTP_PROXY for http
ones (upper case first, then lower case), nothing for localhost and loopback addresses,
and nothing for hosts NO_PROXY names (`*`, IP addresses, CIDR ranges, domain names that
also match their subdomains, each optionally with a port).
"""
from __future__ import annotations

import ipaddress
from typing import Mapping, Optional
from urllib.parse import urlsplit

from cpumodel.errors import SourceError

SUPPORTED_SCHEMES = ("http", "https")


def _env(env: Mapping[str, str], name: str) -> str:
    return env.get(name.upper()) or env.get(name.lower()) or ""


def _checked(url: str, where: str) -> str:
    if "://" not in url:
        url = "http://" + url  # Go treats a bare host:port as an http proxy
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise SourceError("%s %s: the %s proxy scheme is not supported (use an http:// or https:// proxy)"
                          % (where, url, scheme))
    return url


def _host_port(server: str):
    parts = urlsplit(server)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return (parts.hostname or "").lower(), port


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _excluded(host: str, port: int, no_proxy: str) -> bool:
    for entry in (e.strip().lower() for e in no_proxy.split(",")):
        if not entry:
            continue
        if entry == "*":
            return True
        try:
            if ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False):
                return True
            continue
        except ValueError:
            pass
        name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
        if entry_port and entry_port != str(port):
            continue
        name = name.lstrip("*")
        if host == name.lstrip(".") or (name and host.endswith(name if name.startswith(".") else "." + name)):
            return True
    return False


def proxy_for(server: str, proxy_url: Optional[str], env: Mapping[str, str]) -> Optional[str]:
    if proxy_url:
        return _checked(proxy_url, "kubeconfig proxy-url")
    host, port = _host_port(server)
    variable = "HTTPS_PROXY" if server.lower().startswith("https://") else "HTTP_PROXY"
    chosen = _env(env, variable)
    if not chosen or _is_loopback(host) or _excluded(host, port, _env(env, "NO_PROXY")):
        return None
    return _checked(chosen, variable)
