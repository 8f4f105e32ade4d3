"""Find the cluster and credentials to use, the way kubectl does (client-go clientcmd; kubevirt-rules §7).

The Python client merges KUBECONFIG differently from kubectl (its last file's
current-context wins), so we merge the files ourselves -- first file to set a name or
current-context wins -- and apply kubectl's connection flags on top: `--cluster`,
`--user`, `-s`, `--token`, `--certificate-authority`, `--client-certificate`,
`--client-key`, `--insecure-skip-tls-verify`, `--tls-server-name`, `--as`, `--as-group`,
`--as-uid`. The result is one `Access`: everything a request needs, credentials resolved.
"""
from __future__ import annotations

import base64
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional, Tuple

from cpumodel.errors import SourceError
from cpumodel.sources import credentials as creds
from cpumodel.sources.proxy import proxy_for

SERVICE_ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
FILE_DIR = "_file_dir"  # where the kubeconfig that defined an entry lives (our own key, never sent anywhere)

# Fields holding file paths, resolved against the directory of the file that defined them.
_PATH_FIELDS = {"clusters": ("cluster", ("certificate-authority",)),
                "users": ("user", ("client-certificate", "client-key", "tokenFile"))}


@dataclass(frozen=True)
class ConnectionFlags:
    kubeconfig: Optional[str] = None
    context: Optional[str] = None
    cluster: Optional[str] = None
    user: Optional[str] = None
    server: Optional[str] = None
    token: Optional[str] = field(default=None, repr=False)
    certificate_authority: Optional[str] = None
    client_certificate: Optional[str] = None
    client_key: Optional[str] = None
    insecure_skip_tls_verify: Optional[bool] = None
    tls_server_name: Optional[str] = None
    as_user: Optional[str] = None
    as_groups: Tuple[str, ...] = ()
    as_uid: Optional[str] = None


@dataclass(frozen=True)
class Access:
    """Where the API server is and how to authenticate: what every request needs."""

    server: str
    namespace: str
    ca_file: Optional[str] = None
    verify: bool = True
    tls_server_name: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None
    authorization: Optional[str] = field(default=None, repr=False)  # the Authorization header's value
    auth_provider: Optional[Tuple[Dict[str, Any], str]] = field(default=None, repr=False)  # (config, context)
    proxy: Optional[str] = None
    impersonate_user: Optional[str] = None
    impersonate_groups: Tuple[str, ...] = ()
    impersonate_uid: Optional[str] = None
    secrets: Tuple[str, ...] = field(default=(), repr=False)  # values no message may ever show
    # Where Go's system pool would look when the kubeconfig names no CA (SSL_CERT_FILE, SSL_CERT_DIR).
    ssl_cert_file: Optional[str] = None
    ssl_cert_dir: Optional[str] = None


def kubeconfig_paths(explicit: Optional[str], env: Mapping[str, str]) -> List[str]:
    if explicit:
        if not os.path.isfile(explicit):
            raise SourceError("kubeconfig %s: no such file" % explicit)
        return [explicit]
    if env.get("KUBECONFIG"):
        # Missing or empty entries are skipped silently, as client-go does.
        return [p for p in env["KUBECONFIG"].split(os.pathsep) if p and os.path.isfile(p)]
    home = env.get("HOME") or os.path.expanduser("~")
    default = os.path.join(home, ".kube", "config")
    return [default] if os.path.isfile(default) else []


def _read(path: str) -> Dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise SourceError("kubeconfig %s: cannot be read: %s" % (path, str(exc).splitlines()[0]))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SourceError("kubeconfig %s: not a kubeconfig (expected a mapping)" % path)
    for section in ("clusters", "users", "contexts"):
        entries = data.get(section)
        if entries is not None and (not isinstance(entries, list) or
                                    not all(isinstance(e, dict) and isinstance(e.get(section[:-1], {}), dict)
                                            for e in entries)):
            raise SourceError("kubeconfig %s: %s must be a list of named %s entries" % (path, section, section[:-1]))
    return data


def _absolutise(entry: Dict[str, Any], section: str, base: str) -> Dict[str, Any]:
    inner_key, fields = _PATH_FIELDS.get(section, (None, ()))
    inner = entry.get(inner_key) if inner_key else None
    if not isinstance(inner, dict):
        return entry
    inner = dict(inner)
    for f in fields:
        if isinstance(inner.get(f), str) and inner[f] and not os.path.isabs(inner[f]):
            inner[f] = os.path.join(base, inner[f])
    inner[FILE_DIR] = base
    return dict(entry, **{inner_key: inner})


def merge_kubeconfigs(paths: List[str]) -> Dict[str, Any]:
    merged: Dict[str, Any] = {"apiVersion": "v1", "kind": "Config", "clusters": [], "users": [],
                              "contexts": [], "current-context": ""}
    seen: Dict[str, set] = {"clusters": set(), "users": set(), "contexts": set()}
    for path in paths:
        data = _read(path)
        base = os.path.dirname(os.path.abspath(path))
        for section in ("clusters", "users", "contexts"):
            for entry in data.get(section) or []:
                name = entry.get("name")
                if isinstance(name, str) and name and name not in seen[section]:
                    seen[section].add(name)
                    merged[section].append(_absolutise(entry, section, base))
        if not merged["current-context"] and isinstance(data.get("current-context"), str):
            merged["current-context"] = data["current-context"]
    return merged


def _named(config: Dict[str, Any], section: str, name: str) -> Optional[Dict[str, Any]]:
    entry = next((e for e in config.get(section) or [] if e.get("name") == name), None)
    return None if entry is None else dict(entry.get(section[:-1]) or {})


def _text(value: Any, what: str) -> Optional[str]:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise SourceError("kubeconfig: %s must be a string" % what)
    return value


def connect(flags: ConnectionFlags, env: Mapping[str, str], namespace: Optional[str] = None) -> Access:
    """The Access for these flags: kubeconfig files, else -s/--server alone, else the in-cluster service account."""
    paths = kubeconfig_paths(flags.kubeconfig, env)
    if not paths:
        if flags.server:
            return _access(flags, {}, {}, {"apiVersion": "v1"}, None, "default", env)
        if env.get("KUBERNETES_SERVICE_HOST"):
            return _in_cluster(flags, env)
        raise SourceError("no kubeconfig found: pass --kubeconfig, set KUBECONFIG or create ~/.kube/config "
                          "(or use -f to read a snapshot, or -s to name a server)")
    config = merge_kubeconfigs(paths)
    where = ":".join(paths)
    name = flags.context or config.get("current-context")
    context: Dict[str, Any] = {}
    if name:
        found = _named(config, "contexts", name)
        if found is None:
            raise SourceError('context "%s" not found in %s' % (name, where))
        context = found
    elif not flags.server:
        raise SourceError("no current context in %s: pass --context NAME" % where)
    cluster_name = flags.cluster or context.get("cluster") or ""
    cluster = _named(config, "clusters", cluster_name) or {}
    if flags.cluster and not cluster:
        raise SourceError('cluster "%s" not found in %s' % (flags.cluster, where))
    user_name = flags.user or context.get("user") or ""
    user = _named(config, "users", user_name) or {}
    if flags.user and not user:
        raise SourceError('user "%s" not found in %s' % (flags.user, where))
    if not (flags.server or cluster.get("server")):
        raise SourceError('context "%s": cluster "%s" has no server in %s' % (name, cluster_name, where))
    ns = _text(context.get("namespace"), "context namespace") or "default"
    return _access(flags, cluster, user, config, name, ns, env)


def without_userinfo(url: str) -> Tuple[str, Optional[Tuple[str, str]]]:
    """`scheme://user:password@host/path` -> (`scheme://host/path`, (user, password)): the URL every message
    and log line may show, and the credentials it carried."""
    from urllib.parse import unquote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    name, _, password = userinfo.partition(":")
    return urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment)), (unquote(name),
                                                                                           unquote(password))


def _access(flags: ConnectionFlags, cluster: Dict[str, Any], user: Dict[str, Any], config: Dict[str, Any],
            context: Optional[str], namespace: str, env: Mapping[str, str]) -> Access:
    server = (flags.server or _text(cluster.get("server"), "cluster server") or "").rstrip("/")
    if "://" not in server:
        server = "https://" + server  # client-go's default scheme
    # User-info in the server URL never reaches a log line or a message; as Go's net/http does, it becomes
    # basic auth when no other credential sets the Authorization header.
    server, url_credentials = without_userinfo(server)
    insecure = flags.insecure_skip_tls_verify
    if insecure is None:
        insecure = bool(cluster.get("insecure-skip-tls-verify"))
    ca_file = _ca_file(flags, cluster)
    tls_name = flags.tls_server_name or _text(cluster.get("tls-server-name"), "tls-server-name")
    proxy = proxy_for(server, _text(cluster.get("proxy-url"), "proxy-url"), env)
    cert, key, authorization, provider, secrets = _user_credentials(flags, user, cluster, server, config, context, env)
    if url_credentials and authorization is None and provider is None:
        pair = "%s:%s" % url_credentials
        authorization = "Basic " + base64.b64encode(pair.encode()).decode()
        secrets = tuple(secrets) + tuple(x for x in url_credentials[1:] if x)
    return Access(server, namespace, ca_file, not insecure, tls_name, cert, key, authorization, provider, proxy,
                  flags.as_user, tuple(flags.as_groups), flags.as_uid, secrets,
                  env.get("SSL_CERT_FILE") or None, env.get("SSL_CERT_DIR") or None)


def _ca_file(flags: ConnectionFlags, cluster: Dict[str, Any]) -> Optional[str]:
    if flags.certificate_authority:
        if not os.path.isfile(flags.certificate_authority):
            raise SourceError("--certificate-authority %s: no such file" % flags.certificate_authority)
        return flags.certificate_authority
    data = cluster.get("certificate-authority-data")
    if data:
        return creds.memory_file(creds.decoded(data, "certificate-authority-data"), "ca.crt")
    return _text(cluster.get("certificate-authority"), "certificate-authority")


def _pem(flag: Optional[str], user: Dict[str, Any], key: str, name: str) -> Optional[str]:
    """A client certificate or key: the flag's file, else the kubeconfig's data (in memory), else its file."""
    if flag:
        if not os.path.isfile(flag):
            raise SourceError("--%s %s: no such file" % (key, flag))
        return flag
    data = user.get(key + "-data")
    if data:
        return creds.memory_file(creds.decoded(data, key + "-data"), name)
    return _text(user.get(key), key)


def _user_credentials(flags, user, cluster, server, config, context, env):
    cert = _pem(flags.client_certificate, user, "client-certificate", "client.crt")
    key = _pem(flags.client_key, user, "client-key", "client.key")
    token = creds.trimmed_token(flags.token) or creds.trimmed_token(user.get("token"))
    if token is None and user.get("tokenFile"):
        token = creds.read_token_file(str(user["tokenFile"]))
    provider = None
    if token is None and user.get("exec"):
        status = creds.run_exec_plugin(user["exec"], user.get(FILE_DIR) or os.getcwd(), env,
                                       _cluster_info(server, cluster))
        token = status.get("token")
        if token is None:  # the plugin gave a client certificate instead
            cert = creds.memory_file(str(status["clientCertificateData"]).encode(), "exec-client.crt")
            key = creds.memory_file(str(status["clientKeyData"]).encode(), "exec-client.key")
    elif token is None and user.get("auth-provider"):
        provider = (config, context)  # OIDC and friends: the kubernetes client's loader refreshes them
    authorization, secrets = None, ()
    if token:
        authorization, secrets = "Bearer " + token, (token,)
    elif user.get("username") is not None and user.get("password") is not None:
        pair = "%s:%s" % (user["username"], user["password"])
        authorization, secrets = "Basic " + base64.b64encode(pair.encode()).decode(), (str(user["password"]),)
    if (cert is None) != (key is None):
        raise SourceError("kubeconfig: a client certificate needs its key, and a key its certificate")
    return cert, key, authorization, provider, secrets


def _cluster_info(server: str, cluster: Dict[str, Any]) -> Dict[str, Any]:
    """The Cluster object of KUBERNETES_EXEC_INFO (provideClusterInfo)."""
    info: Dict[str, Any] = {"server": server}
    for key in ("tls-server-name", "insecure-skip-tls-verify", "certificate-authority-data", "proxy-url",
                "disable-compression"):
        if cluster.get(key) not in (None, ""):
            info[key] = cluster[key]
    exec_extension = next((e.get("extension") for e in cluster.get("extensions") or ()
                           if isinstance(e, dict) and e.get("name") == "client.authentication.k8s.io/exec"), None)
    if exec_extension is not None:
        info["config"] = exec_extension
    return info


def _in_cluster(flags: ConnectionFlags, env: Mapping[str, str]) -> Access:
    """The pod's service account (client-go rest.InClusterConfig)."""
    token_path, ca_path = os.path.join(SERVICE_ACCOUNT, "token"), os.path.join(SERVICE_ACCOUNT, "ca.crt")
    try:
        token = creds.read_token_file(token_path)
    except SourceError as exc:
        raise SourceError("no kubeconfig, and the in-cluster service account is not usable: %s"
                          % str(exc).replace("getting credentials: ", ""))
    host = env["KUBERNETES_SERVICE_HOST"]
    server = "https://%s:%s" % ("[%s]" % host if ":" in host else host, env.get("KUBERNETES_SERVICE_PORT", "443"))
    return Access(server, _in_cluster_namespace(), ca_path if os.path.isfile(ca_path) else None, True, None,
                  None, None, "Bearer " + token, None, proxy_for(server, None, env), flags.as_user,
                  tuple(flags.as_groups), flags.as_uid, (token,))


def _in_cluster_namespace() -> str:
    try:
        with open(os.path.join(SERVICE_ACCOUNT, "namespace"), encoding="utf-8") as fh:
            return fh.read().strip() or "default"
    except OSError:
        return "default"
