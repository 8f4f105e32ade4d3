"""The live cluster, through the kubernetes client's connection (kubeclient.py)."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, TextIO, Tuple

from cpumodel.sources.base import Source
from cpumodel.sources.kubeclient import ApiError, Call, KubeClient
from cpumodel.sources.kubeconfig import KubeconfigChoice
from cpumodel.sources.resources import Resource

# kube-apiserver answers this with PartialObjectMetadataList: labels without spec and status.
METADATA_ACCEPT = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"


class LiveSource(Source):
    def __init__(self, choice: KubeconfigChoice, namespace: Optional[str], timeout: Optional[float],
                 verbosity: int, log: TextIO):
        self.client = KubeClient(choice, timeout, verbosity, log)
        self.namespace = namespace or choice.namespace
        self.namespace_explicit = namespace is not None

    @property
    def request_count(self) -> int:
        return self.client.requests

    def list(self, resource: Resource, namespace: Optional[str] = None, label_selector: Optional[str] = None,
             field_selector: Optional[str] = None, metadata_only: bool = False) -> List[Dict[str, Any]]:
        call = Call("list", resource.full_name, namespace if resource.namespaced else None)
        query: List[Tuple[str, str]] = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        path = resource.path(namespace)
        accept = METADATA_ACCEPT if metadata_only else "application/json"
        try:
            return self._collect(call, path, query, accept)
        except ApiError as exc:
            if metadata_only and exc.status in (406, 415):  # a server without metadata-only lists
                return self._collect(call, path, query, "application/json")
            raise

    def _collect(self, call: Call, path: str, query: List[Tuple[str, str]], accept: str) -> List[Dict[str, Any]]:
        return self.client.list_items(call, path, query, accept)

    def get(self, resource: Resource, namespace: Optional[str], name: str) -> Dict[str, Any]:
        ns = namespace if resource.namespaced else None
        return self.client.request(Call("get", resource.full_name, ns, name), "GET", resource.path(ns, name))

    def patch(self, resource: Resource, namespace: Optional[str], name: str, body: Any, content_type: str,
              dry_run: bool) -> Dict[str, Any]:
        ns = namespace if resource.namespaced else None
        query = [("fieldManager", "kubectl-cpumodel")] + ([("dryRun", "All")] if dry_run else [])
        return self.client.request(Call("patch", resource.full_name, ns, name), "PATCH", resource.path(ns, name),
                                   query, body=body, content_type=content_type)

    def put_subresource(self, resource: Resource, namespace: str, name: str, subresource: str,
                        group_version: str) -> None:
        path = "/apis/%s/namespaces/%s/%s/%s/%s" % (group_version, namespace, resource.plural, name, subresource)
        self.client.request(Call("update", "%s/%s" % (resource.full_name, subresource), namespace, name),
                            "PUT", path, body={})
