"""Offline sources: YAML/JSON files, directories of them, and Harvester support bundles.

Support bundles (docs/kubevirt-rules.md §6) hold one `kind: List` per resource type under
`yamls/cluster/<gv>/<resource>.yaml` and `yamls/namespaced/<ns>/<gv>/<resource>.yaml`,
and support-bundle-kit rewrote every "" as "null"; we undo that. Zips are never
extracted; their members, like files, stream into the YAML parser a chunk at a time.
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import zipfile
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Dict, Iterable, Iterator, List, Optional, Set, Tuple

from cpumodel.core.api_selectors import fields_match, matches, parse_field_selector, parse_selector
from cpumodel.errors import NotFound, SourceError
from cpumodel.sources.base import Keep, Source
from cpumodel.sources.quantity import parse_size
from cpumodel.sources.resources import Resource

DATA_SUFFIXES = (".yaml", ".yml", ".json")


def _documents(origin: str, opener: "Opener") -> Iterator[Any]:
    """The documents of one file, parsed as they stream in: YAML is read a chunk at a time, so memory holds the
    objects kept, not the file (JSON needs its whole text)."""
    import yaml

    try:
        with opener() as stream:
            if origin.endswith(".json"):
                yield json.loads(_decode_text(stream.read_all(), origin))
                return
            for doc in yaml.load_all(stream, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
                if doc is not None:
                    yield doc
    except RecursionError:
        raise SourceError("%s: nested too deeply to be a Kubernetes object" % origin)
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


def _unmunge(value: Any, seen: Optional[Set[int]] = None) -> Any:
    """support-bundle-kit wrote every empty string (and some nulls) as the string "null"; undo it in place.

    YAML aliases make one node appear in many places: each is visited once, never copied, so a
    file built of nested aliases costs what its text costs (as on the plain -f path).
    """
    seen = set() if seen is None else seen
    stack = [value]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        pairs = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, item in list(pairs):
            if item == "null":
                node[key] = ""
            elif isinstance(item, (dict, list)):
                stack.append(item)
    return "" if value == "null" else value


def _is_bundle_dir(path: str) -> Optional[str]:
    """The bundle root (the folder holding `yamls/`) of an extracted bundle, if path is one."""
    if os.path.isdir(os.path.join(path, "yamls")):
        return path
    entries = [e for e in os.listdir(path) if not e.startswith(".")]
    if len(entries) == 1 and os.path.isdir(os.path.join(path, entries[0], "yamls")):
        return os.path.join(path, entries[0])
    return None


class InputBudget:
    """How many bytes -f inputs may still bring in (--max-input-size): every read counts against it."""

    def __init__(self, limit: int, shown: str):
        self.left, self.shown = limit, shown

    def take(self, count: int, what: str) -> None:
        self.left -= count
        if self.left < 0:
            raise SourceError("%s: the -f inputs exceed --max-input-size %s; raise it if the files are trusted"
                              % (what, self.shown))


CHUNK = 1 << 20


def _decode_text(data: bytes, what: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceError("%s: not UTF-8 text" % what)


class _Checked:
    """A binary stream as the parsers read it: every chunk counts against --max-input-size and is checked for
    NUL bytes (YAML and JSON text never holds one: binary data is refused from its first chunk on, before it
    is read any further), and a zip member may not inflate beyond the size it declares."""

    def __init__(self, raw: Any, what: str, budget: "InputBudget", declared: Optional[int] = None):
        self.raw, self.what, self.budget, self.declared, self.total = raw, what, budget, declared, 0

    def read(self, size: int = -1) -> bytes:
        chunk = self.raw.read(CHUNK if size is None or size < 0 or size > CHUNK else size)
        if chunk:
            self.total += len(chunk)
            if self.declared is not None and self.total > self.declared:
                raise SourceError("%s: inflates beyond its declared size of %d bytes: refused" % (self.what,
                                                                                                self.declared))
            self.budget.take(len(chunk), self.what)
            if b"\0" in chunk:
                raise SourceError("%s: not YAML or JSON text (it holds NUL bytes): refused" % self.what)
        return chunk

    def read_all(self) -> bytes:
        data = bytearray()
        while True:
            chunk = self.read()
            if not chunk:
                return bytes(data)
            data += chunk


Opener = Callable[[], ContextManager[_Checked]]


def _file_opener(path: str, budget: InputBudget, root: Optional[str] = None) -> Opener:
    """A regular file, inside `root` (links that leave it are refused), read within the budget."""
    if root is not None:
        real, inside = os.path.realpath(path), os.path.realpath(root)
        if real != inside and not real.startswith(inside + os.sep):
            raise SourceError("%s: a link that leads out of %s (to %s): refused" % (path, root, real))

    @contextlib.contextmanager
    def opened() -> Iterator[_Checked]:
        try:
            if not stat.S_ISREG(os.stat(path).st_mode):  # before open: opening a FIFO would wait for ever
                raise SourceError("%s: not a regular file (a device, FIFO or socket): refused" % path)
            with open(path, "rb") as fh:
                yield _Checked(fh, path, budget)
        except OSError as exc:
            raise SourceError("%s: cannot be read: %s" % (path, exc.strerror or exc))

    return opened


def _bundle_files_from_dir(root: str, budget: InputBudget) -> Iterator[Tuple[str, Opener]]:
    for dirpath, dirnames, files in os.walk(os.path.join(root, "yamls")):
        dirnames.sort()
        for f in sorted(files):
            if f.endswith(DATA_SUFFIXES):
                path = os.path.join(dirpath, f)
                yield path, _file_opener(path, budget, root)


def _member_opener(archive: zipfile.ZipFile, info: zipfile.ZipInfo, where: str, budget: InputBudget) -> Opener:
    """A zip member, checked against its declared size and the budget while it inflates."""
    if info.file_size > budget.left:
        raise SourceError("%s: declares %d bytes, more than --max-input-size %s leaves; raise it if the bundle "
                          "is trusted" % (where, info.file_size, budget.shown))

    @contextlib.contextmanager
    def opened() -> Iterator[_Checked]:
        try:
            with archive.open(info) as member:
                yield _Checked(member, where, budget, info.file_size)
        except (OSError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
            raise SourceError("%s: cannot read: %s" % (where, exc))

    return opened


def _bundle_files_from_zip(path: str, budget: InputBudget) -> Iterator[Tuple[str, Opener]]:
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise SourceError("%s: not a readable zip file: %s" % (path, exc))
    with archive:
        members = [i for i in archive.infolist() if "/yamls/" in "/" + i.filename and i.filename.endswith(DATA_SUFFIXES)]
        if not members:
            raise SourceError("%s: not a Harvester support bundle (no yamls/ folder inside)" % path)
        for info in sorted(members, key=lambda i: i.filename):
            where = "%s:%s" % (path, info.filename)
            yield where, _member_opener(archive, info, where, budget)


def _plain_files(path: str, budget: InputBudget) -> Iterator[Tuple[str, Opener]]:
    if os.path.isdir(path):
        for dirpath, dirnames, files in os.walk(path):
            dirnames.sort()
            for f in sorted(files):
                if f.endswith(DATA_SUFFIXES):
                    full = os.path.join(dirpath, f)
                    yield full, _file_opener(full, budget, path)
    else:
        yield path, _file_opener(path, budget)


_BUNDLE_NAMESPACE = re.compile(r"/yamls/namespaced/([^/]+)/")


@dataclass
class Snapshot:
    objects: List[Dict[str, Any]] = field(default_factory=list)
    bundle: bool = False
    collected_namespaces: Set[str] = field(default_factory=set)  # bundles: the namespaces it has folders for


DEFAULT_MAX_INPUT = "1Gi"


def load_snapshot(paths: Iterable[str], max_input: str = DEFAULT_MAX_INPUT) -> Snapshot:
    snapshot = Snapshot()
    objects = snapshot.objects
    budget = InputBudget(parse_size(max_input), max_input)
    for path in paths:
        if not os.path.exists(path):
            raise SourceError("%s: no such file or directory" % path)
        bundle_root = _is_bundle_dir(path) if os.path.isdir(path) else None
        if path.endswith(".zip"):
            files, bundle = _bundle_files_from_zip(path, budget), True
        elif bundle_root:
            files, bundle = _bundle_files_from_dir(bundle_root, budget), True
        else:
            files, bundle = _plain_files(path, budget), False
        snapshot.bundle = snapshot.bundle or bundle
        read = 0
        for origin, opener in files:
            read += 1
            found = _BUNDLE_NAMESPACE.search(origin.replace(os.sep, "/")) if bundle else None
            if found:
                snapshot.collected_namespaces.add(found.group(1))
            for doc in _documents(origin, opener):
                for obj in _expand(doc, origin):
                    objects.append(_string_labels(_unmunge(obj) if bundle else obj))
        if not read:
            raise SourceError("%s: no YAML or JSON files in it" % path)
    return snapshot


def _object_order(obj: Dict[str, Any]) -> Tuple[str, str]:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def version_priority(version: str) -> Tuple[int, int, int]:
    """Kubernetes' order of API versions: GA before beta before alpha, then by number."""
    found = re.match(r"v(\d+)(?:(beta|alpha)(\d+))?$", version)
    if not found:
        return (-1, 0, 0)
    stage = {"beta": 1, "alpha": 0}.get(found.group(2) or "", 2)
    return (stage, int(found.group(1)), int(found.group(3) or 0))


class SnapshotSource(Source):
    offline = True

    def __init__(self, paths: List[str], namespace: Optional[str], max_input: str = DEFAULT_MAX_INPUT):
        self.paths = paths
        self.namespace = namespace or "default"
        self.namespace_explicit = namespace is not None
        self._by_kind: Dict[Tuple[str, str], List[Dict[str, Any]]] = {}
        snapshot = load_snapshot(paths, max_input)
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
        found.sort(key=_object_order)
        return [keep(o) for o in found] if keep else found

    def preferred_version(self, group: str) -> Optional[str]:
        """The version the files hold objects of (the newest, when they hold several)."""
        versions = {str(o.get("apiVersion", "")).rpartition("/")[2]
                    for (g, _), objs in self._by_kind.items() if g == group for o in objs}
        return max(versions, key=version_priority) if versions else None

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
