"""Find the cluster to talk to, the way kubectl does (client-go clientcmd loader rules).

The Python client merges KUBECONFIG differently from kubectl (its last file's
current-context wins, docs/kubevirt-rules.md §7), so we merge the files
ourselves -- first file to set a name or current-context wins -- and hand the
client one explicit context.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from cpumodel.errors import SourceError

IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

# Fields holding file paths, resolved against the directory of the file that defined them.
_PATH_FIELDS = {"clusters": ("cluster", ("certificate-authority",)),
                "users": ("user", ("client-certificate", "client-key", "tokenFile"))}


@dataclass(frozen=True)
class KubeconfigChoice:
    """The merged kubeconfig and the context to use; `in_cluster` when there is no file."""

    config: Optional[Dict[str, Any]]
    context: Optional[str]
    namespace: str
    server: str
    in_cluster: bool = False


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
    except (OSError, yaml.YAMLError) as exc:
        raise SourceError("kubeconfig %s: cannot be read: %s" % (path, str(exc).splitlines()[0]))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SourceError("kubeconfig %s: not a kubeconfig (expected a mapping)" % path)
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
                name = entry.get("name") if isinstance(entry, dict) else None
                if name and name not in seen[section]:
                    seen[section].add(name)
                    merged[section].append(_absolutise(entry, section, base))
        if not merged["current-context"] and data.get("current-context"):
            merged["current-context"] = data["current-context"]
    return merged


def _named(config: Dict[str, Any], section: str, name: str) -> Optional[Dict[str, Any]]:
    return next((e for e in config.get(section) or [] if e.get("name") == name), None)


def choose(explicit: Optional[str], context: Optional[str], env: Mapping[str, str]) -> KubeconfigChoice:
    paths = kubeconfig_paths(explicit, env)
    if not paths:
        if env.get("KUBERNETES_SERVICE_HOST"):
            return KubeconfigChoice(None, None, _in_cluster_namespace(),
                                    "https://%s:%s" % (env["KUBERNETES_SERVICE_HOST"],
                                                       env.get("KUBERNETES_SERVICE_PORT", "443")), True)
        raise SourceError("no kubeconfig found: pass --kubeconfig, set KUBECONFIG or create ~/.kube/config "
                          "(or use -f to read a snapshot)")
    config = merge_kubeconfigs(paths)
    name = context or config.get("current-context")
    if not name:
        raise SourceError("no current context in %s: pass --context NAME" % ":".join(paths))
    ctx = _named(config, "contexts", name)
    if ctx is None:
        raise SourceError('context "%s" not found in %s' % (name, ":".join(paths)))
    details = ctx.get("context") or {}
    cluster = _named(config, "clusters", details.get("cluster", "")) or {}
    server = (cluster.get("cluster") or {}).get("server", "")
    if not server:
        raise SourceError('context "%s": cluster "%s" has no server in %s' % (name, details.get("cluster", ""),
                                                                               ":".join(paths)))
    return KubeconfigChoice(config, name, details.get("namespace") or "default", server)


def _in_cluster_namespace() -> str:
    try:
        with open(IN_CLUSTER_NAMESPACE, encoding="utf-8") as fh:
            return fh.read().strip() or "default"
    except OSError:
        return "default"
