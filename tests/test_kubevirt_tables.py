"""The virt-launcher pod's node selectors against KubeVirt's own unit tests at v1.9.0 (docs/kubevirt-rules.md
§2.1, §2.2, §5): each case is an input of those tests and the selectors KubeVirt expects, cited by file; the
release each rule appeared in (read at every tag) keeps older clusters on their older behaviour.

- pkg/virt-controller/services/template_test.go: "When scheduling SEV workloads", "... Secure Execution
  workloads", "... TDX workloads", and the CrossArchitectureVirtualization case ("should not set
  kubernetes.io/arch node selector but should set ... hard vm-arch selector").
- pkg/virt-api/webhooks/mutating-webhook/mutators/vmi-mutator_test.go: "should set the hyperv dependencies"
  and the table "modify the VMI cpu feature" (evmcs brings the vmx feature with policy require).
"""
import json

import pytest
import yaml

from conftest import run_cli
from cpumodel import objects
from cpumodel.core.launcher_pod import fresh_start, start_vmi
from testkit import kubevirt as kv

SEV, SEV_ES, SNP, S390_PV, TDX = ("kubevirt.io/sev", "kubevirt.io/sev-es", "kubevirt.io/sev-snp",
                                  "kubevirt.io/s390-pv", "kubevirt.io/tdx")
SECURITY_LABELS = {SEV, SEV_ES, SNP, S390_PV, TDX}


def selectors(domain=None, version="v1.9.0", gates=(), architecture=None, node_selector=None):
    """The node selector of the first launcher pod of a stopped VM with this domain, as the tool predicts it."""
    vm = kv.vm("guest", running=False, domain=domain or {}, architecture=architecture)
    if node_selector:
        vm["spec"]["template"]["spec"]["nodeSelector"] = node_selector
    config = objects.parse_kubevirt(kv.kubevirt(version, configuration={
        "developerConfiguration": {"featureGates": list(gates)}}))
    parsed = objects.parse_vm(vm)
    pod = fresh_start(start_vmi(parsed, config), parsed, config, "first start")
    return {c.key: c.value for c in pod.node_selector}


# template_test.go v1.9.0, "When scheduling SEV / Secure Execution / TDX workloads": launchSecurity -> labels.
LAUNCH_SECURITY_CASES = [
    ("SEV workload", {"sev": {}}, None, {SEV}),
    ("no SEV workload", {}, None, set()),
    ("SEV-ES workload", {"sev": {"policy": {"encryptedState": True}}}, None, {SEV, SEV_ES}),
    ("SEV-SNP workload", {"snp": {}}, None, {SEV, SNP}),
    ("no SEV policy is set", {"sev": {"policy": {}}}, None, {SEV}),
    ("SEV-ES policy bit set to false", {"sev": {"policy": {"encryptedState": False}}}, None, {SEV}),
    ("Secure Execution workload", {}, "s390x", {S390_PV}),
    ("no Secure Execution workload", {}, "", set()),
    ("TDX workload", {"tdx": {}}, None, {TDX}),
]


@pytest.mark.parametrize("what,security,arch,expected", LAUNCH_SECURITY_CASES, ids=[c[0] for c in LAUNCH_SECURITY_CASES])
def test_launch_security_selectors_as_kubevirt_v1_9_0_renders_them(what, security, arch, expected):
    found = selectors({"launchSecurity": security}, architecture=arch or None)
    assert set(found) & SECURITY_LABELS == expected
    assert all(found[k] == "true" for k in expected)


# The release each selector first appears in (nodeselectorrenderer.go / template.go / pkg/util, every tag).
@pytest.mark.parametrize("security,arch,version,expected", [
    ({"sev": {"policy": {"encryptedState": True}}}, None, "v1.4.1", {SEV}),        # sev-es from v1.5.0
    ({"sev": {"policy": {"encryptedState": True}}}, None, "v1.5.0", {SEV, SEV_ES}),
    ({"snp": {}}, None, "v1.6.6", set()),                                          # SNP (and its sev) from v1.7.0
    ({"snp": {}}, None, "v1.7.0", {SEV, SNP}),
    ({}, "s390x", "v1.5.3", set()),                                                # s390-pv from v1.6.0
    ({}, "s390x", "v1.6.0", {S390_PV}),
    ({"tdx": {}}, None, "v1.6.6", set()),                                          # tdx from v1.7.0
    ({"tdx": {}}, None, "v1.7.0", {TDX}),
])
def test_launch_security_selectors_follow_the_release(security, arch, version, expected):
    assert set(selectors({"launchSecurity": security}, version=version, architecture=arch)) & SECURITY_LABELS == expected


def test_cross_architecture_gate_swaps_the_arch_selector_for_vm_arch():
    """template_test.go v1.9.0: with CrossArchitectureVirtualization an arm64 VMI's pod has no
    kubernetes.io/arch and kubevirt.io/vm-arch-arm64=true (WithoutNativeArchSelector, VMArchLabel)."""
    gated = selectors(architecture="arm64", gates=["CrossArchitectureVirtualization"])
    assert "kubernetes.io/arch" not in gated and gated["kubevirt.io/vm-arch-arm64"] == "true"
    # WithoutNativeArchSelector runs after the VMI's own nodeSelector was copied: that key goes too.
    pinned = selectors(architecture="arm64", gates=["CrossArchitectureVirtualization"],
                       node_selector={"kubernetes.io/arch": "arm64", "disk": "ssd"})
    assert "kubernetes.io/arch" not in pinned and pinned["disk"] == "ssd"
    # Without the gate, or on a release that does not know it (alpha in v1.9.0), the native selector stays.
    for plain in (selectors(architecture="arm64"),
                  selectors(architecture="arm64", gates=["CrossArchitectureVirtualization"], version="v1.8.4")):
        assert plain["kubernetes.io/arch"] == "arm64" and not any(k.startswith("kubevirt.io/vm-arch-") for k in plain)


HYPERV = "hyperv.node.kubevirt.io/"
STRICT = ["HypervStrictCheck"]


def test_the_webhook_enables_the_hyperv_dependencies_before_the_pod_exists():
    """vmi-mutator_test.go "should set the hyperv dependencies": synictimer alone brings synic and vpindex;
    under HypervStrictCheck each needs its node label (a stopped VM's next pod included)."""
    found = selectors({"features": {"hyperv": {"synictimer": {"enabled": True}}}}, gates=STRICT)
    assert {k for k in found if k.startswith(HYPERV)} == {HYPERV + "synictimer", HYPERV + "synic", HYPERV + "vpindex"}
    ipi = selectors({"features": {"hyperv": {"ipi": {}}}}, gates=STRICT)
    assert {k for k in ipi if k.startswith(HYPERV)} == {HYPERV + "ipi", HYPERV + "vpindex"}
    # A dependency the user turned off is not turned on: the webhook stops and validation rejects the VMI.
    off = selectors({"features": {"hyperv": {"synic": {}, "vpindex": {"enabled": False}}}}, gates=STRICT)
    assert {k for k in off if k.startswith(HYPERV)} == {HYPERV + "synic"}


VMX = "cpu-feature.node.kubevirt.io/vmx"


@pytest.mark.parametrize("what,hyperv,features,vmx", [
    ("hyperV doesn't contain EVMCS", {"relaxed": {"enabled": True}}, None, False),
    ("EVMCS is explicitly false", {"evmcs": {"enabled": False}}, None, False),
    ("hyperV does contain EVMCS", {"evmcs": {}}, None, True),
    ("EVMCS is explicitly true", {"evmcs": {"enabled": True}}, None, True),
    ("EVMCS and 1 different cpu feature", {"evmcs": {}}, [{"name": "monitor", "policy": "require"}], True),
    ("EVMCS and disabled vmx cpu feature", {"evmcs": {}}, [{"name": "vmx", "policy": "disable"}], True),
    ("EVMCS and enabled vmx cpu feature", {"evmcs": {}}, [{"name": "vmx", "policy": "require"}], True),
], ids=lambda v: v if isinstance(v, str) else None)
def test_evmcs_brings_the_vmx_feature_as_the_webhook_adds_it(what, hyperv, features, vmx):
    """vmi-mutator_test.go v1.9.0, table "modify the VMI cpu feature": evmcs makes vmx a required feature."""
    domain = {"features": {"hyperv": hyperv}}
    if features is not None:
        domain["cpu"] = {"features": features}
    found = selectors(domain)
    assert (found.get(VMX) == "true") is vmx
    if features and features[0]["name"] == "monitor":
        assert found["cpu-feature.node.kubevirt.io/monitor"] == "true"


def test_why_not_names_vmx_for_a_stopped_evmcs_vm(tmp_path):
    """End to end: a stopped VM with evmcs cannot start on a node without the vmx feature label."""
    without_vmx = kv.cpu_node("plain", "Skylake-Server-IBRS", ["Skylake-Server-IBRS"], drop={"vmx"})
    with_vmx = kv.cpu_node("nested", "Skylake-Server-IBRS", ["Skylake-Server-IBRS"], features=["vmx"])
    vm = kv.vm("win", model="Skylake-Server-IBRS", running=False, domain={"features": {"hyperv": {"evmcs": {}}}})
    path = tmp_path / "snap.yaml"
    path.write_text(yaml.safe_dump_all([without_vmx, with_vmx, kv.kubevirt("v1.9.0"), vm]))
    doc = json.loads(run_cli(["why-not", "vm/win", "-f", str(path), "-o", "json"], offline=True).stdout)
    keys = {n["name"]: [r["key"] for r in n["reasons"] if r["category"] == "cpu-feature"] for n in doc["nodes"]}
    assert keys == {"plain": [VMX], "nested": []}
