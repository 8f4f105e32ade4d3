"""The data-source interface: the live cluster and offline snapshots answer the same calls.

Sources speak raw object dicts; sources/reader.py turns them into typed values.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

Keep = Optional[Callable[[Dict[str, Any]], Any]]

from cpumodel.errors import UsageError
from cpumodel.sources.resources import Resource


class Source:
    offline = False
    #: the namespace for VMs: -n, else the context's, else "default"
    namespace = "default"
    #: whether -n was given (offline, an unqualified VM may then be looked up in every namespace)
    namespace_explicit = False

    def list(self, resource: Resource, namespace: Optional[str] = None, label_selector: Optional[str] = None,
             field_selector: Optional[str] = None, view: str = "full", keep: Keep = None) -> List[Any]:
        """Objects of a type; `keep` turns each raw item into what the caller holds on to, page by page.

        `view` is how much of each object is needed: "full" objects, "metadata" only (labels),
        or "status": metadata plus node readiness and cordon (kube-apiserver's Table printing).
        Offline sources always hold full objects."""
        raise NotImplementedError

    def get(self, resource: Resource, namespace: Optional[str], name: str) -> Dict[str, Any]:
        raise NotImplementedError

    def preferred_version(self, group: str) -> Optional[str]:
        """The version of an API group the server prefers (discovery), or None when it does not serve the group."""
        raise NotImplementedError

    def uncollected_namespaces(self) -> List[str]:
        """Namespaces whose objects this source does not hold (a support bundle's uncollected ones)."""
        return []

    def patch(self, resource: Resource, namespace: Optional[str], name: str, body: Any, content_type: str,
              dry_run: bool) -> Dict[str, Any]:
        raise UsageError("this source is read-only: writes need a live cluster (drop -f, or use --dry-run=client)")

    def put_subresource(self, resource: Resource, namespace: str, name: str, subresource: str,
                        group_version: str) -> None:
        raise UsageError("this source is read-only: writes need a live cluster (drop -f)")

