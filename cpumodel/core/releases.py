"""What each platform release brings that changes where a VM may move (docs/kubevirt-rules.md §13).

Every table here is read from the upstream tree at the tag named, never inferred:
- Harvester → its bundled KubeVirt: `deploy/charts/harvester/values.yaml` (`kubevirtVersion`) at each tag of
  harvester/harvester; v1.9.0 from the v1.9.0 release candidates and master (KubeVirt 1.8.4).
- Harvester's upgrade path: `package/upgrade-matrix.yaml` (`minUpgradableVersion`) at v1.8.2, which
  upgrade-helper's version guard enforces (`pkg/upgradehelper/versionguard`): no downgrade, and the running
  version must be at least the target's minimum.
- Known CPU feature changes (FEATURE_RULES): each entry cites the issue or note it comes from.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from cpumodel.objects import parse_version

Version = Tuple[int, int, int]

# Harvester release -> the KubeVirt it ships (the SUSE build's upstream version).
HARVESTER_KUBEVIRT: Dict[str, str] = {
    "v1.1.0": "v0.54.0", "v1.1.1": "v0.54.0", "v1.1.2": "v0.54.0", "v1.1.3": "v0.54.0",
    "v1.2.0": "v0.54.0", "v1.2.1": "v0.54.0", "v1.2.2": "v1.1.1",
    "v1.3.0": "v1.1.0", "v1.3.1": "v1.1.1", "v1.3.2": "v1.1.1",
    "v1.4.0": "v1.2.2", "v1.4.1": "v1.2.2", "v1.4.2": "v1.3.1", "v1.4.3": "v1.3.1",
    "v1.5.0": "v1.4.0", "v1.5.1": "v1.4.0", "v1.5.2": "v1.4.1",
    "v1.6.0": "v1.5.2", "v1.6.1": "v1.5.2",
    "v1.7.0": "v1.6.3", "v1.7.1": "v1.6.3", "v1.7.2": "v1.6.6", "v1.7.3": "v1.6.6",
    "v1.8.0": "v1.7.0", "v1.8.1": "v1.7.0", "v1.8.2": "v1.7.4",
    "v1.9.0": "v1.8.4",
}

# Harvester release -> the oldest release it upgrades from (upgrade-matrix.yaml at v1.8.2).
HARVESTER_MIN_UPGRADABLE: Dict[str, str] = {
    "v1.8.2": "v1.7.0", "v1.8.1": "v1.7.0", "v1.8.0": "v1.7.0",
    "v1.7.3": "v1.6.0", "v1.7.2": "v1.6.0", "v1.7.1": "v1.6.0", "v1.7.0": "v1.6.0",
    "v1.6.1": "v1.5.0", "v1.6.0": "v1.5.0",
    "v1.5.2": "v1.4.2", "v1.5.1": "v1.4.2", "v1.5.0": "v1.4.2",
    "v1.4.3": "v1.4.1", "v1.4.2": "v1.4.1", "v1.4.1": "v1.4.0", "v1.4.0": "v1.3.2",
    "v1.3.2": "v1.3.1", "v1.3.1": "v1.2.2", "v1.3.0": "v1.2.2",
    "v1.2.2": "v1.2.1", "v1.2.1": "v1.1.2", "v1.2.0": "v1.1.2",
    "v1.1.3": "v1.1.1", "v1.1.2": "v1.1.0", "v1.1.1": "v1.0.3", "v1.1.0": "v1.0.3",
}

# Harvester's upgrade runs the target release's node script (package/upgrade/upgrade_node.sh), so the target
# decides what happens to each VM:
# - from v1.7.0 (harvester PR #9326, commit 06d74e831) its pre-drain stops (`virtctl stop`) a VM whose
#   evacuation migration failed, instead of waiting for ever;
# - from v1.3.0 its pre-drain first shuts down the VMs upgrade-helper's vm-live-migrate-detector deems not
#   live-migratable (pkg/util/virtualmachineinstance GetAllNonLiveMigratableVMINames); from v1.4.2 until v1.8.0
#   a CD-ROM or a containerDisk counted too.
HARVESTER_STOPS_FAILED_EVACUATION: Version = (1, 7, 0)
HARVESTER_DETECTOR_SINCE: Version = (1, 3, 0)
HARVESTER_DETECTOR_MEDIA: Tuple[Version, Version] = ((1, 4, 2), (1, 8, 0))
HARVESTER_WITNESS_LABEL = "node-role.harvesterhci.io/witness"


def version_of(text: Optional[str]) -> Optional[Version]:
    return parse_version(text)


def canonical(text: str) -> str:
    """`1.8.2` and `v1.8.2` name the same release."""
    return text if text.startswith("v") else "v" + text


def harvester_kubevirt(version: Optional[str]) -> Optional[str]:
    return HARVESTER_KUBEVIRT.get(canonical(version)) if version else None


def harvester_releases_with(kubevirt: Optional[str]) -> Tuple[str, ...]:
    """The Harvester releases that ship this KubeVirt (a guess of the platform version when nothing names it)."""
    wanted = version_of(kubevirt)
    return tuple(h for h, k in HARVESTER_KUBEVIRT.items() if wanted is not None and version_of(k) == wanted)


@dataclass(frozen=True)
class FeatureRule:
    """A known change, between two releases, in what the node-labeller reports or QEMU accepts, that breaks the
    migration of some VMs: a rule of the pack below, applied when an upgrade crosses `since`."""

    id: str
    platform: str  # the platform whose releases `since` counts in ("harvester")
    since: Version  # the first release with the change
    until: Optional[Version]  # the first release without it (None: still there)
    subject: str  # what the rule looks at: "threads" (VMs with more than one thread per core), "host-model"
    host_models: Tuple[str, ...]  # subject "host-model": the node host models (name prefixes) the change hits
    status: str  # "fail": the VM stops or hangs during the upgrade; "warn": later migrations fail
    message: str
    fix: str
    reference: str


FEATURE_RULES: Tuple[FeatureRule, ...] = (
    FeatureRule(
        "qemu10-ht", "harvester", (1, 9, 0), None, "threads", (), "fail",
        "QEMU 10 (Harvester v1.9's virt-launcher) reports the `ht` CPU feature differently: the live migration of a "
        "VM with more than one thread per core from an older launcher fails with \"guest CPU doesn't match "
        "specification: extra features: ht\" until libvirt carries the fix (RHEL-104216), so the upgrade's "
        "evacuation of such a VM fails",
        "shut these VMs down before the upgrade, or give them one thread per core",
        "harvester/harvester#11615; harvester/docs#1127 (v1.8.x to v1.9.x known issue)"),
    FeatureRule(
        "ipred-ctrl", "harvester", (1, 6, 0), (1, 7, 0), "host-model", ("SapphireRapids", "EmeraldRapids"), "warn",
        "on Xeon Gold 5418Y, 6542Y and Silver 4509Y nodes the cpu-feature.node.kubevirt.io/ipred-ctrl label appears "
        "during the v1.5 to v1.6 upgrade and is gone afterwards; a host-model VM that migrates meanwhile keeps the "
        "ipred-ctrl selector, and its later migrations fail",
        "set a CPU model all nodes share on these VMs before the upgrade (kubectl cpumodel common), or annotate the "
        "nodes node-labeller.kubevirt.io/skip-node=true during it",
        "harvester/docs docs/upgrade/v1-5-x-to-v1-6-x.md, known issue 8 (harvester/docs#986)"),
)
