"""Distribution: the krew archive and manifest (spec/distribution.md), pip's wheel, man page, completion."""
import glob
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest
import yaml

from conftest import BUNDLE, DEMO, ROOT, kubectl_binary

sys.path.insert(0, os.path.join(ROOT, "tools"))
import build_dist  # noqa: E402

SUPPORTED = [("windows", a) for a in ("386", "amd64", "arm64")] + \
    [("linux", a) for a in ("386", "amd64", "arm", "arm64", "ppc64le")] + [("darwin", a) for a in ("386", "amd64", "arm64")]
LICENSE_NAMES = {"license", "license.txt", "license.md", "licenses", "licenses.txt", "licenses.md", "copying",
                 "copying.txt"}
SEMVER = re.compile(r"^v(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


@pytest.fixture(scope="session")
def release(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    manifest = str(out / "cpumodel.yaml")
    archive = build_dist.build(str(out), manifest)
    return archive, manifest


def selector_matches(selector, os_name, arch):
    labels = {"os": os_name, "arch": arch}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        have = labels.get(expr["key"])
        if expr["operator"] == "In" and have not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and have in expr["values"]:
            return False
    return True


def validate_manifest(path):
    """krew's ValidatePlugin plus validate-krew-manifest's platform rules, as a list of problems."""
    problems = []
    with open(path, encoding="utf-8") as fh:
        m = yaml.safe_load(fh)
    stem = os.path.basename(path)[:-len(".yaml")] if path.endswith(".yaml") else None
    if stem is None:
        problems.append("manifest extension must be .yaml")
    if m.get("apiVersion") != "krew.googlecontainertools.github.com/v1alpha2":
        problems.append("apiVersion")
    if m.get("kind") != "Plugin":
        problems.append("kind")
    name = (m.get("metadata") or {}).get("name", "")
    if not re.match(r"^[\w-]+$", name) or name.upper() in {"CON", "PRN", "AUX", "NUL"} | \
            {"COM%d" % i for i in range(1, 10)} | {"LPT%d" % i for i in range(1, 10)}:
        problems.append("unsafe name")
    if name != stem:
        problems.append("metadata.name %r != file name %r" % (name, stem))
    spec = m.get("spec") or {}
    short = spec.get("shortDescription") or ""
    if not short or "\n" in short or "\r" in short or len(short) > 50:
        problems.append("shortDescription must be one line of 1-50 characters")
    if not SEMVER.match(spec.get("version") or ""):
        problems.append("version must be v-prefixed semver")
    platforms = spec.get("platforms") or []
    if not platforms:
        problems.append("no platforms")
    for p in platforms:
        sel = p.get("selector")
        if not sel or not (sel.get("matchLabels") or sel.get("matchExpressions")):
            problems.append("empty selector")
        keys = list((sel or {}).get("matchLabels") or {}) + [e.get("key") for e in (sel or {}).get("matchExpressions") or []]
        if any(k not in ("os", "arch") for k in keys):
            problems.append("selector keys must be os/arch")
        if not p.get("uri"):
            problems.append("uri")
        if not re.match(r"^[a-f0-9]{64}$", str(p.get("sha256", ""))):
            problems.append("sha256 must be 64 lowercase hex")
        if not p.get("bin"):
            problems.append("bin")
        files = p.get("files")
        if files is not None and (not files or any(not f.get("from") or not f.get("to") for f in files)):
            problems.append("files must be unset or complete")
        for f in files or []:
            if os.path.normpath(f["to"]) != f["to"] or f["to"].startswith(("/", "..")) or ".." in f["from"]:
                problems.append("unclean files path %r" % f)
        if not any(selector_matches(sel or {}, o, a) for o, a in SUPPORTED):
            problems.append("selector matches no supported platform")
    for o, a in SUPPORTED:
        if sum(selector_matches(p.get("selector") or {}, o, a) for p in platforms) > 1:
            problems.append("overlapping platform selectors for %s/%s" % (o, a))
    return m, problems


def test_manifest_follows_every_krew_rule(release):
    archive, manifest = release
    m, problems = validate_manifest(manifest)
    assert problems == []
    with open(archive, "rb") as fh:
        assert m["spec"]["platforms"][0]["sha256"] == hashlib.sha256(fh.read()).hexdigest()
    from cpumodel import __version__

    assert m["spec"]["version"] == "v" + __version__
    assert m["spec"]["platforms"][0]["uri"].endswith(os.path.basename(archive))


def test_validator_catches_broken_manifests(release, tmp_path):
    _, manifest = release
    with open(manifest, encoding="utf-8") as fh:
        good = yaml.safe_load(fh)
    bad = dict(good, spec=dict(good["spec"], version="0.1", shortDescription="x" * 51,
                               platforms=good["spec"]["platforms"] * 2))
    path = tmp_path / "other.yaml"
    path.write_text(yaml.safe_dump(bad))
    problems = validate_manifest(str(path))[1]
    assert any("version" in p for p in problems) and any("shortDescription" in p for p in problems)
    assert any("overlapping" in p for p in problems) and any("file name" in p for p in problems)


def test_archive_is_universal_and_safe(release):
    archive, _ = release
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert all(m.isfile() or m.isdir() for m in members)  # no symlinks or hard links
    assert not any(".." in n or n.startswith(("/", "\\")) for n in names)
    assert not [n for n in names if n.endswith(build_dist.COMPILED)]
    top = names[0]
    launcher = next(m for m in members if m.name == top + "/kubectl-cpumodel")
    assert launcher.mode == 0o755
    assert {os.path.basename(n).lower() for n in names} & LICENSE_NAMES
    assert top + "/kubectl-cpumodel.1" in names and top + "/_vendor/kubernetes/__init__.py" in names
    with tarfile.open(archive) as tar:
        assert tar.extractfile(launcher).read().startswith(b"#!/usr/bin/env python3\n")


def test_archive_is_reproducible(release, tmp_path):
    archive, _ = release
    again = build_dist.build(str(tmp_path), str(tmp_path / "cpumodel.yaml"))
    with open(archive, "rb") as a, open(again, "rb") as b:
        assert hashlib.sha256(a.read()).hexdigest() == hashlib.sha256(b.read()).hexdigest()


def test_a_compiled_file_fails_the_build(tmp_path):
    (tmp_path / "_vendor").mkdir()
    (tmp_path / "_vendor" / "sneaky.cpython-39-x86_64-linux-gnu.so").write_bytes(b"\x7fELF")
    with pytest.raises(SystemExit, match="compiled files"):
        build_dist.check_pure(str(tmp_path))


def krew_install(archive, manifest, root):
    """What `kubectl krew install --manifest --archive` does (internal/installation, spec §1.3, §2.1)."""
    with open(manifest, encoding="utf-8") as fh:
        platform = yaml.safe_load(fh)["spec"]["platforms"][0]
    staging, store, bin_dir = root / "staging", root / "store" / "cpumodel" / "v", root / "bin"
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            if ".." in m.name or m.name.startswith(("/", "\\")):
                raise AssertionError("refusing to unpack archive with suspicious entry %s" % m.name)
            if not (m.isfile() or m.isdir()):
                raise AssertionError("unable to handle file type %s" % m.type)
        tar.extractall(staging)
    store.mkdir(parents=True)
    for rule in platform.get("files") or [{"from": "*", "to": "."}]:
        # filepath.Glob: `*` never crosses a path separator, like Python's glob
        matches = sorted(glob.glob(os.path.join(str(staging), rule["from"])))
        assert matches, "no files in the plugin archive matched the glob pattern"
        for src in matches:
            shutil.move(src, os.path.join(store, rule["to"], os.path.basename(src)))
    target = store / platform["bin"]
    assert target.exists(), "bin not found after the files step"
    bin_dir.mkdir()
    os.symlink(target, bin_dir / "kubectl-cpumodel")
    return bin_dir, store


def clean_env(bin_dir):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "KUBECONFIG")}
    venv_bin = os.path.dirname(sys.executable)
    env["PATH"] = os.pathsep.join([str(bin_dir)] + [p for p in env["PATH"].split(os.pathsep) if p != venv_bin])
    return env


def test_installs_and_runs_the_way_krew_does(release, tmp_path):
    kubectl = kubectl_binary()
    if not kubectl:
        pytest.skip("no kubectl")
    bin_dir, store = krew_install(*release, tmp_path)
    env = clean_env(bin_dir)
    helped = subprocess.run([kubectl, "cpumodel", "--help"], capture_output=True, text=True, env=env)
    assert helped.returncode == 0 and "why-not" in helped.stdout, helped.stderr
    for snapshot in (DEMO, BUNDLE):
        ran = subprocess.run([kubectl, "cpumodel", "common", "-f", snapshot, "-o", "json"], capture_output=True,
                             text=True, env=env)
        assert ran.returncode == 0, ran.stderr
        assert '"recommended": "Skylake-Server-IBRS"' in ran.stdout
    probe = ("import os, runpy, sys; sys.argv = ['kubectl-cpumodel', '--help']; os._exit = sys.exit\n"
             "try:\n    runpy.run_path(%r, run_name='__main__')\nexcept SystemExit:\n    pass\n"
             "print('LOADED', [m for m in ('kubernetes', 'yaml', 'http.client') if m in sys.modules])") % str(store / "kubectl-cpumodel")
    out = subprocess.run(["python3", "-c", probe], capture_output=True, text=True, env=env)
    assert "LOADED []" in out.stdout, out.stdout + out.stderr


@pytest.fixture(scope="session")
def wheel(tmp_path_factory):
    """The project's wheel, built once (pip wheel, as a release would)."""
    folder = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(folder), ROOT], check=True, capture_output=True)
    return str(next(folder.glob("*.whl")))


def test_pip_wheel_installs_man_page_and_both_scripts(wheel):
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        page = next(n for n in names if n.endswith("share/man/man1/kubectl-cpumodel.1"))
        roff = zf.read(page).decode()
        entry = zf.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "kubectl-cpumodel = cpumodel.cli:main" in entry
    assert "kubectl_complete-cpumodel = cpumodel.completion:main" in entry
    assert roff.startswith(".TH KUBECTL\\-CPUMODEL")
    for flag in ("exit\\-code", "dry\\-run", "\\-\\-cluster", "\\-\\-restart", "\\-\\-kubeconfig", "\\-\\-selector"):
        assert flag in roff, flag
    for command in ("diff", "common", "why\\-not", "set"):
        assert command in roff


def oldest_python():
    """A Python 3.9 interpreter, if this machine has one (pyenv or system)."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.9*/bin/python3"))) + \
        [p for p in (shutil.which("python3.9"),) if p]
    for candidate in candidates:
        probe = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
        if probe.returncode == 0 and probe.stdout.strip() == "(3, 9)":
            return candidate
    return None


def test_archive_runs_on_python_3_9(release, tmp_path):
    python39 = oldest_python()
    if not python39:
        pytest.skip("no Python 3.9 interpreter on this machine")
    _, store = krew_install(*release, tmp_path)
    env = clean_env(tmp_path / "bin")
    for args in (["common", "-f", DEMO, "-o", "json"], ["why-not", "vm/db-1", "-f", BUNDLE],
                 ["set", "vm/web-1", "Skylake-Server-IBRS", "--dry-run=client", "-f", DEMO, "-o", "yaml"]):
        ran = subprocess.run([python39, "-S", str(store / "kubectl-cpumodel")] + args, capture_output=True,
                             text=True, env=env)
        assert ran.returncode == 0, ran.stderr


def test_pip_install_on_python_3_9_gives_both_scripts_and_the_man_page(tmp_path, wheel):
    python39 = oldest_python()
    if not python39:
        pytest.skip("no Python 3.9 interpreter on this machine")
    venv = tmp_path / "venv39"
    subprocess.run([python39, "-m", "venv", str(venv)], check=True)
    # The wheel with its dependencies as pip resolves them for Python 3.9 (kubernetes 35.x and friends).
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", wheel], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr[-2000:]
    assert (venv / "share" / "man" / "man1" / "kubectl-cpumodel.1").exists()
    assert (venv / "bin" / "kubectl_complete-cpumodel").exists()
    ran = subprocess.run([str(venv / "bin" / "kubectl-cpumodel"), "common", "-f", DEMO, "-o", "json"],
                         capture_output=True, text=True)
    assert ran.returncode == 0 and '"recommended": "Skylake-Server-IBRS"' in ran.stdout, ran.stderr
