#!/usr/bin/env python3
"""Build the krew release: a universal, reproducible tar.gz and krew/cpumodel.yaml.

Usage: python tools/build_dist.py [OUT_DIR]     (default dist/)
The archive holds the launcher (0755), the cpumodel package, pure-Python
dependencies in _vendor/ (krew/vendor-requirements.txt, installed by pip for
Python 3.9), the man page, the completion helper and LICENSE. Compiled files
that have a pure-Python fallback (PyYAML's _yaml, charset_normalizer's mypyc
modules) are dropped; any other compiled file fails the build. Same inputs give
the same bytes: sorted entries, fixed mtimes and owners, gzip without a timestamp.
"""
import gzip
import hashlib
import io
import os
import re
import shutil
import string
import subprocess
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
COMPILED = (".so", ".pyd", ".dylib", ".dll", ".exe", ".pyc")
DROPPABLE = (re.compile(r"^yaml/_yaml\..*\.so$"), re.compile(r"^charset_normalizer/[\w]+\..*\.so$"))
EXECUTABLES = {"kubectl-cpumodel", "kubectl_complete-cpumodel"}
EPOCH = int(os.environ.get("SOURCE_DATE_EPOCH", "1764000000"))
COMPLETION_HELPER = """#!/bin/sh
# kubectl >= 1.26 runs this for `kubectl cpumodel <TAB>`; put it on PATH beside krew's bin folder.
exec kubectl-cpumodel __complete "$@"
"""


def version() -> str:
    from cpumodel import __version__

    return "v" + __version__


def copy_package(stage: str) -> None:
    for dirpath, dirnames, files in os.walk(os.path.join(ROOT, "cpumodel")):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        rel = os.path.relpath(dirpath, ROOT)
        os.makedirs(os.path.join(stage, rel), exist_ok=True)
        for f in sorted(files):
            if f.endswith((".py", ".json")):
                shutil.copy2(os.path.join(dirpath, f), os.path.join(stage, rel, f))


def write_manpage(stage: str) -> None:
    from argparse_manpage.manpage import Manpage

    from cpumodel.parser import build_manpage_parser

    os.environ.setdefault("SOURCE_DATE_EPOCH", str(EPOCH))
    page = Manpage(build_manpage_parser(), _data={"project_name": "kubectl-cpumodel", "version": version()[1:],
                                                  "manual_title": "kubectl-cpumodel Manual",
                                                  "description": "find, explain and fix CPU-model live-migration "
                                                                 "blockers on KubeVirt and Harvester"})
    with open(os.path.join(stage, "kubectl-cpumodel.1"), "w", encoding="utf-8") as fh:
        fh.write(str(page))


def vendor(stage: str) -> None:
    target = os.path.join(stage, "_vendor")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--target", target,
           "--python-version", "3.9", "--implementation", "cp", "--only-binary=:all:",
           "--platform", "manylinux2014_x86_64", "-r", os.path.join(ROOT, "krew", "vendor-requirements.txt")]
    subprocess.run(cmd, check=True)
    shutil.rmtree(os.path.join(target, "bin"), ignore_errors=True)
    for dirpath, dirnames, files in os.walk(target):
        for d in [d for d in dirnames if d == "__pycache__"]:
            shutil.rmtree(os.path.join(dirpath, d))
        for f in files:
            rel = os.path.relpath(os.path.join(dirpath, f), target)
            if f.endswith(COMPILED) and any(p.match(rel) for p in DROPPABLE):
                os.remove(os.path.join(dirpath, f))
            elif f.endswith(("RECORD", "INSTALLER", "REQUESTED", "direct_url.json")):
                os.remove(os.path.join(dirpath, f))  # pip's install bookkeeping, not needed at run time


def check_pure(stage: str) -> None:
    compiled = [os.path.relpath(os.path.join(d, f), stage) for d, _, fs in os.walk(stage) for f in fs
                if f.endswith(COMPILED)]
    if compiled:
        raise SystemExit("build_dist: compiled files would ship in a universal archive: %s" % ", ".join(compiled))


def stage_tree(stage: str) -> None:
    os.makedirs(stage)
    for name in ("kubectl-cpumodel", "LICENSE", "README.md"):
        shutil.copy2(os.path.join(ROOT, name), os.path.join(stage, name))
    with open(os.path.join(stage, "kubectl_complete-cpumodel"), "w", encoding="utf-8") as fh:
        fh.write(COMPLETION_HELPER)
    copy_package(stage)
    write_manpage(stage)
    vendor(stage)
    check_pure(stage)


def _info(path: str, arcname: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(arcname)
    info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, 0, 0, "", ""
    if os.path.isdir(path):
        info.type, info.mode = tarfile.DIRTYPE, 0o755
    else:
        info.size = os.path.getsize(path)
        info.mode = 0o755 if os.path.basename(path) in EXECUTABLES else 0o644
    return info


def pack(stage: str, topdir: str, out: str) -> None:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = [stage]
        for dirpath, dirnames, files in os.walk(stage):
            dirnames.sort()
            entries += [os.path.join(dirpath, d) for d in dirnames] + [os.path.join(dirpath, f) for f in sorted(files)]
        for path in sorted(entries):
            arcname = os.path.join(topdir, os.path.relpath(path, stage)).rstrip("/.") or topdir
            info = _info(path, arcname)
            if info.isdir():
                tar.addfile(info)
            else:
                with open(path, "rb") as fh:
                    tar.addfile(info, fh)
    with open(out, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=0, compresslevel=9) as gz:
        gz.write(raw.getvalue())


def render_manifest(archive: str, sha256: str, topdir: str, out: str) -> None:
    with open(os.path.join(ROOT, "krew", "cpumodel.yaml.tmpl"), encoding="utf-8") as fh:
        text = string.Template(fh.read()).substitute(VERSION=version(), SHA256=sha256, TOPDIR=topdir,
                                                     ARCHIVE=os.path.basename(archive))
    with open(out, "w", encoding="utf-8") as fh:
        fh.write(text)


def build(out_dir: str, manifest: str) -> str:
    topdir = "kubectl-cpumodel-%s" % version()
    stage = os.path.join(out_dir, "stage", topdir)
    shutil.rmtree(os.path.join(out_dir, "stage"), ignore_errors=True)
    stage_tree(stage)
    archive = os.path.join(out_dir, topdir + ".tar.gz")
    pack(stage, topdir, archive)
    with open(archive, "rb") as fh:
        sha256 = hashlib.sha256(fh.read()).hexdigest()
    render_manifest(archive, sha256, topdir, manifest)
    shutil.rmtree(os.path.join(out_dir, "stage"))
    return archive


def main(argv):
    out_dir = os.path.abspath(argv[1] if len(argv) > 1 else os.path.join(ROOT, "dist"))
    manifest = argv[2] if len(argv) > 2 else os.path.join(ROOT, "krew", "cpumodel.yaml")
    os.makedirs(out_dir, exist_ok=True)
    archive = build(out_dir, manifest)
    print("wrote %s and %s" % (archive, manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
