"""`watch-drain` output: one line per change (a table row as `kubectl get -w` prints them, or an NDJSON object),
and the summary at the end."""
from __future__ import annotations

import json
import time
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from cpumodel.core.watch_drain import DONE, MOVED, STOPPED, Status, duration

COLUMNS = ("TIME", "VM", "STATE", "TARGET", "MIGRATION", "MESSAGE")


def clock(wall: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(wall))


def stamp(wall: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(wall))


def _migration(status: Status) -> Optional[Dict[str, str]]:
    return {"name": status.migration[0], "phase": status.migration[1]} if status.migration else None


def change_document(wall: float, key: Tuple[str, str], node: str, status: Status) -> Dict[str, Any]:
    namespace, name = key
    return {"time": stamp(wall), "vm": name, "namespace": namespace, "state": status.state,
            "node": status.target if status.state == MOVED else node, "target": status.target,
            "migration": _migration(status),
            "reasons": [{"category": r.category.value, "key": r.key, "message": r.message, "nodes": r.nodes}
                        for r in status.reasons],
            "message": status.message}


def json_line(document: Mapping[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False) + "\n"


class Table:
    """Rows printed as changes happen, in columns sized from the VMs known at the start."""

    def __init__(self, names: Sequence[str], node: str):
        self.widths = [8, max([20] + [len(n) for n in names]), 16, max(10, len(node)), 44]

    def header(self) -> str:
        return self._row(COLUMNS)

    def _row(self, cells: Sequence[str]) -> str:
        parts = [c.ljust(w) for c, w in zip(cells, self.widths)] + list(cells[len(self.widths):])
        return "   ".join(parts).rstrip() + "\n"

    def change(self, wall: float, key: Tuple[str, str], status: Status) -> str:
        migration = "%s (%s)" % status.migration if status.migration else "-"
        message = status.message
        if status.reasons:
            message += " [%s]" % "; ".join("%s%s (%d node%s)" % (
                r.category.value, ": " + r.key.rsplit("/", 1)[-1] if r.key else "", r.nodes, "" if r.nodes == 1 else "s")
                for r in status.reasons)
        return self._row([clock(wall), "%s/%s" % key, status.state, status.target or "-", migration, message])


def summary_document(node: str, statuses: Mapping[Tuple[str, str], Status], ending: str, elapsed: float
                     ) -> Dict[str, Any]:
    remaining = [{"vm": k[1], "namespace": k[0], "state": s.state, "message": s.message}
                 for k, s in sorted(statuses.items()) if s.state not in DONE]
    return {"summary": {"node": node, "vms": len(statuses),
                        "moved": sum(1 for s in statuses.values() if s.state == MOVED),
                        "stopped": sum(1 for s in statuses.values() if s.state == STOPPED),
                        "remaining": remaining, "ending": ending, "elapsedSeconds": round(elapsed, 1)}}


def summary_text(document: Mapping[str, Any]) -> str:
    s = document["summary"]
    why = {"done": "no VMs left", "timeout": "timed out", "interrupted": "interrupted"}.get(s["ending"], s["ending"])
    lines: List[str] = ["\n%s after %s: %d VM%s, %d moved, %d stopped, %d remain%s\n" % (
        why, duration(s["elapsedSeconds"]), s["vms"], "" if s["vms"] == 1 else "s", s["moved"], s["stopped"],
        len(s["remaining"]), " on %s" % s["node"] if s["remaining"] else "")]
    lines += ["  %s/%s: %s — %s\n" % (r["namespace"], r["vm"], r["state"], r["message"]) for r in s["remaining"]]
    return "".join(lines)
