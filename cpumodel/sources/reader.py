"""Typed reads over any Source: the gather step of every command."""
from __future__ import annotations

from typing import Any, Callable, Collection, Dict, List, Optional, Tuple, TypeVar

from cpumodel import objects
from cpumodel.core.platform import HARVESTER_CHART, ClusterConfig, detect_platform, owned_config
from cpumodel.errors import Forbidden, NotFound, SourceError
from cpumodel.sources import resources as r
from cpumodel.sources.base import Source

LAUNCHER_UIDS_PER_REQUEST = 100  # keeps a label selector of VMI uids well inside URL limits
PER_NODE_POD_LISTS = 8  # room on at most this many nodes is read node by node, else in one cluster-wide list
# The pods kube-scheduler counts on a node: its informer's field selector (pkg/scheduler/scheduler.go).
COUNTED_PODS = "status.phase!=Succeeded,status.phase!=Failed"

Usage = Dict[str, Tuple[Dict[str, int], int]]  # node -> (summed requests, pod count)


def _meta(obj: Any) -> Dict[str, Any]:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta if isinstance(meta, dict) else {}


Parts = Dict[Tuple[str, str, str], Tuple[Optional[str], tuple]]  # (kind, namespace, name) -> (model, features)


def _profile(vm: objects.VirtualMachine, parts: Parts) -> objects.CpuProfile:
    """KubeVirt applies the snapshot in the VM's ControllerRevision, not today's object, when there is one."""
    def part(ref: Optional[Tuple[str, str]], revision: Optional[str]):
        if ref is None:
            return None, None, None, ()
        kind, name = ref
        if revision and ("ControllerRevision", vm.namespace, revision) in parts:
            return ("%s/%s" % ref, revision) + parts[("ControllerRevision", vm.namespace, revision)]
        scope = "" if kind.startswith("VirtualMachineCluster") else vm.namespace
        return ("%s/%s" % ref, None) + parts.get((kind, scope, name), (None, ()))

    it_name, revision, model, _ = part(vm.instancetype, vm.instancetype_revision)
    pref_name, _, _, features = part(vm.preference, vm.preference_revision)
    return objects.CpuProfile(it_name if model else None, revision if model else None, model,
                              pref_name if features else None, features)


T = TypeVar("T")


class ClusterReader:
    def __init__(self, source: Source):
        self.source = source
        self._config: Optional[ClusterConfig] = None
        self.skipped: List[str] = []  # optional reads RBAC refused, each said once as a warning

    def optional(self, what: str, read: Callable[[], T], instead: T) -> T:
        """A read the answer can do without (events, past migrations, pods of other namespaces): when RBAC
        refuses it, the command goes on without it and says what it could not read."""
        try:
            return read()
        except Forbidden as exc:
            note = "%s not read (%s); the answer is given without them" % (what, exc)
            if note not in self.skipped:
                self.skipped.append(note)
            return instead

    # ---- nodes ----------------------------------------------------------------
    def nodes(self, label_selector: Optional[str] = None, view: str = "full",
              then: Optional[Callable[[objects.Node], Any]] = None) -> List[Any]:
        """Nodes as typed values, parsed page by page so raw pages never pile up.

        view "metadata": labels only (diff); "status": labels, readiness, cordon (common,
        set); "full": also taints (why-not).
        """
        keep = objects.parse_node if then is None else (lambda raw: then(objects.parse_node(raw)))
        return self.source.list(r.NODES, label_selector=label_selector, view=view, keep=keep)

    def node(self, name: str) -> objects.Node:
        return objects.parse_node(self.source.get(r.NODES, None, name))

    # ---- KubeVirt configuration --------------------------------------------------
    def kubevirt_raw(self) -> Optional[Dict[str, Any]]:
        """The KubeVirt CR, found by listing (kubevirt on plain KubeVirt, harvester-system on Harvester)."""
        try:
            found = self.source.list(r.KUBEVIRTS)
        except NotFound:  # KubeVirt's CRDs are not installed
            return None
        if len(found) > 1:
            names = ", ".join("%s/%s" % (o["metadata"].get("namespace"), o["metadata"].get("name")) for o in found)
            raise SourceError("found %d KubeVirt CRs (%s); KubeVirt supports exactly one" % (len(found), names))
        return found[0] if found else None

    def kubevirt(self) -> Optional[objects.KubeVirtConfig]:
        """The KubeVirt configuration in effect, with the cluster default from where it is owned."""
        return self.cluster_config().kubevirt

    def cluster_config(self) -> ClusterConfig:
        """Platform and KubeVirt configuration; on OpenShift the HyperConverged CR too. Read once per run."""
        if self._config is None:
            raw = self.kubevirt_raw()
            kubevirt = objects.parse_kubevirt(raw) if raw else None
            if kubevirt is None:
                self._config = ClusterConfig(None, None)
            elif kubevirt.hco_owner:
                self._config = owned_config(kubevirt, *self._hyperconverged(kubevirt))
            else:
                self._config = ClusterConfig(detect_platform(kubevirt), kubevirt)
        return self._config

    def _hyperconverged(self, kubevirt: objects.KubeVirtConfig
                        ) -> Tuple[Optional[objects.HyperConverged], Optional[str]]:
        """The HyperConverged CR that owns the KubeVirt CR (same namespace), read at the server's preferred
        version; or None and why not."""
        where = "HyperConverged %s/%s" % (kubevirt.namespace, kubevirt.hco_owner)
        try:
            version = self.source.preferred_version(r.HCO_GROUP)
            if version is None:
                return None, "%s: the cluster does not serve %s" % (where, r.HCO_GROUP)
            raw = self.source.get(r.hyperconvergeds(version), kubevirt.namespace, kubevirt.hco_owner or "")
            return objects.parse_hyperconverged(raw), None
        except SourceError as exc:  # not found, forbidden, unreachable, a version we do not know: the KubeVirt
            return None, "%s: %s" % (where, exc)  # CR still says what is in effect

    def harvester_chart(self) -> Optional[Dict[str, Any]]:
        try:
            return self.source.get(r.MANAGEDCHARTS, HARVESTER_CHART.namespace, HARVESTER_CHART.name)
        except NotFound:
            return None

    def harvester_version(self) -> Optional[str]:
        """Harvester's release: the chart version of its ManagedChart (upgrades bump it with the release), else
        its `server-version` Setting (value, else default) -- read only on a cluster with that ManagedChart, so a
        cluster without Harvester's API is not asked for it; None when neither names a release."""
        from cpumodel.objects import parse_version

        def release(text: Any) -> Optional[str]:
            if isinstance(text, str) and parse_version(text) and "dev" not in text and "head" not in text:
                return text if text.startswith("v") else "v" + text
            return None

        chart = self.optional("Harvester's ManagedChart", self.harvester_chart, None)
        if chart is None:
            return None
        found = release((chart.get("spec") or {}).get("version"))
        if found:
            return found

        def setting() -> Dict[str, Any]:
            try:
                return self.source.get(r.SETTINGS, None, "server-version")
            except NotFound:
                return {}
        raw = self.optional("Harvester's server-version Setting", setting, {})
        return release(raw.get("value")) or release(raw.get("default"))

    # ---- VMs ------------------------------------------------------------------------
    def find_vm_namespace(self, kind: str, name: str, all_namespaces: bool = False) -> str:
        """-n, else the default namespace; with -A (and offline without -n), the one namespace holding that name."""
        src = self.source
        if src.namespace_explicit or not (src.offline or all_namespaces):
            return src.namespace
        resource = r.VMIS if kind == "vmi" else r.VMS
        found = self.kubevirt_list(resource, None, field_selector="metadata.name=%s" % name)
        spaces = sorted({str(_meta(o).get("namespace") or "default") for o in found if _meta(o).get("name") == name})
        if len(spaces) > 1:
            raise SourceError("%s %s exists in namespaces %s: pass -n" % (kind, name, ", ".join(spaces)))
        return spaces[0] if spaces else src.namespace

    def check_namespace(self, namespace: str) -> None:
        """Turn "VM not found" into "namespace not found", or "KubeVirt is not installed", when that is the
        real problem."""
        if self.source.offline and not self.source.list(r.NAMESPACES):
            return  # snapshots often hold no Namespace objects
        self.source.get(r.NAMESPACES, None, namespace)
        if not self.source.offline:
            self.kubevirt_installed()

    def cpu_profiles(self, vms: List[objects.VirtualMachine]) -> Dict[Tuple[str, str], objects.CpuProfile]:
        """(namespace, name) -> what each VM's instancetype and preference give its CPU; only VMs that
        reference one, and only the kinds they reference are read (one list per kind), plus the
        ControllerRevisions that hold the snapshots KubeVirt actually applies."""
        wanted = [vm for vm in vms if vm.instancetype or vm.preference]
        if not wanted:
            return {}
        spaces = {vm.namespace for vm in wanted}
        namespace = next(iter(spaces)) if len(spaces) == 1 else None
        kinds = {ref[0] for vm in wanted for ref in (vm.instancetype, vm.preference) if ref}
        if any(vm.instancetype_revision or vm.preference_revision for vm in wanted):
            kinds.add(r.CONTROLLER_REVISIONS.kind)
        parts: Parts = {}
        for resource in (r.INSTANCETYPES, r.CLUSTER_INSTANCETYPES, r.PREFERENCES, r.CLUSTER_PREFERENCES,
                         r.CONTROLLER_REVISIONS):
            if resource.kind not in kinds:
                continue
            try:
                items = self.source.list(resource, namespace if resource.namespaced else None)
            except NotFound:  # the instancetype API is not installed
                continue
            for item in items:
                meta = _meta(item)
                ns = str(meta.get("namespace") or "") if resource.namespaced else ""
                stored = item.get("data") if resource is r.CONTROLLER_REVISIONS else item
                if isinstance(stored, dict):
                    parts[(resource.kind, ns, str(meta.get("name", "")))] = objects.parse_profile_part(stored)
        return {(vm.namespace, vm.name): _profile(vm, parts) for vm in wanted}

    def kubevirt_installed(self) -> None:
        """Turn "VM not found" into "KubeVirt is not installed" when the API itself is missing."""
        try:
            self.source.list(r.KUBEVIRTS)
        except NotFound:
            raise SourceError("KubeVirt is not installed: the cluster does not serve %s" % r.VMS.full_name)

    def vm(self, namespace: str, name: str) -> objects.VirtualMachine:
        return objects.parse_vm(self.source.get(r.VMS, namespace, name))

    def vms(self, namespace: Optional[str], label_selector: Optional[str] = None) -> List[objects.VirtualMachine]:
        return [vm for vm, _ in self.vm_objects(namespace, label_selector)]

    def vm_objects(self, namespace: Optional[str], label_selector: Optional[str] = None
                   ) -> List[Tuple[objects.VirtualMachine, Dict[str, Any]]]:
        """VMs parsed, each beside the raw object a write starts from."""
        return [(objects.parse_vm(o), o) for o in self.kubevirt_list(r.VMS, namespace, label_selector)]

    def kubevirt_list(self, resource: r.Resource, namespace: Optional[str], label_selector: Optional[str] = None,
                      field_selector: Optional[str] = None) -> List[Dict[str, Any]]:
        """A list of one of KubeVirt's own types: a server that does not serve it has no KubeVirt."""
        try:
            return self.source.list(resource, namespace, label_selector=label_selector, field_selector=field_selector)
        except NotFound:
            raise SourceError("KubeVirt is not installed: the cluster does not serve %s" % resource.full_name)

    def vm_object(self, namespace: str, name: str) -> Tuple[objects.VirtualMachine, Dict[str, Any]]:
        raw = self.source.get(r.VMS, namespace, name)
        return objects.parse_vm(raw), raw

    def vmi(self, namespace: str, name: str) -> Optional[objects.VirtualMachineInstance]:
        try:
            return objects.parse_vmi(self.source.get(r.VMIS, namespace, name))
        except NotFound:
            return None

    def vmis(self, namespace: Optional[str] = None, label_selector: Optional[str] = None
             ) -> List[objects.VirtualMachineInstance]:
        return [objects.parse_vmi(o) for o in self.kubevirt_list(r.VMIS, namespace, label_selector)]

    def vmis_on(self, nodes: List[str]) -> List[objects.VirtualMachineInstance]:
        """VMIs on these nodes, in every namespace: KubeVirt labels each VMI with its node (kubevirt.io/nodeName)."""
        return self.vmis(None, "kubevirt.io/nodeName in (%s)" % ",".join(sorted(nodes)))

    def launchers(self, namespace: Optional[str] = None,
                  vmis: Optional[List[objects.VirtualMachineInstance]] = None) -> List[objects.Pod]:
        """virt-launcher pods, by label selector: of the given VMIs (100 a request), else all in the namespace."""
        base = "kubevirt.io=virt-launcher"
        if vmis is None:
            return [objects.parse_pod(p) for p in self.source.list(r.PODS, namespace, label_selector=base)]
        uids = sorted({v.uid for v in vmis if v.uid})
        pods: List[objects.Pod] = []
        for start in range(0, len(uids), LAUNCHER_UIDS_PER_REQUEST):
            chunk = ",".join(uids[start:start + LAUNCHER_UIDS_PER_REQUEST])
            pods += [objects.parse_pod(p) for p in self.source.list(
                r.PODS, namespace, label_selector="%s,kubevirt.io/created-by in (%s)" % (base, chunk))]
        return pods

    def pods_for(self, wanted: List[Tuple[objects.PodAffinityTerm, str]]) -> List[objects.Pod]:
        """The pods that pod (anti-)affinity terms look at, each listed once: one label-selected list per
        distinct (namespace, selector), never every pod of the cluster unless a term selects them all."""
        from cpumodel.core.pod_affinity import pod_queries  # only VMs with such terms need it

        seen: Dict[str, objects.Pod] = {}
        for namespace, selector in pod_queries(wanted):
            listed = self.optional("pods %s that pod (anti-)affinity terms select" % (
                'in namespace "%s"' % namespace if namespace else "of every namespace"),
                lambda: self.source.list(r.PODS, namespace, label_selector=selector or None), [])
            for raw in listed:
                pod = objects.parse_pod(raw)
                seen.setdefault(pod.uid or "%s/%s" % (pod.namespace, pod.name), pod)
        return list(seen.values())

    def node_usage(self, nodes: Optional[Collection[str]] = None) -> Tuple[Optional[Usage], str]:
        """What the pods the scheduler counts take on each node (their requests and number), and how it was read:
        node by node (spec.nodeName) when `nodes` are few, else one paged list of every namespace; each pod is
        reduced to its node and requests as its page arrives. None when RBAC refuses the pods (said as a
        warning): the answer is then given without room."""
        used: Dict[str, List[Any]] = {}

        def count(raw: Any) -> None:
            found = objects.pod_usage(raw)
            if found is not None:
                node, requests = found
                entry = used.get(node)
                if entry is None:
                    entry = used[node] = [{}, 0]
                entry[1] += 1
                for resource, value in requests:
                    entry[0][resource] = entry[0].get(resource, 0) + value

        per_node = nodes is not None and len(nodes) <= PER_NODE_POD_LISTS

        def read() -> bool:
            for selector in (["spec.nodeName=%s,%s" % (n, COUNTED_PODS) for n in sorted(nodes or ())] if per_node
                             else [COUNTED_PODS]):
                self.source.list(r.PODS, None, field_selector=selector, keep=count)
            return True

        how = "the pods of %d node%s" % (len(nodes or ()), "" if len(nodes or ()) == 1 else "s") if per_node \
            else "the pods of every node"
        if not self.optional("pods of every namespace (room on the target nodes)", read, False):
            return None, how
        return {node: (entry[0], entry[1]) for node, entry in used.items()}, how

    def vm_labels(self, key: str) -> Dict[Tuple[str, str], str]:
        """(namespace, name) -> value of one label, for the VMs in any namespace that carry it."""
        return {(vm.namespace, vm.name): vm.labels[key] for vm in self.vms(None, key)}

    def launcher_pods(self, vmi: objects.VirtualMachineInstance) -> List[objects.Pod]:
        """virt-launcher pods of a VMI, by label selector (never all pods), newest first."""
        selector = "kubevirt.io=virt-launcher,kubevirt.io/created-by=%s" % vmi.uid
        pods = [objects.parse_pod(p) for p in self.source.list(r.PODS, vmi.namespace, label_selector=selector)]
        return sorted(pods, key=lambda p: (p.created, p.name), reverse=True)

    def migrations(self, namespace: str, vmi_name: str) -> List[objects.Migration]:
        # KubeVirt's VMIM mutating webhook labels every migration with its VMI (MigrationSelectorLabel).
        found = self.optional("migrations (virtualmachineinstancemigrations.kubevirt.io)", lambda: self.source.list(
            r.VMIMS, namespace, label_selector="kubevirt.io/vmi-name=%s" % vmi_name), [])
        return sorted((objects.parse_migration(m) for m in found), key=lambda m: (m.created, m.name))

    def migration_target_pods(self) -> List[objects.Pod]:
        """Every migration target pod of the cluster (a virt-launcher labelled kubevirt.io/migrationJobUID; it stays
        the VM's launcher after the migration): the newest shows whether the running virt-controller adds the
        vendor rule (kubevirt-rules §5). Optional: without the right to list pods cluster-wide, the evidence is
        what the command read anyway, and the version table."""
        return self.optional("migration target pods of every namespace (evidence of the vendor rule)",
                             lambda: self.source.list(r.PODS, None, label_selector="kubevirt.io=virt-launcher,"
                                                      "kubevirt.io/migrationJobUID", keep=objects.parse_pod), [])

    def migration_pods(self, namespace: str, migration_uid: str) -> List[objects.Pod]:
        selector = "kubevirt.io/migrationJobUID=%s" % migration_uid
        found = self.optional("migration target pods", lambda: self.source.list(
            r.PODS, namespace, label_selector=selector), [])
        return [objects.parse_pod(p) for p in found]

    def events_for(self, namespace: str, names: Tuple[str, ...]) -> List[objects.Event]:
        """Events about these objects from both event APIs (core v1 and events.k8s.io/v1), each event once:
        kube-apiserver serves one store through both, other sources may fill only one."""
        seen: Dict[Tuple[str, str], objects.Event] = {}
        for resource, field in ((r.EVENTS, "involvedObject.name"), (r.EVENTS_V1, "regarding.name")):
            for name in names:
                try:
                    raw = self.optional("events (%s)" % resource.full_name, lambda: self.source.list(
                        resource, namespace, field_selector="%s=%s" % (field, name)), [])
                except NotFound:  # a server without this API
                    break
                for item in raw:
                    event = objects.parse_event(item)
                    seen.setdefault((str(_meta(item).get("uid") or _meta(item).get("name")), event.reason), event)
        return sorted(seen.values(), key=lambda e: (e.timestamp, e.reason))
