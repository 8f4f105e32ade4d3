"""Which platform runs KubeVirt, and where it keeps the cluster-wide CPU settings (docs/kubevirt-rules.md §7).

On OpenShift Virtualization the HyperConverged Cluster Operator (HCO) creates the KubeVirt CR
and reconciles it from its HyperConverged CR: the default model and the obsolete list are
owned there, and a direct edit of the KubeVirt CR is set back. Harvester renders the KubeVirt
CR from its ManagedChart. Plain KubeVirt keeps both in the KubeVirt CR.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Optional

from cpumodel.errors import SourceError, UsageError
from cpumodel.objects import FieldRef, HyperConverged, KubeVirtConfig

OPENSHIFT = "openshift"
HARVESTER = "harvester"
KUBEVIRT = "kubevirt"
HARVESTER_NAMESPACE = "harvester-system"
# Harvester renders the KubeVirt CR from this chart's values: a default written there survives upgrades.
HARVESTER_CHART = FieldRef("management.cattle.io/v3", "ManagedChart", "fleet-local", "harvester",
                           ("spec", "values", "kubevirt", "spec", "configuration", "cpuModel"))
NAMES = {OPENSHIFT: "OpenShift Virtualization (HyperConverged Cluster Operator)", HARVESTER: "Harvester",
         KUBEVIRT: "KubeVirt"}


@dataclass(frozen=True)
class ClusterConfig:
    """The KubeVirt configuration in effect, the platform, and the HyperConverged CR when HCO manages KubeVirt."""

    platform: Optional[str]  # None: no KubeVirt CR found
    kubevirt: Optional[KubeVirtConfig]  # with the owner's default model and obsolete models applied
    hco: Optional[HyperConverged] = None
    hco_problem: Optional[str] = None  # why the owning HyperConverged CR could not be read
    drift: Optional[str] = None  # the KubeVirt CR disagrees with its owner: HCO sets it back


def detect_platform(kubevirt: Optional[KubeVirtConfig], harvester_chart: bool = False) -> Optional[str]:
    if kubevirt is None:
        return None
    if kubevirt.hco_owner:
        return OPENSHIFT
    if harvester_chart or kubevirt.namespace == HARVESTER_NAMESPACE:
        return HARVESTER
    return KUBEVIRT


def owned_config(kubevirt: KubeVirtConfig, hco: Optional[HyperConverged], hco_problem: Optional[str] = None
                 ) -> ClusterConfig:
    """The configuration as its owner has it: HCO copies its default model into the KubeVirt CR and adds its
    obsolete models to its own built-in list there, so the CR's list already holds HCO's defaults."""
    platform = detect_platform(kubevirt)
    if hco is None:
        return ClusterConfig(platform, kubevirt, None, hco_problem)
    drift = None
    if (kubevirt.cpu_model or None) != hco.cpu_model:
        drift = ("the KubeVirt CR %s/%s says cpuModel %s, but its owner HyperConverged %s/%s says %s: "
                 "HCO sets the KubeVirt CR back to its owner's value" % (
                     kubevirt.namespace, kubevirt.name, kubevirt.cpu_model or "<unset>", hco.namespace, hco.name,
                     hco.cpu_model or "<unset>"))
    obsolete = kubevirt.obsolete_cpu_models
    if hco.obsolete_cpu_models:
        obsolete = (obsolete or frozenset()) | hco.obsolete_cpu_models
    effective = replace(kubevirt, cpu_model=hco.cpu_model, obsolete_cpu_models=obsolete, model_owner=hco.model_field)
    return ClusterConfig(platform, effective, hco, None, drift)


def write_target(config: ClusterConfig, target: Optional[str], harvester_chart: Callable[[], bool]) -> FieldRef:
    """Where `set --cluster` writes the default: where it is owned, unless --target (hco, kubevirt,
    managedchart) says otherwise. `harvester_chart` answers whether the ManagedChart exists (a read, so
    asked only when it matters)."""
    kubevirt = config.kubevirt
    if kubevirt is None:
        raise UsageError("no KubeVirt CR found in any namespace: is KubeVirt installed?")
    if target == "hco" or (target is None and config.platform == OPENSHIFT):
        return owner_field(config)
    if target == "kubevirt":
        return replace(kubevirt, model_owner=None).model_field
    if harvester_chart():
        return HARVESTER_CHART
    if target == "managedchart":
        raise UsageError("--target managedchart: ManagedChart %s/%s not found (not a Harvester cluster?)"
                         % (HARVESTER_CHART.namespace, HARVESTER_CHART.name))
    return kubevirt.model_field


def owner_field(config: ClusterConfig) -> FieldRef:
    """The HyperConverged CR's default-model field, at the version the server serves (its path differs)."""
    if config.hco is not None:
        return config.hco.model_field
    kubevirt = config.kubevirt
    if kubevirt is not None and kubevirt.hco_owner:
        raise SourceError("the KubeVirt CR %s/%s is managed by HCO, which sets direct edits back, and its "
                          "HyperConverged CR could not be read (%s); fix that and retry, or write the KubeVirt CR "
                          "anyway with --target kubevirt" % (kubevirt.namespace, kubevirt.name, config.hco_problem))
    raise UsageError("--target hco: no HyperConverged CR manages KubeVirt here (not OpenShift Virtualization)")
