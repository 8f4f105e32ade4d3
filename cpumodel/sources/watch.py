"""List, then watch, as client-go's reflector does for `kubectl get -w` (k8s.io/client-go tools/cache/reflector.go).

Each Reflector lists its objects (paged) and watches from the list's resourceVersion with bookmarks; the server
ends a watch after `timeoutSeconds` and the reflector goes on from the last resourceVersion it saw (an event's or
a bookmark's). `410 Gone` — as the HTTP status or as an ERROR event, when the resourceVersion is older than the
server keeps — makes it list again; a dropped connection or an unreachable server makes it reconnect with a
backoff, from where it was. The read timeout of a watch is its timeoutSeconds plus a margin, never
--request-timeout: a healthy watch may be quiet for minutes. Changes go to one queue, read by one consumer;
nothing is kept here, so memory stays flat however long the watch runs.
"""
from __future__ import annotations

import queue
import random
import threading
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Tuple

from cpumodel.errors import SourceError
from cpumodel.sources.kubeclient import ApiError, Call, KubeClient, Transient, Unreachable, WatchBroken
from cpumodel.sources.resources import Resource

MIN_WATCH_SECONDS = 300  # client-go's minWatchTimeout; each watch asks for between it and twice it
READ_MARGIN = 30.0  # beyond timeoutSeconds, before a silent connection counts as broken
BACKOFF = (0.5, 30.0)  # first and largest wait before reconnecting


class Gone(SourceError):
    """The resourceVersion is older than the server keeps (HTTP 410 / an ERROR event with code 410)."""


@dataclass(frozen=True)
class Change:
    source: str  # the reflector's name
    kind: str  # "sync" (obj: every item of a fresh list), ADDED, MODIFIED, DELETED, "lost" (obj: why), "error"
    obj: Any


class Reflector:
    def __init__(self, client: KubeClient, name: str, resource: Resource, out: "queue.Queue[Change]",
                 label_selector: Optional[str] = None, field_selector: Optional[str] = None,
                 watch_seconds: Optional[int] = None, wanted: Optional[Callable[[Any], bool]] = None):
        """`wanted`: which listed objects to keep (decided page by page, so a list of thousands never piles up)."""
        self.client, self.name, self.resource, self.out = client, name, resource, out
        self.wanted = wanted
        self.filters: List[Tuple[str, str]] = []
        if label_selector:
            self.filters.append(("labelSelector", label_selector))
        if field_selector:
            self.filters.append(("fieldSelector", field_selector))
        self.watch_seconds = watch_seconds
        self.rv: Optional[str] = None
        self.relists = 0
        self.reconnects = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watch-" + name, daemon=True)

    def start(self) -> "Reflector":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _list(self) -> None:
        info: dict = {}
        wanted = self.wanted
        items = self.client.list_items(Call("list", self.resource.full_name), self.resource.path(), self.filters,
                                       keep=(lambda raw: raw if wanted(raw) else None) if wanted else None, info=info)
        if wanted:
            items = [item for item in items if item is not None]
        self.rv = info.get("resourceVersion") or "0"
        self.out.put(Change(self.name, "sync", items))

    def _watch(self) -> None:
        seconds = self.watch_seconds or random.randint(MIN_WATCH_SECONDS, 2 * MIN_WATCH_SECONDS)
        query = self.filters + [("watch", "1"), ("resourceVersion", self.rv or "0"), ("allowWatchBookmarks", "true"),
                                ("timeoutSeconds", str(seconds))]
        call = Call("watch", self.resource.full_name)
        for event in self.client.watch(call, self.resource.path(), query, seconds + READ_MARGIN):
            if self._stop.is_set():
                return
            kind = event.get("type") if isinstance(event, dict) else None
            obj = event.get("object") if isinstance(event, dict) else None
            if not isinstance(obj, dict):
                raise SourceError("the watch of %s sent an event without an object" % self.resource.full_name)
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise Gone(str(obj.get("message") or "resourceVersion too old"))
                raise SourceError("the watch of %s failed: %s" % (self.resource.full_name,
                                                                   obj.get("message") or obj.get("reason")))
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            if rv:
                self.rv = str(rv)
            if kind in ("ADDED", "MODIFIED", "DELETED"):
                self.out.put(Change(self.name, kind, obj))

    def _run(self) -> None:
        delay = BACKOFF[0]
        lost = False
        while not self._stop.is_set():
            try:
                if self.rv is None:
                    self._list()
                if lost:
                    self.out.put(Change(self.name, "back", None))
                    lost = False
                self._watch()
                delay = BACKOFF[0]
            except (Gone, ApiError) as exc:
                if isinstance(exc, ApiError) and exc.status != 410:
                    self.out.put(Change(self.name, "error", exc))
                    return
                self.rv = None  # too old: list again (and the consumer replaces what it holds)
                self.relists += 1
            except (WatchBroken, Transient, Unreachable) as exc:
                self.reconnects += 1
                if not lost:
                    self.out.put(Change(self.name, "lost", str(exc)))
                    lost = True
                self._stop.wait(delay)
                delay = min(delay * 2, BACKOFF[1])
            except SourceError as exc:
                self.out.put(Change(self.name, "error", exc))
                return
            except Exception as exc:  # never a silent dead thread: the consumer reports it
                self.out.put(Change(self.name, "error", SourceError("the watch of %s failed: %s" % (
                    self.resource.full_name, exc))))
                return

