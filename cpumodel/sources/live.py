"""The live cluster, through the kubernetes client's connection (kubeclient.py)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, TextIO, Tuple

from cpumodel.errors import NotFound, SourceError
from cpumodel.sources.base import Keep, Source
from cpumodel.sources.kubeclient import ApiError, Call, KubeClient
from cpumodel.sources.kubeconfig import Access
from cpumodel.sources.resources import Resource

# kube-apiserver answers these with PartialObjectMetadataList (labels without spec and status),
# or a Table whose rows carry each object's metadata and kubectl's STATUS column.
ACCEPT = {
    "full": "application/json",
    "metadata": "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json",
    "status": "application/json;as=Table;g=meta.k8s.io;v=v1,application/json",
}


def table_rows(page: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Items of a list page; a Table's rows become objects with metadata, readiness and cordon.

    The STATUS column of a node Table is kubectl's: Ready / NotReady / Unknown, plus
    `,SchedulingDisabled` when cordoned.
    """
    if page.get("kind") != "Table":
        return page.get("items") or []
    if not isinstance(page.get("rows"), list):
        return page.get("rows")  # not a list: the caller reports the malformed page
    names = [c.get("name") for c in page.get("columnDefinitions") or []]
    column = names.index("Status") if "Status" in names else None
    items = []
    for row in page["rows"]:
        if not isinstance(row, dict) or not isinstance(row.get("cells"), list):
            raise SourceError("the server sent a malformed Table row")
        status = str(row["cells"][column]) if column is not None and column < len(row["cells"]) else ""
        ready = {"Ready": "True", "NotReady": "False"}.get(status.split(",")[0], "Unknown")
        items.append({"metadata": (row.get("object") or {}).get("metadata") or {},
                      "spec": {"unschedulable": "SchedulingDisabled" in status},
                      "status": {"conditions": [{"type": "Ready", "status": ready}]}})
    return items


class LiveSource(Source):
    def __init__(self, access: Access, namespace: Optional[str], timeout: Optional[float],
                 verbosity: int, log: TextIO):
        self.client = KubeClient(access, timeout, verbosity, log)
        self.namespace = namespace or access.namespace
        self.namespace_explicit = namespace is not None


    def list(self, resource: Resource, namespace: Optional[str] = None, label_selector: Optional[str] = None,
             field_selector: Optional[str] = None, view: str = "full", keep: Keep = None) -> List[Any]:
        call = Call("list", resource.full_name, namespace if resource.namespaced else None)
        query: List[Tuple[str, str]] = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        if view == "status":
            query.append(("includeObject", "Metadata"))
        path = resource.path(namespace)
        try:
            return self.client.list_items(call, path, query, ACCEPT[view], keep, table_rows)
        except ApiError as exc:
            if view != "full" and exc.status in (406, 415):  # a server without metadata-only or Table lists
                plain = [q for q in query if q[0] != "includeObject"]
                return self.client.list_items(call, path, plain, ACCEPT["full"], keep, table_rows)
            raise

    def get(self, resource: Resource, namespace: Optional[str], name: str) -> Dict[str, Any]:
        ns = namespace if resource.namespaced else None
        return self.client.request(Call("get", resource.full_name, ns, name), "GET", resource.path(ns, name))

    def preferred_version(self, group: str) -> Optional[str]:
        try:
            found = self.client.request(Call("get", group, None), "GET", "/apis/%s" % group)
        except NotFound:
            return None
        version = (found.get("preferredVersion") or {}).get("version") if isinstance(found, dict) else None
        return str(version) if version else None

    def patch(self, resource: Resource, namespace: Optional[str], name: str, body: Any, content_type: str,
              dry_run: bool) -> Dict[str, Any]:
        ns = namespace if resource.namespaced else None
        query = [("fieldManager", "kubectl-cpumodel")] + ([("dryRun", "All")] if dry_run else [])
        guarded = bool(isinstance(body, dict) and (body.get("metadata") or {}).get("resourceVersion"))
        return self.client.request(Call("patch", resource.full_name, ns, name), "PATCH", resource.path(ns, name),
                                   query, body=body, content_type=content_type, repeatable=guarded)

    def put_subresource(self, resource: Resource, namespace: str, name: str, subresource: str,
                        group_version: str) -> None:
        path = "/apis/%s/namespaces/%s/%s/%s/%s" % (group_version, namespace, resource.plural, name, subresource)
        self.client.request(Call("update", "%s/%s" % (resource.full_name, subresource), namespace, name),
                            "PUT", path, body={})
