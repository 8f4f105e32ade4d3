"""The CustomResourceDefinitions the controlplane tests install in a real kube-apiserver.

Written for this project from the shapes KubeVirt, HCO and Harvester publish (names, short names, scope,
served versions, subresources and printer columns as in KubeVirt's `crds.go`, v1.9.0). The schemas are
typed on every path the plugin reads for a decision or writes — the CPU model and features, node
selectors, the KubeVirt CR's CPU configuration, HCO's default model fields — so that the real server
prunes a misspelt field there as a real cluster would; elsewhere they keep unknown fields.
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Optional

Schema = Dict[str, Any]

STRING: Schema = {"type": "string"}
INTEGER: Schema = {"type": "integer"}
BOOLEAN: Schema = {"type": "boolean"}
STRING_MAP: Schema = {"type": "object", "additionalProperties": {"type": "string"}}
STRINGS: Schema = {"type": "array", "items": {"type": "string"}}


def loose(properties: Optional[Dict[str, Schema]] = None) -> Schema:
    """An object that keeps unknown fields; the named ones are typed."""
    schema: Schema = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if properties:
        schema["properties"] = properties
    return schema


def strict(properties: Dict[str, Schema], required: Iterable[str] = ()) -> Schema:
    """An object whose unknown fields the server prunes."""
    schema: Schema = {"type": "object", "properties": properties}
    if required:
        schema["required"] = list(required)
    return schema


def _features() -> Schema:
    return {"type": "array", "items": strict({"name": STRING, "policy": STRING}, required=["name"])}


# KubeVirt's v1.CPU: what `set` writes (model) and what the engine reads (features, dedicated placement, ...).
CPU = strict({
    "model": STRING, "cores": INTEGER, "sockets": INTEGER, "threads": INTEGER, "maxSockets": INTEGER,
    "features": _features(), "dedicatedCpuPlacement": BOOLEAN, "isolateEmulatorThread": BOOLEAN,
    "realtime": strict({"mask": STRING}), "numa": loose(),
})


def _vmi_spec() -> Schema:
    return loose({
        "domain": loose({"cpu": CPU, "features": loose(), "machine": loose({"type": STRING})}),
        "nodeSelector": STRING_MAP, "affinity": loose(), "tolerations": {"type": "array", "items": loose()},
        "architecture": STRING, "evictionStrategy": STRING,
    })


def _matcher() -> Schema:
    return strict({"name": STRING, "kind": STRING, "revisionName": STRING, "inferFromVolume": STRING,
                   "inferFromVolumeFailurePolicy": STRING})


VM_SCHEMA = strict({
    "apiVersion": STRING, "kind": STRING, "metadata": {"type": "object"},
    "spec": loose({
        "runStrategy": STRING, "running": BOOLEAN,
        "instancetype": _matcher(), "preference": _matcher(),
        "template": loose({"metadata": loose(), "spec": _vmi_spec()}),
    }),
    "status": loose({"printableStatus": STRING, "ready": BOOLEAN}),
})

VMI_SCHEMA = strict({
    "apiVersion": STRING, "kind": STRING, "metadata": {"type": "object"},
    "spec": _vmi_spec(),
    "status": loose({"phase": STRING, "nodeName": STRING}),
})

VMIM_SCHEMA = strict({
    "apiVersion": STRING, "kind": STRING, "metadata": {"type": "object"},
    "spec": loose({"vmiName": STRING}),
    "status": loose({"phase": STRING}),
})

KUBEVIRT_SCHEMA = strict({
    "apiVersion": STRING, "kind": STRING, "metadata": {"type": "object"},
    "spec": loose({
        "configuration": loose({
            "cpuModel": STRING,
            "obsoleteCPUModels": {"type": "object", "additionalProperties": BOOLEAN},
            "evictionStrategy": STRING,
            "developerConfiguration": loose({"featureGates": STRINGS, "nodeSelectors": STRING_MAP}),
        }),
        "workloadUpdateStrategy": loose(),
    }),
    "status": loose({"observedKubeVirtVersion": STRING, "phase": STRING}),
})

# HCO's api/v1beta1 and api/v1 HyperConverged types: where each version keeps the default model.
HCO_SCHEMAS = {
    "v1beta1": strict({
        "apiVersion": STRING, "kind": STRING, "metadata": {"type": "object"},
        "spec": loose({"defaultCPUModel": STRING, "obsoleteCPUs": strict({"cpuModels": STRINGS, "minCPUModel": STRING})}),
        "status": loose(),
    }),
    "v1": strict({
        "apiVersion": STRING, "kind": STRING, "metadata": {"type": "object"},
        "spec": loose({"virtualization": loose({
            "virtualMachineOptions": loose({"defaultCPUModel": STRING}),
            "obsoleteCPUModels": STRINGS,
        })}),
        "status": loose(),
    }),
}

INSTANCETYPE_SCHEMA = strict({
    "apiVersion": STRING, "kind": STRING, "metadata": {"type": "object"},
    "spec": loose({"cpu": loose({"guest": INTEGER, "model": STRING, "dedicatedCPUPlacement": BOOLEAN})}),
})

PREFERENCE_SCHEMA = strict({
    "apiVersion": STRING, "kind": STRING, "metadata": {"type": "object"},
    "spec": loose({"cpu": loose({"preferredCPUTopology": STRING, "preferredCPUFeatures": _features()})}),
})

ANY_SCHEMA = loose()


def _column(name: str, path: str, kind: str = "string") -> Dict[str, str]:
    return {"name": name, "jsonPath": path, "type": kind}


AGE = _column("Age", ".metadata.creationTimestamp", "date")


def crd(group: str, kind: str, plural: str, namespaced: bool, versions: List[str], schema: Schema,
        short_names: Iterable[str] = (), categories: Iterable[str] = (), status: bool = False,
        columns: Iterable[Dict[str, str]] = (), schemas: Optional[Dict[str, Schema]] = None,
        storage: Optional[str] = None) -> Dict[str, Any]:
    """A CustomResourceDefinition; `storage` defaults to the first version."""
    storage = storage or versions[0]
    entries = []
    for version in versions:
        entry: Dict[str, Any] = {"name": version, "served": True, "storage": version == storage,
                                 "schema": {"openAPIV3Schema": (schemas or {}).get(version, schema)}}
        if status:
            entry["subresources"] = {"status": {}}
        if columns:
            entry["additionalPrinterColumns"] = list(columns)
        entries.append(entry)
    names: Dict[str, Any] = {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": kind + "List"}
    if short_names:
        names["shortNames"] = list(short_names)
    if categories:
        names["categories"] = list(categories)
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "%s.%s" % (plural, group)},
            "spec": {"group": group, "scope": "Namespaced" if namespaced else "Cluster", "names": names,
                     "versions": entries}}


def kubevirt_crds() -> List[Dict[str, Any]]:
    """KubeVirt's four core kinds: v1 stored, v1alpha3 served as well (as KubeVirt does)."""
    ready = _column("Ready", ".status.ready", "boolean")
    return [
        crd("kubevirt.io", "VirtualMachine", "virtualmachines", True, ["v1", "v1alpha3"], VM_SCHEMA,
            ["vm", "vms"], ["all"], status=True,
            columns=[AGE, _column("Status", ".status.printableStatus"), ready]),
        # VirtualMachineInstance has no status subresource in KubeVirt: its status is written with the object.
        crd("kubevirt.io", "VirtualMachineInstance", "virtualmachineinstances", True, ["v1", "v1alpha3"], VMI_SCHEMA,
            ["vmi", "vmis"], ["all"],
            columns=[AGE, _column("Phase", ".status.phase"), _column("NodeName", ".status.nodeName")]),
        crd("kubevirt.io", "VirtualMachineInstanceMigration", "virtualmachineinstancemigrations", True,
            ["v1", "v1alpha3"], VMIM_SCHEMA, ["vmim", "vmims"], ["all"], status=True,
            columns=[_column("Phase", ".status.phase"), _column("VMI", ".spec.vmiName")]),
        crd("kubevirt.io", "KubeVirt", "kubevirts", True, ["v1", "v1alpha3"], KUBEVIRT_SCHEMA, ["kv", "kvs"],
            ["all"], status=True, columns=[AGE, _column("Phase", ".status.phase")]),
    ]


def instancetype_crds() -> List[Dict[str, Any]]:
    group = "instancetype.kubevirt.io"
    return [
        crd(group, "VirtualMachineInstancetype", "virtualmachineinstancetypes", True, ["v1beta1"],
            INSTANCETYPE_SCHEMA, ["vmit", "vmits"]),
        crd(group, "VirtualMachineClusterInstancetype", "virtualmachineclusterinstancetypes", False, ["v1beta1"],
            INSTANCETYPE_SCHEMA, ["vmcit", "vmcits"]),
        crd(group, "VirtualMachinePreference", "virtualmachinepreferences", True, ["v1beta1"], PREFERENCE_SCHEMA,
            ["vmpref", "vmprefs"]),
        crd(group, "VirtualMachineClusterPreference", "virtualmachineclusterpreferences", False, ["v1beta1"],
            PREFERENCE_SCHEMA, ["vmcpref", "vmcprefs"]),
    ]


def hco_crd(version: str) -> Dict[str, Any]:
    """HyperConverged served at one version: HCO converts between v1beta1 and v1 with a webhook, which a bare
    API server does not run, so each test cluster serves the one version its objects are written in."""
    return crd("hco.kubevirt.io", "HyperConverged", "hyperconvergeds", True, [version], HCO_SCHEMAS[version],
               ["hco", "hcos"], status=True, schemas=HCO_SCHEMAS)


def managedchart_crd() -> Dict[str, Any]:
    return crd("management.cattle.io", "ManagedChart", "managedcharts", True, ["v3"], ANY_SCHEMA, status=True)


def all_crds(hco_version: str = "v1beta1") -> List[Dict[str, Any]]:
    return kubevirt_crds() + instancetype_crds() + [hco_crd(hco_version), managedchart_crd()]
