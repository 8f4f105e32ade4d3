"""`set` output: kubectl-style result lines, the impact of a cluster default, and the written objects."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from cpumodel.output.render import brief_list, structured

IMPACT_SHOWN = 10  # VMs named per impact line; -o wide names them all


def _suffix(dry_run: str) -> str:
    return {"client": " (dry run)", "server": " (server dry run)"}.get(dry_run, "")


def _show(value: Optional[str]) -> str:
    return value if value else "<unset>"


def unchanged_line(what: str, label: str, value: Optional[str]) -> str:
    return "%s unchanged (%s already %s)\n" % (what, label, _show(value))


def changed_lines(what: str, label: str, path: Sequence[str], before: Optional[str], value: Optional[str],
                  dry_run: str) -> str:
    verb = "set to %s" % value if value else "cleared"
    return "%s %s %s%s\n  %s: %s -> %s\n" % (what, label, verb, _suffix(dry_run), ".".join(path), _show(before),
                                             _show(value))


def failed_line(what: str, status: str, error: Optional[str]) -> str:
    return "%s %s\n" % (what, "FAILED: %s" % error if status == "failed" else "not tried")


def result_entry(name: str, namespace: Optional[str], status: str, before: Optional[str], to: Optional[str],
                 error: Optional[str]) -> Dict[str, Any]:
    return {"vm": name, "namespace": namespace, "status": status, "from": before, "to": to, "error": error}


def restart_pending(names: Sequence[str], restart: bool) -> str:
    return "the change applies at the next restart of these running VMs: %s%s" % (
        ", ".join(names), "" if restart else " (use --restart to restart them now)")


def impact_lines(impact: Dict[str, List[str]], wide: bool) -> Dict[str, Optional[str]]:
    """The stderr lines about which VMs adopt a new cluster default: info lines and a warning."""
    limit = 0 if wide else IMPACT_SHOWN
    adopt, keep, restart = impact["adopt"], impact["keepOwn"], impact["runningNeedRestart"]
    return {
        "adopt": "%d VMs without a model of their own adopt it at their next start: %s\n"
                 % (len(adopt), brief_list(adopt, limit)) if adopt else None,
        "keep": "%d VMs keep their own model: %s\n" % (len(keep), brief_list(keep, limit)) if keep else None,
        "warning": "%d running VMs adopt it only after a restart: %s" % (len(restart), brief_list(restart, limit))
                   if restart else None,
    }


def objects_document(objects: List[Dict[str, Any]], fmt: str, results: Optional[List[Dict[str, Any]]] = None,
                     about: Optional[Dict[str, Any]] = None) -> str:
    """The written objects as kubectl prints them: one object, or a v1 List; several VMs also get `results`,
    one `{vm, namespace, status, from, to, error}` per VM (changed, unchanged, failed, not-tried).
    `about` adds top-level keys (`set --cluster`: `platform` and `writeTarget`) beside the object's own."""
    if results is None and len(objects) == 1:
        return structured(dict(objects[0], **(about or {})), fmt)
    doc: Dict[str, Any] = {"apiVersion": "v1", "kind": "List", "items": objects}
    if results is not None:
        doc["results"] = results
    return structured(doc, fmt)
