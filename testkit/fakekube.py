"""A small fake kube-apiserver for tests: real HTTP on 127.0.0.1, behaving like the real one.

Legacy discovery, list/get with label and field selectors, metadata-only lists
(PartialObjectMetadataList), paging with `limit`/`continue` (and expired tokens:
410), gzip, merge / JSON / strategic-merge patch (415 for custom resources),
`dryRun=All`, resourceVersion conflicts (409), Status errors, injected faults
and delays, the VM restart subresource, and a log of every request.
Label and field selectors use cpumodel.core.api_selectors, the offline source's own
implementation. Standalone: `python -m testkit.fakekube --port N FILE...` prints `READY <url>`.
"""
from __future__ import annotations

import base64
import copy
import gzip
import itertools
import json
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qs, urlsplit

from cpumodel.core.api_selectors import (FieldRequirement, LabelRequirement, fields_match, matches,
                                         parse_field_selector, parse_selector)
from cpumodel.core.plan import merge_patch
from cpumodel.errors import UsageError

# (group, version, plural) -> kind, namespaced, shortNames
RESOURCES = {
    ("", "v1", "nodes"): ("Node", False, ["no"]),
    ("", "v1", "namespaces"): ("Namespace", False, ["ns"]),
    ("", "v1", "pods"): ("Pod", True, ["po"]),
    ("", "v1", "events"): ("Event", True, ["ev"]),
    ("events.k8s.io", "v1", "events"): ("Event", True, ["ev"]),
    ("", "v1", "configmaps"): ("ConfigMap", True, ["cm"]),
    ("kubevirt.io", "v1", "virtualmachines"): ("VirtualMachine", True, ["vm", "vms"]),
    ("kubevirt.io", "v1", "virtualmachineinstances"): ("VirtualMachineInstance", True, ["vmi", "vmis"]),
    ("kubevirt.io", "v1", "virtualmachineinstancemigrations"): ("VirtualMachineInstanceMigration", True, ["vmim"]),
    ("kubevirt.io", "v1", "kubevirts"): ("KubeVirt", True, ["kv"]),
    ("management.cattle.io", "v3", "managedcharts"): ("ManagedChart", True, []),
    ("instancetype.kubevirt.io", "v1beta1", "virtualmachineinstancetypes"): ("VirtualMachineInstancetype", True,
                                                                             ["vmit"]),
    ("instancetype.kubevirt.io", "v1beta1", "virtualmachineclusterinstancetypes"):
        ("VirtualMachineClusterInstancetype", False, ["vmcit"]),
    ("instancetype.kubevirt.io", "v1beta1", "virtualmachinepreferences"): ("VirtualMachinePreference", True,
                                                                           ["vmpref"]),
    ("instancetype.kubevirt.io", "v1beta1", "virtualmachineclusterpreferences"):
        ("VirtualMachineClusterPreference", False, ["vmcpref"]),
    ("apps", "v1", "controllerrevisions"): ("ControllerRevision", True, []),
    ("hco.kubevirt.io", "v1beta1", "hyperconvergeds"): ("HyperConverged", True, ["hco", "hcos"]),
}
# Resources with a status subresource (KubeVirt's CRDs: VM, VMIM and KubeVirt, not VMI; crds.go).
STATUS_SUBRESOURCE = {"nodes", "pods", "virtualmachines", "virtualmachineinstancemigrations", "kubevirts",
                      "hyperconvergeds", "managedcharts"}
VERBS = ["get", "list", "patch", "update", "watch", "create", "delete"]
PATH = re.compile(r"^/(?:api/(?P<cv>v1)|apis/(?P<g>[^/]+)/(?P<v>[^/]+))"
                  r"(?:/namespaces/(?P<ns>[^/]+)(?=/))?(?:/(?P<plural>[^/]+))?(?:/(?P<name>[^/]+))?(?:/(?P<sub>[^/]+))?$")
# Field selectors each resource supports on kube-apiserver (its registry's field sets); custom resources
# without `selectableFields` (KubeVirt declares none) support only metadata.name and metadata.namespace.
META_FIELDS = frozenset({"metadata.name", "metadata.namespace"})
FIELD_KEYS = {
    ("", "nodes"): META_FIELDS | {"spec.unschedulable"},
    ("", "pods"): META_FIELDS | {"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                                 "spec.serviceAccountName", "status.phase", "status.podIP", "status.nominatedNodeName"},
    ("", "events"): META_FIELDS | {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                                   "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
                                   "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"},
    ("events.k8s.io", "events"): META_FIELDS | {"regarding.kind", "regarding.namespace", "regarding.name",
                                                "regarding.uid", "regarding.apiVersion", "regarding.resourceVersion",
                                                "regarding.fieldPath", "reason", "reportingController", "type"},
}


class ApiStatus(Exception):
    def __init__(self, code: int, reason: str, message: str, details: Optional[dict] = None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details or {}

    def body(self) -> dict:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": self.message,
                "reason": self.reason, "details": self.details, "code": self.code}


def _label_selector(text: str) -> List[LabelRequirement]:
    try:
        return parse_selector(text)
    except UsageError as exc:
        raise ApiStatus(400, "BadRequest", "unable to parse requirement: %s" % exc)


def _field_selector(text: str, group: str = "", plural: str = "") -> List[FieldRequirement]:
    try:
        reqs = parse_field_selector(text)
    except UsageError as exc:
        raise ApiStatus(400, "BadRequest", "invalid field selector: %s" % exc)
    supported = FIELD_KEYS.get((group, plural), META_FIELDS)
    unsupported = [r.path for r in reqs if r.path not in supported]
    if unsupported:
        raise ApiStatus(400, "BadRequest", "field label not supported: %s" % unsupported[0])
    return reqs


def _pointer(path: str) -> List[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise ApiStatus(400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(doc)
    for op in ops:
        parts = _pointer(op.get("path", ""))
        parent = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.get(p)
            if parent is None:
                raise ApiStatus(422, "Invalid", "the server rejected our request: missing path %s" % op.get("path"))
        last = parts[-1]
        kind = op.get("op")
        if kind == "test":
            if parent.get(last) != op.get("value"):
                raise ApiStatus(422, "Invalid", "the server rejected our request: testing value %s failed" % op["path"])
        elif kind in ("add", "replace"):
            parent[last] = op.get("value")
        elif kind == "remove":
            if last not in parent:
                raise ApiStatus(422, "Invalid", "the server rejected our request: cannot remove missing %s" % op["path"])
            del parent[last]
        else:
            raise ApiStatus(422, "Invalid", "unsupported op %s" % kind)
    return doc


class Stream:
    """A response written as it is produced: a watch."""

    def __init__(self, lines):
        self.lines = lines


class Raw(bytes):
    """An already-encoded JSON response body."""


def _raw_list(kind: str, api_version: str, meta: dict, encoded_items: List[bytes]) -> Raw:
    head = json.dumps({"kind": kind, "apiVersion": api_version, "metadata": meta})[:-1].encode()
    return Raw(head + b', "items": [' + b", ".join(encoded_items) + b"]}")


class FakeKube:
    """The API state and behaviour; `serve()` puts it on an HTTP port."""

    def __init__(self, objects: Optional[List[dict]] = None, gzip_enabled: bool = True, metadata_lists: bool = True,
                 without_groups: Tuple[str, ...] = (), versions: Optional[Dict[str, str]] = None):
        """`without_groups`: API groups this server does not serve (a cluster without KubeVirt, say);
        objects of those groups are dropped. `versions`: group -> the one version served instead of the
        default (say hco.kubevirt.io at v1); objects are stored and served as given."""
        versions = versions or {}
        self.resources = {(g, versions.get(g, v), p): kind for (g, v, p), kind in RESOURCES.items()
                          if g not in without_groups}
        self.kind_to_resource = {(g, kind): (g, v, p) for (g, v, p), (kind, _, _) in self.resources.items()}
        self.lock = threading.RLock()
        self.store: Dict[Tuple[str, str, str, str, str], dict] = {}
        self.rv = itertools.count(1000)
        self.requests: List[dict] = []
        self.faults: List[dict] = []
        self.gzip_enabled = gzip_enabled
        self.metadata_lists = metadata_lists
        self.tables = True  # server-side printing (Table) for node lists, as kube-apiserver does
        self._encode_cache: Dict[tuple, bytes] = {}
        self._by_type: Dict[tuple, tuple] = {}
        self._writes = 0  # bumped by every stored change, so cached listings go stale
        self.expire_continue = 0  # answer the next N continue tokens with 410 Gone
        self.last_rv = 999
        # Benchmarks only: keep each encoded (and gzipped) GET response until the store changes, as a
        # server written in Go would spend next to nothing there; the client work is what is measured.
        self.cache_responses = False
        self._responses: Dict[tuple, tuple] = {}
        self.on_patch = None  # hook(obj) run before a patch is applied: tests simulate a concurrent writer
        # Watches: every stored change, in order, as kube-apiserver's watch cache keeps them; `compact()` forgets
        # them (a watch from an older resourceVersion then meets 410 Gone), `drop_watches()` breaks running ones.
        self.changes: List[Tuple[int, str, tuple, dict, Optional[dict]]] = []
        self.oldest_rv = 0
        self.changed = threading.Condition(self.lock)
        self.watch_epoch = 0
        self.bookmark_interval = 1.0
        self.max_watch_seconds: Optional[float] = None  # end watches sooner than asked (as a proxy might)
        # Serve under a path, as Rancher's proxy serves a downstream (e.g. Harvester) cluster at /k8s/clusters/<id>.
        self.path_prefix = ""
        for obj in objects or []:
            if obj["apiVersion"].rpartition("/")[0] not in without_groups:
                self.add(obj)
        self.compact()  # the watch cache starts now, as a server's starts when it does

    # ---- state ------------------------------------------------------------------
    def add(self, obj: dict, copy_object: bool = True) -> dict:
        obj = copy.deepcopy(obj) if copy_object else obj
        group, _, version = obj["apiVersion"].rpartition("/")
        g, v, plural = self.kind_to_resource[(group, obj["kind"])]
        meta = obj.setdefault("metadata", {})
        meta.setdefault("uid", "uid-%s" % meta["name"])
        meta.setdefault("creationTimestamp", "2026-01-01T00:00:00Z")
        meta["resourceVersion"] = self._next_rv()
        namespaced = self.resources[(g, v, plural)][1]
        ns = meta.setdefault("namespace", "default") if namespaced else ""
        with self.lock:
            self._store((g, v, plural, ns, meta["name"]), obj)
        return obj

    def _store(self, key: tuple, obj: Optional[dict]) -> None:
        """Store (or with None, delete) one object, and record the change for watches."""
        with self.lock:
            old = self.store.get(key)
            if obj is None:
                gone = copy.deepcopy(old)
                gone["metadata"]["resourceVersion"] = self._next_rv()
                del self.store[key]
                self.changes.append((int(gone["metadata"]["resourceVersion"]), "DELETED", key, gone, old))
            else:
                self.store[key] = obj
                self.changes.append((int(obj["metadata"]["resourceVersion"]), "MODIFIED" if old else "ADDED", key,
                                     obj, old))
            self._writes += 1
            self.changed.notify_all()

    def delete(self, group: str, plural: str, namespace: str, name: str) -> None:
        with self.lock:
            key = next((k for k in self.store if (k[0], k[2], k[3], k[4]) == (group, plural, namespace, name)), None)
            if key is None:
                raise KeyError(name)
            self._store(key, None)

    def compact(self) -> None:
        """Forget the changes so far, as etcd compaction and a full watch cache do: a watch from an earlier
        resourceVersion meets 410 Gone."""
        with self.lock:
            self.changes = []
            self.oldest_rv = self.last_rv

    def drop_watches(self) -> None:
        """Break the connection of every running watch."""
        with self.lock:
            self.watch_epoch += 1
            self.changed.notify_all()

    def _next_rv(self) -> str:
        self.last_rv = next(self.rv)
        return str(self.last_rv)

    def get_object(self, group: str, plural: str, namespace: str, name: str) -> Optional[dict]:
        with self.lock:
            for (g, _, p, ns, n), obj in self.store.items():
                if (g, p, ns, n) == (group, plural, namespace, name):
                    return copy.deepcopy(obj)
        return None

    def fault(self, method: str = ".*", path: str = ".*", status: Optional[int] = None, reason: str = "",
              message: str = "", delay: float = 0.0, times: int = 1, headers: Optional[dict] = None,
              trickle: float = 0.0, skip: int = 0, query: str = "", body: Optional[bytes] = None) -> None:
        """After `skip` matching requests, the next `times` ones sleep `delay`, then answer `status` (if set),
        or 200 with the raw `body`; with `trickle`, the response body dribbles out over that many seconds.
        `query` must occur in the query string (e.g. `dryRun`) for a request to match; `!dryRun`: not occur."""
        self.faults.append({"method": method, "path": path, "status": status, "reason": reason, "message": message,
                            "delay": delay, "times": times, "headers": headers or {}, "trickle": trickle,
                            "skip": skip, "query": query, "body": body})

    # ---- discovery ------------------------------------------------------------------
    def discovery(self, group: str, version: str) -> dict:
        resources = []
        for (g, v, plural), (kind, namespaced, short) in sorted(self.resources.items()):
            if (g, v) == (group, version):
                resources.append({"name": plural, "singularName": kind.lower(), "namespaced": namespaced,
                                  "kind": kind, "verbs": VERBS, "shortNames": short, "categories": []})
        if not resources:
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": "%s/%s" % (group, version) if group else version, "resources": resources}

    def groups(self) -> dict:
        names = sorted({g for g, _, _ in self.resources if g})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [self._group(g) for g in names]}

    def _group(self, name: str) -> dict:
        """An APIGroup as kube-apiserver serves it at /apis/<group>: one version per group here."""
        versions = sorted({v for g, v, _ in self.resources if g == name})
        if not versions:
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        entries = [{"groupVersion": "%s/%s" % (name, v), "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": entries,
                "preferredVersion": entries[0]}

    # ---- requests ------------------------------------------------------------------------
    def handle(self, method: str, path: str, query: Dict[str, str], headers: Dict[str, str], body: bytes):
        """Return (status, payload dict, extra headers)."""
        trickle = self._apply_faults(method, path, query)
        if isinstance(trickle, Raw):
            return 200, trickle, {}
        if trickle:
            return self._trickled(trickle, self.handle(method, path, query, headers, body))
        if path == "/version":
            return 200, {"major": "1", "minor": "29", "gitVersion": "v1.29.9", "platform": "linux/amd64"}, {}
        if path == "/api":
            return 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}, {}
        if path == "/apis":
            return 200, self.groups(), {}
        if path.count("/") == 2 and path.startswith("/apis/"):
            return 200, self._group(path[len("/apis/"):]), {}
        m = PATH.match(path)
        if not m:
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        group = m.group("g") or ""
        version = m.group("cv") or m.group("v")
        plural, name, ns, sub = m.group("plural"), m.group("name"), m.group("ns"), m.group("sub")
        if plural is None:
            return 200, self.discovery(group, version), {}
        if group == "subresources.kubevirt.io" and sub == "restart" and method == "PUT":
            return 202, self._restart(ns or "", plural, name), {}
        key = (group, version, plural)
        if key not in self.resources or (sub and not (sub == "status" and plural in STATUS_SUBRESOURCE and name)):
            raise ApiStatus(404, "NotFound", "the server could not find the requested resource")
        kind, namespaced, _ = self.resources[key]
        if name is None:
            if method == "POST":
                return 201, self._create(key, kind, namespaced, ns, body), {}
            if method != "GET":
                raise ApiStatus(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")
            if query.get("watch") in ("1", "true"):
                return 200, self._watch(key, kind, namespaced, ns, query), {}
            return 200, self._list(key, kind, namespaced, ns, query, headers), {}
        ns = (ns or "") if namespaced else ""
        if method == "GET":
            return 200, self._get(key, ns, name), {}
        if method == "PATCH":
            return 200, self._patch(key, ns, name, query, headers, body, sub), {}
        if method == "DELETE" and not sub:
            with self.lock:
                found = self.store.get(key + (ns, name))
                if found is None:
                    raise self._not_found(key, name)
                self._store(key + (ns, name), None)
            return 200, {"kind": "Status", "apiVersion": "v1", "status": "Success",
                         "details": {"name": name, "kind": key[2], "uid": found["metadata"].get("uid")}}, {}
        raise ApiStatus(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    @staticmethod
    def _query_matches(rule: dict, query: Dict[str, str]) -> bool:
        wanted = rule["query"]
        if not wanted:
            return True
        return (wanted[1:] not in query) if wanted.startswith("!") else (wanted in query)

    def _apply_faults(self, method: str, path: str, query: Dict[str, str]):
        """Apply the first matching fault; returns how long the response body should trickle, or a raw body."""
        for rule in list(self.faults):
            if rule["times"] > 0 and re.fullmatch(rule["method"], method) and re.search(rule["path"], path) \
                    and self._query_matches(rule, query):
                if rule["skip"] > 0:
                    rule["skip"] -= 1
                    continue
                rule["times"] -= 1
                if rule["delay"]:
                    time.sleep(rule["delay"])
                if rule["status"]:
                    err = ApiStatus(rule["status"], rule["reason"] or "InternalError", rule["message"] or "injected")
                    err.headers = rule["headers"]  # type: ignore[attr-defined]
                    raise err
                if rule["body"] is not None:
                    return Raw(rule["body"])
                return rule["trickle"]
        return 0.0

    @staticmethod
    def _trickled(seconds: float, answer):
        status, payload, extra = answer
        return status, payload, dict(extra, **{"X-Fake-Trickle": str(seconds)})

    def _not_found(self, key, name: str) -> ApiStatus:
        group, _, plural = key
        what = "%s.%s" % (plural, group) if group else plural
        return ApiStatus(404, "NotFound", '%s "%s" not found' % (what, name),
                         {"name": name, "group": group, "kind": plural})

    def _get(self, key, ns: str, name: str) -> dict:
        with self.lock:
            obj = self.store.get(key + (ns, name))
            if obj is None:
                raise self._not_found(key, name)
            return copy.deepcopy(obj)

    def _list(self, key, kind: str, namespaced: bool, ns: Optional[str], query: Dict[str, str],
              headers: Dict[str, str]) -> "Raw":
        with self.lock:
            # Stored objects are replaced, never edited, so lists can share them (and their encodings).
            items = [o for ons, o in self._sorted(key) if not namespaced or ns is None or ons == ns]
            list_rv = str(self.last_rv)  # a read returns the store's revision; it does not advance it
        if query.get("labelSelector"):
            reqs = _label_selector(query["labelSelector"])
            items = [o for o in items if matches(reqs, o["metadata"].get("labels") or {})]
        if query.get("fieldSelector"):
            field_reqs = _field_selector(query["fieldSelector"], key[0], key[2])
            items = [o for o in items if fields_match(field_reqs, o)]
        start = 0
        if query.get("continue"):
            if self.expire_continue > 0:
                self.expire_continue -= 1
                raise ApiStatus(410, "Expired", "The provided continue parameter is too old to display a consistent "
                                                "list result. You can start a new list without the continue parameter.")
            start = int(base64.b64decode(query["continue"]).decode())
        limit = int(query.get("limit") or 0)
        end = start + limit if limit else len(items)
        page, more = items[start:end], end < len(items)
        meta = {"resourceVersion": list_rv}
        if more:
            meta["continue"] = base64.b64encode(str(end).encode()).decode()
        accept = headers.get("accept", "")
        wants_json = "application/json" in re.sub(r"application/json;[^,]*", "", accept) or not accept
        if "as=Table" in accept and key == ("", "v1", "nodes") and self.tables:
            return self._table(page, meta, query.get("includeObject") or "Metadata")
        if "as=PartialObjectMetadataList" in accept and self.metadata_lists:
            return _raw_list("PartialObjectMetadataList", "meta.k8s.io/v1", meta,
                             [self._encoded(o, "metadata") for o in page])
        if ("as=PartialObjectMetadataList" in accept or "as=Table" in accept) and not wants_json:
            raise ApiStatus(406, "NotAcceptable", "only the following media types are accepted: application/json")
        group = key[0]
        return _raw_list(kind + "List", "%s/%s" % (group, key[1]) if group else key[1], meta,
                         [self._encoded(o, "full") for o in page])

    def _sorted(self, key) -> List[Tuple[str, dict]]:
        """(namespace, object) of one resource type in a stable order, kept until the store changes."""
        version = len(self.store), self._writes
        cached = self._by_type.get(key)
        if cached is None or cached[0] != version:
            rows = sorted(((ns, name), o) for (g, v, p, ns, name), o in self.store.items() if (g, v, p) == key)
            cached = self._by_type[key] = (version, [(ns, o) for (ns, _), o in rows])
        return cached[1]

    def _encoded(self, obj: dict, variant: str) -> bytes:
        cache_key = (id(obj), obj["metadata"].get("resourceVersion"), variant)
        cached = self._encode_cache.get(cache_key)
        if cached is None:
            body = obj if variant == "full" else {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                                                  "metadata": obj["metadata"]}
            cached = self._encode_cache[cache_key] = json.dumps(body).encode()
        return cached

    def _table(self, page: List[dict], meta: dict, include: str) -> "Raw":
        """kube-apiserver's server-side printing of nodes (kubectl's NAME/STATUS/... columns)."""
        columns = [{"name": n, "type": "string", "format": "name" if n == "Name" else "", "description": "",
                    "priority": 0} for n in ("Name", "Status", "Roles", "Age", "Version")]
        rows = []
        for o in page:
            ready = next((c.get("status") for c in (o.get("status") or {}).get("conditions") or []
                          if c.get("type") == "Ready"), None)
            status = {"True": "Ready", "False": "NotReady"}.get(ready, "Unknown")
            if (o.get("spec") or {}).get("unschedulable"):
                status += ",SchedulingDisabled"
            roles = ",".join(sorted(k.split("/", 1)[1] for k in o["metadata"].get("labels") or {}
                                    if k.startswith("node-role.kubernetes.io/"))) or "<none>"
            cells = [o["metadata"]["name"], status, roles, "1d",
                     ((o.get("status") or {}).get("nodeInfo") or {}).get("kubeletVersion", "")]
            obj = b"null" if include == "None" else self._encoded(o, "full" if include == "Object" else "metadata")
            rows.append(b'{"cells": ' + json.dumps(cells).encode() + b', "object": ' + obj + b"}")
        head = json.dumps({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                           "columnDefinitions": columns})[:-1].encode()
        return Raw(head + b', "rows": [' + b", ".join(rows) + b"]}")

    def _patch(self, key, ns: str, name: str, query: Dict[str, str], headers: Dict[str, str], body: bytes,
               sub: Optional[str] = None) -> dict:
        ctype = headers.get("content-type", "").split(";")[0].strip()
        with self.lock:
            current = self.store.get(key + (ns, name))
            if current is None:
                raise self._not_found(key, name)
            if self.on_patch:
                hook, self.on_patch = self.on_patch, None
                hook(current)
                stored = self.store.get(key + (ns, name))
                if stored is current:  # changed in place: a new version of it
                    current["metadata"]["resourceVersion"] = self._next_rv()
                    self._store(key + (ns, name), current)
                else:  # replaced (add): already a new version
                    current = stored
            try:
                patch = json.loads(body or b"null")
            except ValueError as exc:
                raise ApiStatus(400, "BadRequest", "error decoding patch: %s" % exc)
            if ctype == "application/merge-patch+json" or (ctype == "application/strategic-merge-patch+json" and not key[0]):
                if not isinstance(patch, dict):
                    raise ApiStatus(400, "BadRequest", "json: cannot unmarshal array into Go value of type map[string]interface {}")
                wanted_rv = (patch.get("metadata") or {}).get("resourceVersion")
                if wanted_rv and wanted_rv != current["metadata"]["resourceVersion"]:
                    what = "%s.%s" % (key[2], key[0]) if key[0] else key[2]
                    raise ApiStatus(409, "Conflict", 'Operation cannot be fulfilled on %s "%s": the object has been '
                                    "modified; please apply your changes to the latest version and try again" % (what, name))
                updated = copy.deepcopy(merge_patch(current, patch))  # RFC 7386, the plugin's own preview code
            elif ctype == "application/json-patch+json":
                updated = json_patch(current, patch)
            elif ctype == "application/strategic-merge-patch+json":
                raise ApiStatus(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                                "accepted media types include: application/json-patch+json, "
                                "application/merge-patch+json, application/apply-patch+yaml")
            else:
                raise ApiStatus(415, "UnsupportedMediaType", "unsupported patch type %s" % ctype)
            if key[2] in STATUS_SUBRESOURCE:
                # As kube-apiserver: where a status subresource exists, a write to the object keeps the old
                # status, and a write to /status changes nothing but the status.
                kept = updated if sub == "status" else current
                updated = copy.deepcopy(current if sub == "status" else updated)
                updated.pop("status", None)
                if "status" in kept:
                    updated["status"] = copy.deepcopy(kept["status"])
            updated["metadata"]["resourceVersion"] = self._next_rv()
            if query.get("dryRun") != "All":
                self._store(key + (ns, name), updated)
            return copy.deepcopy(updated)

    def _create(self, key, kind: str, namespaced: bool, ns: Optional[str], body: bytes) -> dict:
        """POST: as kube-apiserver, the server sets uid, resourceVersion and creationTimestamp; where a status
        subresource exists, the status sent is dropped (a pod starts Pending)."""
        try:
            obj = json.loads(body or b"null")
        except ValueError as exc:
            raise ApiStatus(400, "BadRequest", "error decoding: %s" % exc)
        if not isinstance(obj, dict) or not (obj.get("metadata") or {}).get("name"):
            raise ApiStatus(422, "Invalid", "%s is invalid: metadata.name: Required value" % kind)
        meta = obj["metadata"]
        ns = (meta.get("namespace") or ns or "default") if namespaced else ""
        if namespaced:
            meta["namespace"] = ns
        with self.lock:
            if key + (ns, meta["name"]) in self.store:
                what = "%s.%s" % (key[2], key[0]) if key[0] else key[2]
                raise ApiStatus(409, "AlreadyExists", '%s "%s" already exists' % (what, meta["name"]))
            meta["uid"] = "uid-created-%d" % (self.last_rv + 1)
            meta["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            meta["resourceVersion"] = self._next_rv()
            if key[2] in STATUS_SUBRESOURCE:
                obj.pop("status", None)
                if key[2] == "pods":
                    obj["status"] = {"phase": "Pending"}
            self._store(key + (ns, meta["name"]), obj)
            return copy.deepcopy(obj)

    def _watch(self, key, kind: str, namespaced: bool, ns: Optional[str], query: Dict[str, str]) -> "Stream":
        """A watch as kube-apiserver's watch cache serves it: the changes after resourceVersion (410 Gone as an ERROR
        event when they are forgotten), an object that stops matching the selectors as DELETED and one that starts
        as ADDED, bookmarks when allowed, the end at timeoutSeconds."""
        labels = _label_selector(query["labelSelector"]) if query.get("labelSelector") else []
        fields = _field_selector(query["fieldSelector"], key[0], key[2]) if query.get("fieldSelector") else []
        since = int(query.get("resourceVersion") or 0)
        seconds = min(float(query.get("timeoutSeconds") or 1800), self.max_watch_seconds or float("inf"))
        bookmarks = query.get("allowWatchBookmarks") == "true"
        api_version = "%s/%s" % (key[0], key[1]) if key[0] else key[1]

        def wanted(obj: Optional[dict]) -> bool:
            if obj is None:
                return False
            meta = obj.get("metadata") or {}
            return (not namespaced or ns is None or meta.get("namespace") == ns) \
                and matches(labels, meta.get("labels") or {}) and fields_match(fields, obj)

        def line(kind_: str, obj: dict) -> bytes:
            return json.dumps({"type": kind_, "object": obj}).encode() + b"\n"

        def events():
            end = time.monotonic() + seconds
            with self.lock:
                epoch = self.watch_epoch
                if since and since < self.oldest_rv:
                    yield line("ERROR", {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410,
                                         "reason": "Expired", "message": "too old resource version: %d (%d)"
                                                                         % (since, self.oldest_rv)})
                    return
                position = len(self.changes) if not since else next(
                    (i for i, change in enumerate(self.changes) if change[0] > since), len(self.changes))
            mark = time.monotonic() + self.bookmark_interval
            while time.monotonic() < end:
                with self.lock:
                    if self.watch_epoch != epoch:
                        raise ConnectionAbortedError("watch dropped")
                    pending = self.changes[position:]
                    position = len(self.changes)
                    if not pending:
                        self.changed.wait(min(0.2, max(0.0, end - time.monotonic())))
                for rv, change, where, new, old in pending:
                    if where[:3] != key:
                        continue
                    now_in, was_in = wanted(new), wanted(old)
                    if change == "DELETED":
                        if was_in:
                            yield line("DELETED", new)
                    elif now_in:
                        yield line("MODIFIED" if was_in else "ADDED", new)
                    elif was_in:  # stopped matching: DELETED, with the previous content at the new version
                        previous = copy.deepcopy(old)
                        previous["metadata"]["resourceVersion"] = str(rv)
                        yield line("DELETED", previous)
                if bookmarks and time.monotonic() >= mark:
                    mark = time.monotonic() + self.bookmark_interval
                    yield line("BOOKMARK", {"kind": kind, "apiVersion": api_version,
                                            "metadata": {"resourceVersion": str(self.last_rv)}})

        return Stream(events())

    def _restart(self, ns: str, plural: str, name: str) -> dict:
        if plural != "virtualmachines" or self.get_object("kubevirt.io", "virtualmachines", ns, name) is None:
            raise self._not_found(("kubevirt.io", "v1", "virtualmachines"), name)
        return {}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # TCP_NODELAY, as kube-apiserver: small responses are not held back
    fake: FakeKube

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _serve(self) -> None:
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        header_lists = {k.lower(): self.headers.get_all(k) for k in set(self.headers.keys())}
        peer = self.connection.getpeercert() if hasattr(self.connection, "getpeercert") else None
        client_cn = next((v for rdn in (peer or {}).get("subject", ()) for k, v in rdn if k == "commonName"), None)
        if url.path == "/_fake/requests":  # for benchmarks in another process: not itself logged
            return self._send(200, json.dumps({"count": len(self.fake.requests)}).encode(), {}, headers)
        prefix = self.fake.path_prefix
        if prefix and not url.path.startswith(prefix + "/"):
            return self._send(404, b'{"kind":"Status","status":"Failure","reason":"NotFound","code":404}', {},
                              headers)
        url = url._replace(path=url.path[len(prefix):])
        self.fake.requests.append({"method": self.command, "path": url.path, "query": query, "headers": headers,
                                   "header_lists": header_lists, "client_cn": client_cn,
                                   "peer": self.client_address[1],
                                   "body": body.decode("utf-8", "replace")})
        cache_key = (self.command, self.path, headers.get("accept"), headers.get("accept-encoding"), self.fake._writes)
        if self.fake.cache_responses and self.command == "GET" and cache_key in self.fake._responses:
            return self._send(*self.fake._responses[cache_key], headers=headers)
        extra: Dict[str, str] = {}
        try:
            status, payload, extra = self.fake.handle(self.command, url.path, query, headers, body)
        except ApiStatus as err:
            status, payload, extra = err.code, err.body(), getattr(err, "headers", {})
        except Exception as exc:  # never drop the connection
            status, payload = 500, ApiStatus(500, "InternalError", "fake: %r" % exc).body()
        if isinstance(payload, Stream):
            return self._stream(payload)
        data = payload if isinstance(payload, Raw) else json.dumps(payload).encode()
        gzipped = self.fake.gzip_enabled and "gzip" in headers.get("accept-encoding", "") and len(data) > 128
        if gzipped:
            data = gzip.compress(data, compresslevel=1)  # kube-apiserver uses the fastest level too
            extra = dict(extra, **{"Content-Encoding": "gzip"})
        if self.fake.cache_responses and self.command == "GET" and status == 200:
            self.fake._responses[cache_key] = (status, data, extra)
        self._send(status, data, extra, headers)

    def _send(self, status: int, data: bytes, extra: Dict[str, str], headers: Dict[str, str]) -> None:
        trickle = float(extra.pop("X-Fake-Trickle", 0) or 0)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in extra.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        try:
            if not trickle:
                self.wfile.write(data)
                return
            pieces = max(1, int(trickle / 0.25))
            step = max(1, len(data) // pieces)
            for start in range(0, len(data), step):  # a byte run every 0.25 s: no single read ever waits long
                self.wfile.write(data[start:start + step])
                self.wfile.flush()
                time.sleep(0.25)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _stream(self, stream: Stream) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for line in stream.lines:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (ConnectionAbortedError, BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    do_GET = do_PATCH = do_PUT = do_POST = do_DELETE = _serve


class Server(ThreadingHTTPServer):
    def handle_error(self, request, client_address) -> None:
        """A client that refused our certificate, or hung up, is the test's business, not a traceback."""
        import ssl

        if not isinstance(sys.exc_info()[1], (ssl.SSLError, ConnectionError)):
            super().handle_error(request, client_address)


def serve(fake: FakeKube, port: int = 0) -> Tuple[ThreadingHTTPServer, str]:
    handler = type("BoundHandler", (Handler,), {"fake": fake})
    server = Server(("127.0.0.1", port), handler)
    server.daemon_threads = True
    # A short poll keeps shutdown() fast: tests start and stop a server each.
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server, "http://127.0.0.1:%d" % server.server_address[1]


def serve_tls(fake: FakeKube, cert: str, key: str, client_ca: Optional[str] = None) -> Tuple[ThreadingHTTPServer, str]:
    """The fake behind TLS; with `client_ca`, client certificates are asked for and their CN logged."""
    import ssl

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    if client_ca:
        context.load_verify_locations(client_ca)
        context.verify_mode = ssl.CERT_OPTIONAL
    handler = type("BoundHandler", (Handler,), {"fake": fake})
    server = Server(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server, "https://127.0.0.1:%d" % server.server_address[1]


def load_yaml_objects(paths: List[str]) -> List[dict]:
    import os

    import yaml

    objects = []
    for path in paths:
        files = [os.path.join(path, f) for f in sorted(os.listdir(path))] if os.path.isdir(path) else [path]
        for f in files:
            with open(f, encoding="utf-8") as fh:
                objects.extend(d for d in yaml.safe_load_all(fh) if d)
    return objects


def main(argv: List[str]) -> int:
    import argparse

    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("paths", nargs="*")
    args = p.parse_args(argv)
    server, url = serve(FakeKube(load_yaml_objects(args.paths)), args.port)
    print("READY %s" % url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
