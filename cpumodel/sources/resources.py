"""The API resources we read or write, and their REST paths."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Resource:
    plural: str
    group: str
    version: str
    kind: str
    namespaced: bool

    @property
    def group_version(self) -> str:
        return "%s/%s" % (self.group, self.version) if self.group else self.version

    @property
    def full_name(self) -> str:
        """kubectl's name for the type, e.g. `virtualmachines.kubevirt.io`."""
        return "%s.%s" % (self.plural, self.group) if self.group else self.plural

    @property
    def singular_full_name(self) -> str:
        """kubectl's prefix in `TYPE/name verbed` lines, e.g. `virtualmachine.kubevirt.io`."""
        singular = self.kind.lower()
        return "%s.%s" % (singular, self.group) if self.group else singular

    def path(self, namespace: Optional[str] = None, name: Optional[str] = None,
             subresource: Optional[str] = None) -> str:
        base = "/apis/%s" % self.group_version if self.group else "/api/%s" % self.version
        if self.namespaced and namespace:
            base += "/namespaces/%s" % namespace
        base += "/" + self.plural
        if name:
            base += "/" + name
        if subresource:
            base += "/" + subresource
        return base


NODES = Resource("nodes", "", "v1", "Node", False)
NAMESPACES = Resource("namespaces", "", "v1", "Namespace", False)
PODS = Resource("pods", "", "v1", "Pod", True)
EVENTS = Resource("events", "", "v1", "Event", True)
EVENTS_V1 = Resource("events", "events.k8s.io", "v1", "Event", True)
VMS = Resource("virtualmachines", "kubevirt.io", "v1", "VirtualMachine", True)
VMIS = Resource("virtualmachineinstances", "kubevirt.io", "v1", "VirtualMachineInstance", True)
VMIMS = Resource("virtualmachineinstancemigrations", "kubevirt.io", "v1", "VirtualMachineInstanceMigration", True)
KUBEVIRTS = Resource("kubevirts", "kubevirt.io", "v1", "KubeVirt", True)
INSTANCETYPES = Resource("virtualmachineinstancetypes", "instancetype.kubevirt.io", "v1beta1",
                         "VirtualMachineInstancetype", True)
CLUSTER_INSTANCETYPES = Resource("virtualmachineclusterinstancetypes", "instancetype.kubevirt.io", "v1beta1",
                                 "VirtualMachineClusterInstancetype", False)
HCO_GROUP = "hco.kubevirt.io"


def hyperconvergeds(version: str) -> Resource:
    """HCO's CR at the version the server prefers: each version keeps the CPU settings at its own path."""
    return Resource("hyperconvergeds", HCO_GROUP, version, "HyperConverged", True)


PREFERENCES = Resource("virtualmachinepreferences", "instancetype.kubevirt.io", "v1beta1",
                       "VirtualMachinePreference", True)
CLUSTER_PREFERENCES = Resource("virtualmachineclusterpreferences", "instancetype.kubevirt.io", "v1beta1",
                               "VirtualMachineClusterPreference", False)
CONTROLLER_REVISIONS = Resource("controllerrevisions", "apps", "v1", "ControllerRevision", True)
MANAGEDCHARTS = Resource("managedcharts", "management.cattle.io", "v3", "ManagedChart", True)
SETTINGS = Resource("settings", "harvesterhci.io", "v1beta1", "Setting", False)  # Harvester's settings
VM_RESTART = "restart"  # subresources.kubevirt.io/v1 virtualmachines/{name}/restart
SUBRESOURCES_GROUP_VERSION = "subresources.kubevirt.io/v1"
