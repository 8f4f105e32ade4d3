"""A real control plane for the tests: kube-apiserver and etcd built from Go modules, and krew.

`python -m testkit.controlplane build` builds the binaries once per version into a cache folder outside the
repository (as envtest keeps its binaries), from the wrapper modules under testkit/go/, and prints that folder
as its last line. `ControlPlane` starts etcd and kube-apiserver on loopback with TLS, RBAC, token users and
service-account keys, installs the project's CRDs (testkit/crds.py) and loads objects the way a cluster
holds them (server-assigned uids, status through `/status` where the subresource exists).

Nothing here is shipped: the wheel and the krew archive carry only `cpumodel/`.
"""
from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import quote, urlencode

HERE = os.path.dirname(os.path.abspath(__file__))
GO_MODULES = os.path.join(HERE, "go")
KUBERNETES_VERSION = "v1.37.2"
# What each binary is built from: (wrapper module folder, Go package).
BINARIES = {
    "kube-apiserver": ("kube-apiserver", "k8s.io/kubernetes/cmd/kube-apiserver"),
    "etcd": ("kube-apiserver", "go.etcd.io/etcd/server/v3"),
    "krew": ("krew", "sigs.k8s.io/krew/cmd/krew"),
}
ADMIN_TOKEN = "cpumodel-admin-token"
DEV_TOKEN = "cpumodel-dev-token"
IMPERSONATOR_TOKEN = "cpumodel-impersonator-token"


class ControlPlaneError(Exception):
    pass


# ---- build ----------------------------------------------------------------------------------------------

def cache_root(env: Optional[Dict[str, str]] = None) -> str:
    env = os.environ if env is None else env
    if env.get("CPUMODEL_CONTROL_PLANE_CACHE"):
        return env["CPUMODEL_CONTROL_PLANE_CACHE"]
    base = env.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "kubectl-cpumodel", "control-plane")


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _modules_digest() -> str:
    """The cache key: a change to a wrapper module's go.mod or go.sum builds anew."""
    digest = hashlib.sha256()
    for name in sorted(os.listdir(GO_MODULES)):
        for leaf in ("go.mod", "go.sum"):
            path = os.path.join(GO_MODULES, name, leaf)
            if os.path.exists(path):
                with open(path, "rb") as fh:
                    digest.update(name.encode() + b"/" + leaf.encode() + b"\0" + fh.read())
    return digest.hexdigest()[:12]


def binaries_folder() -> str:
    return os.path.join(cache_root(), "%s-%s-%s-%s" % (KUBERNETES_VERSION, sys.platform, _arch(), _modules_digest()))


def built() -> Optional[str]:
    """The folder with every binary when a build for this version and these modules is complete."""
    folder = binaries_folder()
    if all(os.access(os.path.join(folder, name), os.X_OK) for name in BINARIES):
        return folder
    return None


def go_binary() -> Optional[str]:
    return shutil.which("go")


def _ldflags() -> str:
    """Stamp the version as Kubernetes' hack/lib/version.sh does, so /version and --version report it."""
    major, minor = KUBERNETES_VERSION.lstrip("v").split(".")[:2]
    flags = ["-s", "-w"]
    for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += ["-X", "%s.gitVersion=%s" % (package, KUBERNETES_VERSION), "-X", "%s.gitMajor=%s" % (package, major),
                  "-X", "%s.gitMinor=%s" % (package, minor), "-X", "%s.gitTreeState=clean" % package,
                  "-X", "%s.buildDate=1970-01-01T00:00:00Z" % package]
    return " ".join(flags)


def build(log=lambda line: print(line, file=sys.stderr, flush=True)) -> str:
    """Build whatever is missing; returns the folder. Needs Go and the Go module proxy the first time."""
    folder = binaries_folder()
    go = go_binary()
    if built():
        return folder
    if not go:
        raise ControlPlaneError("Go is not installed: kube-apiserver, etcd and krew are built from Go modules")
    os.makedirs(folder, exist_ok=True)
    env = dict(os.environ, CGO_ENABLED="0", GOTOOLCHAIN="local", GOFLAGS="-mod=readonly")
    for name, (module, package) in BINARIES.items():
        target = os.path.join(folder, name)
        if os.access(target, os.X_OK):
            continue
        log("control plane: building %s (%s) ..." % (name, package))
        started = time.time()
        partial = target + ".partial"
        command = [go, "build", "-trimpath", "-o", partial]
        if name == "kube-apiserver":
            command += ["-tags", "selinux,notest", "-ldflags", _ldflags()]
        else:
            command += ["-ldflags", "-s -w"]
        proc = subprocess.run(command + [package], cwd=os.path.join(GO_MODULES, module), env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-15:]
            raise ControlPlaneError("building %s failed:\n%s" % (name, "\n".join(tail)))
        os.replace(partial, target)
        log("control plane: built %s in %.0f s (%.0f MiB)" % (name, time.time() - started,
                                                              os.path.getsize(target) / 2 ** 20))
    return folder


# ---- a small REST client for the fixture (the plugin has its own) -----------------------------------------

# kind -> (group, version, plural, namespaced, has status subresource)
KINDS: Dict[str, Tuple[str, str, str, bool, bool]] = {
    "Namespace": ("", "v1", "namespaces", False, True),
    "Node": ("", "v1", "nodes", False, True),
    "Pod": ("", "v1", "pods", True, True),
    "ConfigMap": ("", "v1", "configmaps", True, False),
    "Event": ("", "v1", "events", True, False),
    "ControllerRevision": ("apps", "v1", "controllerrevisions", True, False),
    "KubeVirt": ("kubevirt.io", "v1", "kubevirts", True, True),
    "VirtualMachine": ("kubevirt.io", "v1", "virtualmachines", True, True),
    "VirtualMachineInstance": ("kubevirt.io", "v1", "virtualmachineinstances", True, False),
    "VirtualMachineInstanceMigration": ("kubevirt.io", "v1", "virtualmachineinstancemigrations", True, True),
    "VirtualMachineInstancetype": ("instancetype.kubevirt.io", "v1beta1", "virtualmachineinstancetypes", True, False),
    "VirtualMachineClusterInstancetype": ("instancetype.kubevirt.io", "v1beta1",
                                          "virtualmachineclusterinstancetypes", False, False),
    "VirtualMachinePreference": ("instancetype.kubevirt.io", "v1beta1", "virtualmachinepreferences", True, False),
    "VirtualMachineClusterPreference": ("instancetype.kubevirt.io", "v1beta1", "virtualmachineclusterpreferences",
                                        False, False),
    "HyperConverged": ("hco.kubevirt.io", "v1beta1", "hyperconvergeds", True, True),
    "ManagedChart": ("management.cattle.io", "v3", "managedcharts", True, True),
}
# Created in this order, so that an object's uid exists before the objects that refer to it.
LOAD_ORDER = ["Namespace", "Node", "HyperConverged", "KubeVirt", "ManagedChart", "VirtualMachineClusterInstancetype",
              "VirtualMachineInstancetype", "VirtualMachineClusterPreference", "VirtualMachinePreference",
              "VirtualMachine", "ControllerRevision", "VirtualMachineInstance", "VirtualMachineInstanceMigration",
              "Pod", "ConfigMap", "Event"]
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class ApiError(Exception):
    def __init__(self, status: int, body: Any):
        self.status, self.body = status, body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__("HTTP %d: %s" % (status, message))


class Client:
    """JSON over one keep-alive connection with a bearer token: HTTPS trusting `ca_file`, or plain HTTP without
    one (the fake server)."""

    def __init__(self, host: str, port: int, ca_file: Optional[str], token: str):
        self.host, self.port, self.token = host, port, token
        self.context = ssl.create_default_context(cafile=ca_file) if ca_file else None
        self.conn: Optional[http.client.HTTPConnection] = None

    def request(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
                query: Optional[Dict[str, str]] = None, headers: Optional[Dict[str, str]] = None) -> Any:
        if query:
            path += "?" + urlencode(query)
        data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
        sent = {"Authorization": "Bearer " + self.token, "Accept": "application/json"}
        if data is not None:
            sent["Content-Type"] = content_type
        sent.update(headers or {})
        for attempt in range(2):
            if self.conn is None:
                self.conn = (http.client.HTTPSConnection(self.host, self.port, context=self.context, timeout=60)
                             if self.context else http.client.HTTPConnection(self.host, self.port, timeout=60))
            try:
                self.conn.request(method, path, body=data, headers=sent)
                response = self.conn.getresponse()
                raw = response.read()
                break
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = raw.decode("utf-8", "replace")
        if response.status >= 400:
            raise ApiError(response.status, payload)
        return payload

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def resource_path(kind: str, namespace: Optional[str] = None, name: Optional[str] = None,
                  subresource: Optional[str] = None, version: Optional[str] = None) -> str:
    group, default_version, plural, namespaced, _ = KINDS[kind]
    version = version or default_version
    path = "/apis/%s/%s" % (group, version) if group else "/api/%s" % version
    if namespaced and namespace:
        path += "/namespaces/" + quote(namespace, safe="")
    path += "/" + plural
    if name:
        path += "/" + quote(name, safe="")
    if subresource:
        path += "/" + subresource
    return path


# ---- the control plane ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the child gets SIGKILL when the test process dies, so no server outlives a killed test run."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _openssl(*args: str) -> None:
    subprocess.run(["openssl"] + list(args), check=True, capture_output=True)


class ControlPlane:
    """etcd + kube-apiserver on loopback, started by `start()` and ended by `stop()`."""

    def __init__(self, folder: Optional[str] = None, workdir: Optional[str] = None):
        self.bin = folder or built()
        if not self.bin:
            raise ControlPlaneError("the control plane is not built: run `make control-plane`")
        self.workdir = workdir or tempfile.mkdtemp(prefix="cpumodel-controlplane-")
        self.procs: List[subprocess.Popen] = []
        self.port = 0
        self.etcd_port = 0
        self.hco_version = ""
        self.loaded: Optional[Tuple[str, int, Dict[str, str]]] = None

    # -- files
    @classmethod
    def attach(cls, port: int, ca_file: str, hco_version: str = "v1beta1") -> "ControlPlane":
        """A handle on a control plane another process started (to load objects into it from a child process)."""
        plane = cls.__new__(cls)
        plane.bin, plane.workdir, plane.procs, plane.port, plane.etcd_port = "", "", [], port, 0
        plane.hco_version, plane.loaded = hco_version, None
        plane.ca = type("CA", (), {"cert": ca_file})()
        plane.admin = Client("127.0.0.1", port, ca_file, ADMIN_TOKEN)
        return plane

    def _pki(self) -> None:
        from testkit import pki

        folder = os.path.join(self.workdir, "pki")
        os.makedirs(folder, exist_ok=True)
        self.ca = pki.authority(folder, "cpumodel-test-ca")
        self.serving = pki.issue(folder, self.ca, "kube-apiserver", ["IP:127.0.0.1", "DNS:localhost"])
        self.sa_key = os.path.join(folder, "sa.key")
        _openssl("genrsa", "-out", self.sa_key, "2048")
        self.token_file = os.path.join(folder, "tokens.csv")
        with open(self.token_file, "w", encoding="utf-8") as fh:
            fh.write('%s,admin,admin-uid,"system:masters"\n' % ADMIN_TOKEN)
            fh.write('%s,dev,dev-uid,"devs"\n' % DEV_TOKEN)
            fh.write('%s,impersonator,impersonator-uid,"impersonators"\n' % IMPERSONATOR_TOKEN)

    def _audit_policy(self) -> str:
        self.audit_log = os.path.join(self.workdir, "audit.log")
        path = os.path.join(self.workdir, "audit-policy.yaml")
        with open(path, "w", encoding="utf-8") as fh:
            json.dump({"apiVersion": "audit.k8s.io/v1", "kind": "Policy",
                       "omitStages": ["RequestReceived"], "rules": [{"level": "Metadata"}]}, fh)
        return path

    def audit_mark(self) -> int:
        """Where the audit log ends now: `audit_since(mark)` reads what came after."""
        try:
            return os.path.getsize(self.audit_log)
        except OSError:
            return 0

    def audit_since(self, mark: int, user_agent: str = "kubectl-cpumodel") -> List[dict]:
        """The requests made since `mark` by clients whose User-Agent starts with `user_agent`, completed."""
        events = []
        with open(self.audit_log, "rb") as fh:
            fh.seek(mark)
            for line in fh:
                try:
                    event = json.loads(line)
                except ValueError:  # a line still being written
                    continue
                if event.get("stage") == "ResponseComplete" and str(event.get("userAgent", "")).startswith(user_agent):
                    events.append(event)
        return events

    @property
    def url(self) -> str:
        return "https://127.0.0.1:%d" % self.port

    def _spawn(self, name: str, args: List[str]) -> subprocess.Popen:
        log = open(os.path.join(self.workdir, name + ".log"), "wb")
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True, preexec_fn=_die_with_parent)
        log.close()
        proc.name = name  # type: ignore[attr-defined]
        self.procs.append(proc)
        return proc

    def log_tail(self, name: str, lines: int = 20) -> str:
        try:
            with open(os.path.join(self.workdir, name + ".log"), "rb") as fh:
                return "\n".join(fh.read().decode("utf-8", "replace").splitlines()[-lines:])
        except OSError:
            return ""

    def start(self, timeout: float = 120) -> "ControlPlane":
        self._pki()
        self.etcd_port, peer, self.port = free_port(), free_port(), free_port()
        etcd_url, peer_url = "http://127.0.0.1:%d" % self.etcd_port, "http://127.0.0.1:%d" % peer
        self._spawn("etcd", [os.path.join(self.bin, "etcd"), "--name", "default",
                             "--data-dir", os.path.join(self.workdir, "etcd"),
                             "--listen-client-urls", etcd_url, "--advertise-client-urls", etcd_url,
                             "--listen-peer-urls", peer_url, "--initial-advertise-peer-urls", peer_url,
                             "--initial-cluster", "default=" + peer_url, "--unsafe-no-fsync",
                             "--log-level", "warn"])
        self._spawn("kube-apiserver", [
            os.path.join(self.bin, "kube-apiserver"),
            "--etcd-servers=" + etcd_url,
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", "--secure-port=%d" % self.port,
            "--endpoint-reconciler-type=none",
            "--tls-cert-file=" + self.serving.cert, "--tls-private-key-file=" + self.serving.key,
            "--client-ca-file=" + self.ca.cert,
            "--token-auth-file=" + self.token_file,
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://127.0.0.1:%d" % self.port,
            "--service-account-key-file=" + self.sa_key, "--service-account-signing-key-file=" + self.sa_key,
            "--service-cluster-ip-range=10.0.0.0/24",
            # No kubelet or node-lifecycle controller runs to clear the not-ready taint, and no token
            # controller to make service-account tokens.
            "--disable-admission-plugins=ServiceAccount,TaintNodesByCondition",
            "--allow-privileged=true",
            # Every request with its response code, so that tests see each one the plugin made.
            "--audit-policy-file=" + self._audit_policy(), "--audit-log-path=" + self.audit_log,
            "--audit-log-mode=blocking", "--audit-log-format=json",
            "--v=0",
        ])
        self.admin = Client("127.0.0.1", self.port, self.ca.cert, ADMIN_TOKEN)
        try:
            self._wait_ready(timeout)
            self.install(self._crds("v1beta1"))
            self.hco_version = "v1beta1"
            self._rbac()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.time() + timeout
        while True:
            for proc in self.procs:
                if proc.poll() is not None:
                    raise ControlPlaneError("%s exited with %s:\n%s" % (proc.name, proc.returncode,  # type: ignore
                                                                        self.log_tail(proc.name)))  # type: ignore
            try:
                if self.admin.request("GET", "/readyz") == "ok":
                    return
            except (ApiError, OSError, http.client.HTTPException, ssl.SSLError):
                self.admin.close()
            if time.time() > deadline:
                raise ControlPlaneError("kube-apiserver was not ready after %.0f s:\n%s" % (
                    timeout, self.log_tail("kube-apiserver")))
            time.sleep(0.2)

    @staticmethod
    def _crds(hco_version: str) -> List[dict]:
        from testkit.crds import all_crds

        return all_crds(hco_version)

    def install(self, crds: Iterable[dict], timeout: float = 30) -> None:
        """Create (or replace) CRDs and wait until each is Established and served in discovery."""
        crds = list(crds)
        for crd in crds:
            try:
                self.admin.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + crd["metadata"]["name"]
                current = self.admin.request("GET", path)
                crd = dict(crd, metadata=dict(crd["metadata"],
                                              resourceVersion=current["metadata"]["resourceVersion"]))
                self.admin.request("PUT", path, crd)
        deadline = time.time() + timeout
        for crd in crds:
            spec = crd["spec"]
            path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/" + crd["metadata"]["name"]
            for version in spec["versions"]:
                while True:
                    current = self.admin.request("GET", path)
                    established = any(c.get("type") == "Established" and c.get("status") == "True"
                                      for c in (current.get("status") or {}).get("conditions") or [])
                    try:
                        listed = self.admin.request("GET", "/apis/%s/%s" % (spec["group"], version["name"]))
                        served = any(r.get("name") == spec["names"]["plural"] for r in listed.get("resources", []))
                    except ApiError:
                        served = False
                    if established and served:
                        break
                    if time.time() > deadline:
                        raise ControlPlaneError("CRD %s was not served after %.0f s" % (crd["metadata"]["name"],
                                                                                         timeout))
                    time.sleep(0.1)

    def serve_hco(self, version: str) -> None:
        """Serve hco.kubevirt.io at this one version (HCO's conversion webhook is not here to convert)."""
        if version == self.hco_version:
            return
        from testkit.crds import hco_crd

        name = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/hyperconvergeds.hco.kubevirt.io"
        self.hco_version = ""
        self.loaded = None
        try:
            self.admin.request("DELETE", name)
        except ApiError as exc:
            if exc.status != 404:
                raise
        deadline = time.time() + 60
        while True:
            try:
                self.admin.request("GET", name)
            except ApiError as exc:
                if exc.status == 404:
                    break
                raise
            if time.time() > deadline:
                raise ControlPlaneError("the HyperConverged CRD was not deleted after 60 s")
            time.sleep(0.1)
        KINDS["HyperConverged"] = ("hco.kubevirt.io", version, "hyperconvergeds", True, True)
        self.loaded = None
        self.install([hco_crd(version)])
        self.hco_version = version

    def _rbac(self) -> None:
        """The unprivileged user `dev` starts with no rights; tests grant what they need. `impersonator` may
        impersonate users and groups (and nothing else)."""
        self.apply_rbac([
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
             "metadata": {"name": "cpumodel-impersonate"},
             "rules": [{"apiGroups": [""], "resources": ["users", "groups"], "verbs": ["impersonate"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
             "metadata": {"name": "cpumodel-impersonate"},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                         "name": "cpumodel-impersonate"},
             "subjects": [{"kind": "Group", "name": "impersonators", "apiGroup": "rbac.authorization.k8s.io"}]},
        ])

    @staticmethod
    def _rbac_path(obj: dict) -> str:
        plural = {"ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
                  "Role": "roles", "RoleBinding": "rolebindings"}[obj["kind"]]
        namespace = obj["metadata"].get("namespace")
        return "/apis/rbac.authorization.k8s.io/v1/%s%s" % ("namespaces/%s/" % namespace if namespace else "", plural)

    def apply_rbac(self, objects: Iterable[dict]) -> None:
        for obj in objects:
            if obj["metadata"].get("namespace"):
                self.ensure_namespace(obj["metadata"]["namespace"])
            try:
                self.admin.request("POST", self._rbac_path(obj), obj)
            except ApiError as exc:
                if exc.status != 409:
                    raise
                self.admin.request("PUT", self._rbac_path(obj) + "/" + obj["metadata"]["name"], obj)

    def delete_rbac(self, objects: Iterable[dict]) -> None:
        for obj in objects:
            try:
                self.admin.request("DELETE", self._rbac_path(obj) + "/" + obj["metadata"]["name"])
            except ApiError as exc:
                if exc.status != 404:
                    raise

    def stop(self) -> None:
        """End both processes at once: the data is thrown away, so there is nothing to shut down gracefully
        (kube-apiserver's graceful termination would wait for its watch and request drains)."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except OSError:
                    pass
        for proc in self.procs:
            proc.wait()
        self.procs = []
        if getattr(self, "admin", None):
            self.admin.close()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- objects
    def ensure_namespace(self, name: str) -> None:
        try:
            self.admin.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                              "metadata": {"name": name}})
        except ApiError as exc:
            if exc.status != 409:
                raise

    def namespaces(self) -> List[str]:
        return [n["metadata"]["name"] for n in self.admin.request("GET", "/api/v1/namespaces")["items"]]

    def reset(self) -> None:
        """Delete every object of the kinds the tests load (namespaces stay: no controller would remove them)."""
        spaces = self.namespaces()
        for kind in reversed(LOAD_ORDER):
            if kind == "Namespace":
                continue
            group, version, plural, namespaced, _ = KINDS[kind]
            query = {"gracePeriodSeconds": "0"}  # pods bound to a node would otherwise wait for a kubelet
            paths = [resource_path(kind, ns) for ns in spaces] if namespaced else [resource_path(kind)]
            for path in paths:
                self.admin.request("DELETE", path, {"apiVersion": "v1", "kind": "DeleteOptions",
                                                    "gracePeriodSeconds": 0}, query=query)

    def load(self, objects: Iterable[dict], workers: int = 1) -> Dict[str, str]:
        """Create the objects as a cluster would hold them; returns {uid in the files: uid on the server}.

        The server assigns uids, so labels, owner references and fields that carry a uid of an object
        loaded earlier are rewritten to the new one (`kubevirt.io/created-by`, `kubevirt.io/migrationJobUID`).
        Status goes through `/status` where the resource has that subresource, else with the object.
        Kinds are created in LOAD_ORDER; with `workers` > 1 the objects of one kind go in parallel.
        """
        objects = list(objects)
        skipped = sorted({str(o.get("kind")) for o in objects if o.get("kind") not in KINDS})
        if skipped:
            raise ControlPlaneError("cannot load kinds %s" % ", ".join(skipped))
        uids: Dict[str, str] = {}
        known = set(self.namespaces())
        clients = threading.local()

        def client() -> Client:
            if workers == 1:
                return self.admin
            if not hasattr(clients, "client"):
                clients.client = Client("127.0.0.1", self.port, self.ca.cert, ADMIN_TOKEN)
            return clients.client

        def create(original: dict) -> Tuple[Optional[str], str]:
            obj = _rewrite(json.loads(json.dumps(original)), uids)
            meta = obj.setdefault("metadata", {})
            old_uid = meta.pop("uid", None)
            for field in ("resourceVersion", "creationTimestamp", "managedFields", "generation", "selfLink"):
                meta.pop(field, None)
            kind = obj["kind"]
            namespaced, has_status_subresource = KINDS[kind][3], KINDS[kind][4]
            namespace = (meta.get("namespace") or "default") if namespaced else None
            if namespaced:
                meta["namespace"] = namespace
            status = obj.pop("status", None) if has_status_subresource else None
            if kind == "HyperConverged":
                obj["apiVersion"] = "hco.kubevirt.io/" + self.hco_version
            version = obj["apiVersion"].rpartition("/")[2]
            created = client().request("POST", resource_path(kind, namespace, version=version), obj)
            if status:
                client().request("PATCH", resource_path(kind, namespace, meta["name"], "status", version=version),
                                 {"status": status}, content_type="application/merge-patch+json")
            return old_uid, created["metadata"]["uid"]

        for original in objects:  # namespaces first, as the files have them (labels too), then any others
            if original["kind"] == "Namespace" and original["metadata"]["name"] not in known:
                create(original)
                known.add(original["metadata"]["name"])
        for name in sorted({o["metadata"].get("namespace") or "default" for o in objects if KINDS[o["kind"]][3]}
                           - known):
            self.ensure_namespace(name)
        for kind in LOAD_ORDER[1:]:
            batch = sorted((o for o in objects if o["kind"] == kind),
                           key=lambda o: str(o.get("metadata", {}).get("creationTimestamp", "")))
            if workers > 1 and len(batch) > 1:
                with ThreadPoolExecutor(workers) as pool:
                    results = list(pool.map(create, batch))
            else:
                results = [create(o) for o in batch]
            uids.update((old, new) for old, new in results if old)
        return uids

    def replace(self, objects: List[dict], reuse: bool = False) -> Dict[str, str]:
        """reset() then load(); with `reuse`, skipped when the same objects were loaded last and the audit log
        shows no write since (dry runs do not count)."""
        digest = hashlib.sha256(json.dumps(objects, sort_keys=True).encode()).hexdigest()
        if reuse and self.loaded and self.loaded[0] == digest and not self._written_since(self.loaded[1]):
            return self.loaded[2]
        self.reset()
        uids = self.load(objects)
        self.loaded = (digest, self.audit_mark(), uids)
        return uids

    def _written_since(self, mark: int) -> bool:
        for event in self.audit_since(mark, user_agent=""):
            if event.get("verb") in ("create", "update", "patch", "delete", "deletecollection") \
                    and "dryRun=" not in event.get("requestURI", ""):
                return True
        return False

    def dump(self, kinds: Iterable[str] = tuple(k for k in LOAD_ORDER if k != "Namespace")) -> List[dict]:
        """Every object of these kinds as the server holds it (with apiVersion and kind, as a file would)."""
        found: List[dict] = []
        for kind in kinds:
            group, version, plural, _, _ = KINDS[kind]
            listed = self.admin.request("GET", resource_path(kind))
            for item in listed["items"]:
                item.setdefault("apiVersion", "%s/%s" % (group, version) if group else version)
                item.setdefault("kind", kind)
                found.append(item)
        return found

    def kubeconfig(self, path: str, token: str = ADMIN_TOKEN, namespace: str = "default",
                   user: str = "admin") -> str:
        """A kubeconfig as an admin would get it: the server, its CA, a token user, one context."""
        import yaml

        with open(self.ca.cert, "rb") as fh:
            import base64

            ca_data = base64.b64encode(fh.read()).decode()
        config = {
            "apiVersion": "v1", "kind": "Config", "current-context": "real",
            "clusters": [{"name": "real", "cluster": {"server": self.url, "certificate-authority-data": ca_data}}],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [{"name": "real", "context": {"cluster": "real", "user": user, "namespace": namespace}}],
        }
        with open(path, "w", encoding="utf-8") as fh:
            yaml.safe_dump(config, fh)
        return path


def _rewrite(value: Any, uids: Dict[str, str]) -> Any:
    """Replace every string equal to a uid of the files by the server's uid for that object."""
    if not uids:
        return value
    if isinstance(value, dict):
        return {k: _rewrite(v, uids) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite(v, uids) for v in value]
    if isinstance(value, str):
        return uids.get(value, value)
    return value


# ---- command line ---------------------------------------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testkit.controlplane")
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="build kube-apiserver, etcd and krew (cached); print their folder last")
    b.add_argument("--optional", action="store_true",
                   help="without Go, say which tests will be skipped and succeed (a failure under CI=true)")
    sub.add_parser("folder", help="print the cache folder for this version")
    sub.add_parser("clean", help="remove every cached build")
    args = parser.parse_args(argv)
    if args.command == "folder":
        print(binaries_folder())
        return 0
    if args.command == "clean":
        shutil.rmtree(cache_root(), ignore_errors=True)
        print("removed %s" % cache_root())
        return 0
    if args.optional and not go_binary():
        message = ("control plane: Go is not installed, so the `controlplane` and `krew` tests will be skipped "
                   "(install Go >= 1.26 and run `make control-plane` to run them)")
        if os.environ.get("CI") == "true":
            print("error: " + message.split(", so")[0] + ": CI needs the real control plane", file=sys.stderr)
            return 1
        print(message)
        return 0
    try:
        folder = build()
    except ControlPlaneError as exc:
        print("error: control plane: %s" % exc, file=sys.stderr)
        return 1
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
