"""Offline sources: YAML/JSON files, directories of them, and Harvester support bundles.

Support bundles (docs/kubevirt-rules.md §6) hold one `kind: List` per resource type under
`yamls/cluster/<gv>/<resource>.yaml` and `yamls/namespaced/<ns>/<gv>/<resource>.yaml`,
and support-bundle-kit rewrote every "" as "null"; we undo that. Zips are read in
memory, never extracted.
"""
from __future__ import annotations

import io
import json
import os
import re
import zipfile
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from cpumodel.core.api_selectors import fields_match, matches, parse_field_selector, parse_selector
from cpumodel.errors import NotFound, SourceError
from cpumodel.sources.base import Keep, Source
from cpumodel.sources.resources import Resource

DATA_SUFFIXES = (".yaml", ".yml", ".json")


def _load_documents(text: str, origin: str) -> List[Any]:
    import yaml

    try:
        if origin.endswith(".json"):
            return [json.loads(text)]
        return [d for d in yaml.load_all(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)) if d is not None]
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()
        raise SourceError("%s: not valid %s: %s" % (origin, "JSON" if origin.endswith(".json") else "YAML",
                                                     " ".join(first[:3])))


def _expand(doc: Any, origin: str) -> Iterator[Dict[str, Any]]:
    if not isinstance(doc, dict):
        raise SourceError("%s: expected Kubernetes objects, found a %s" % (origin, type(doc).__name__))
    kind = doc.get("kind")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
        for item in doc["items"]:
            yield from _expand(item, origin)
        return
    if not kind or not doc.get("apiVersion"):
        raise SourceError("%s: an object without apiVersion/kind (name %r)" % (
            origin, (doc.get("metadata") or {}).get("name")))
    yield doc


def _string_labels(obj: Dict[str, Any]) -> Dict[str, Any]:
    """YAML turns `foo: true` into a bool; the API only has string label values."""
    meta = obj.get("metadata")
    if isinstance(meta, dict) and isinstance(meta.get("labels"), dict):
        meta["labels"] = {str(k): _yaml_scalar(v) for k, v in meta["labels"].items()}
    return obj


def _yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def _unmunge(value: Any) -> Any:
    """support-bundle-kit wrote every empty string (and some nulls) as the string "null"."""
    if value == "null":
        return ""
    if isinstance(value, dict):
        return {k: _unmunge(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unmunge(v) for v in value]
    return value


def _is_bundle_dir(path: str) -> Optional[str]:
    """The bundle root (the folder holding `yamls/`) of an extracted bundle, if path is one."""
    if os.path.isdir(os.path.join(path, "yamls")):
        return path
    entries = [e for e in os.listdir(path) if not e.startswith(".")]
    if len(entries) == 1 and os.path.isdir(os.path.join(path, entries[0], "yamls")):
        return os.path.join(path, entries[0])
    return None


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SourceError("%s: cannot be read: %s" % (path, exc))


def _bundle_files_from_dir(root: str) -> Iterator[Tuple[str, str]]:
    for dirpath, _, files in os.walk(os.path.join(root, "yamls")):
        for f in sorted(files):
            if f.endswith(DATA_SUFFIXES):
                path = os.path.join(dirpath, f)
                yield path, _read_text(path)


def _bundle_files_from_zip(path: str) -> Iterator[Tuple[str, str]]:
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise SourceError("%s: not a readable zip file: %s" % (path, exc))
    with archive:
        names = [n for n in archive.namelist() if "/yamls/" in "/" + n and n.endswith(DATA_SUFFIXES)]
        if not names:
            raise SourceError("%s: not a Harvester support bundle (no yamls/ folder inside)" % path)
        for name in sorted(names):
            try:
                text = io.TextIOWrapper(archive.open(name), encoding="utf-8").read()
            except (OSError, UnicodeDecodeError, zipfile.BadZipFile) as exc:
                raise SourceError("%s: cannot read %s: %s" % (path, name, exc))
            yield "%s:%s" % (path, name), text


def _plain_files(path: str) -> Iterator[Tuple[str, str]]:
    if os.path.isdir(path):
        for dirpath, dirnames, files in os.walk(path):
            dirnames.sort()
            for f in sorted(files):
                if f.endswith(DATA_SUFFIXES):
                    full = os.path.join(dirpath, f)
                    yield full, _read_text(full)
    else:
        yield path, _read_text(path)


_BUNDLE_NAMESPACE = re.compile(r"/yamls/namespaced/([^/]+)/")


@dataclass
class Snapshot:
    objects: List[Dict[str, Any]] = field(default_factory=list)
    bundle: bool = False
    collected_namespaces: Set[str] = field(default_factory=set)  # bundles: the namespaces it has folders for


def load_objects(paths: Iterable[str]) -> List[Dict[str, Any]]:
    return load_snapshot(paths).objects


def load_snapshot(paths: Iterable[str]) -> Snapshot:
    snapshot = Snapshot()
    objects = snapshot.objects
    for path in paths:
        if not os.path.exists(path):
            raise SourceError("%s: no such file or directory" % path)
        bundle_root = _is_bundle_dir(path) if os.path.isdir(path) else None
        if path.endswith(".zip"):
            files, bundle = _bundle_files_from_zip(path), True
        elif bundle_root:
            files, bundle = _bundle_files_from_dir(bundle_root), True
        else:
            files, bundle = _plain_files(path), False
        snapshot.bundle = snapshot.bundle or bundle
        for origin, text in files:
            found = _BUNDLE_NAMESPACE.search(origin.replace(os.sep, "/")) if bundle else None
            if found:
                snapshot.collected_namespaces.add(found.group(1))
            for doc in _load_documents(text, origin):
                for obj in _expand(doc, origin):
                    objects.append(_string_labels(_unmunge(obj) if bundle else obj))
    return snapshot


class SnapshotSource(Source):
    offline = True

    def __init__(self, paths: List[str], namespace: Optional[str]):
        self.paths = paths
        self.namespace = namespace or "default"
        self.namespace_explicit = namespace is not None
        self._by_kind: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
        snapshot = load_snapshot(paths)
        self._bundle, self._collected = snapshot.bundle, snapshot.collected_namespaces
        for obj in snapshot.objects:
            group = str(obj.get("apiVersion", "")).rpartition("/")[0]
            self._by_kind.setdefault((group, str(obj.get("kind"))), []).append(obj)

    def list(self, resource: Resource, namespace: Optional[str] = None, label_selector: Optional[str] = None,
             field_selector: Optional[str] = None, view: str = "full", keep: Keep = None) -> List[Any]:
        reqs = parse_selector(label_selector) if label_selector else None
        field_reqs = parse_field_selector(field_selector) if field_selector else None
        found = []
        for obj in self._by_kind.get((resource.group, resource.kind), []):
            meta = obj.get("metadata") or {}
            if resource.namespaced and namespace and meta.get("namespace", "default") != namespace:
                continue
            if reqs is not None and not matches(reqs, meta.get("labels") or {}):
                continue
            if field_reqs is not None and not fields_match(field_reqs, obj):
                continue
            found.append(obj)
        found.sort(key=lambda o: ((o.get("metadata") or {}).get("namespace", ""), (o.get("metadata") or {}).get("name", "")))
        return [keep(o) for o in found] if keep else found

    def uncollected_namespaces(self) -> List[str]:
        """Namespaces the cluster has but a support bundle holds nothing of (Harvester collects only some)."""
        if not self._bundle:
            return []
        names = {(o.get("metadata") or {}).get("name") for o in self._by_kind.get(("", "Namespace"), [])}
        return sorted(n for n in names - self._collected if isinstance(n, str))

    def get(self, resource: Resource, namespace: Optional[str], name: str) -> Dict[str, Any]:
        for obj in self.list(resource, namespace if resource.namespaced else None):
            if (obj.get("metadata") or {}).get("name") == name:
                return obj
        where = ' in namespace "%s"' % namespace if resource.namespaced and namespace else ""
        raise NotFound('%s "%s" not found%s (in %s)' % (resource.full_name, name, where, ", ".join(self.paths)))
