"""Credentials the way client-go resolves them: tokens, token files, exec plugins, key material in memory.

- Tokens from any source are trimmed (a token file written by `echo` ends in a newline) and
  never appear in a message or log line.
- Client key and certificate *data* never reach the disk: on Linux an anonymous in-memory
  file (memfd) serves the TLS library; elsewhere a 0600 temporary file, removed at exit and
  on SIGTERM/SIGINT/SIGHUP.
- Exec plugins (client-go `plugin/pkg/client/auth/exec`): `command` resolved against the
  kubeconfig's folder when it holds a path separator, else on PATH; `args`, `env`,
  `interactiveMode`, `provideClusterInfo` and KUBERNETES_EXEC_INFO as client-go sets them.
  Any failure stops the command: no request is ever sent without the credentials asked for.
"""
from __future__ import annotations

import base64
import binascii
import json
import os
import sys
from typing import Any, Dict, List, Mapping, Optional

from cpumodel.errors import SourceError

EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
INTERACTIVE_MODES = ("Never", "IfAvailable", "Always")
_TEMP_FILES: List[str] = []


class CredentialError(SourceError):
    def __init__(self, message: str):
        super().__init__("getting credentials: " + message)


def trimmed_token(token: Any) -> Optional[str]:
    """client-go trims token files; we trim every token, since whitespace cannot go into a header."""
    text = str(token).strip() if token is not None else ""
    if any(ord(ch) < 0x21 or ord(ch) == 0x7f for ch in text):
        # Never show it: the message would carry the secret into logs.
        raise CredentialError("the bearer token contains a line break or control character, so it cannot be "
                              "sent in an HTTP header; check the kubeconfig, token file or exec plugin")
    return text or None


def read_token_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            token = trimmed_token(fh.read())
    except (OSError, UnicodeDecodeError) as exc:
        raise CredentialError("cannot read tokenFile %s: %s" % (path, exc.strerror if isinstance(exc, OSError)
                                                                 else "not text"))
    if token is None:
        raise CredentialError("tokenFile %s is empty" % path)
    return token


def decoded(data: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(data), validate=True)
    except (binascii.Error, ValueError):
        raise SourceError("kubeconfig: %s is not valid base64" % what)


def memory_file(content: bytes, name: str) -> str:
    """A path the TLS library can open that holds `content`, without writing it to a disk."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create(name, os.MFD_CLOEXEC)
        os.write(fd, content)
        return "/proc/self/fd/%d" % fd  # the descriptor stays open for the life of the process
    import tempfile

    fd, path = tempfile.mkstemp(prefix="kubectl-cpumodel-", suffix="-" + name)
    os.fchmod(fd, 0o600)
    os.write(fd, content)
    os.close(fd)
    _remember_temp_file(path)
    return path


def _remember_temp_file(path: str) -> None:
    import atexit
    import signal

    if not _TEMP_FILES:
        atexit.register(_remove_temp_files)
        for sig in (signal.SIGTERM, signal.SIGINT, getattr(signal, "SIGHUP", None)):
            if sig is not None:
                _chain_signal(sig)
    _TEMP_FILES.append(path)


def _remove_temp_files() -> None:
    while _TEMP_FILES:
        try:
            os.unlink(_TEMP_FILES.pop())
        except OSError:
            pass


def _chain_signal(sig: int) -> None:
    import signal

    previous = signal.getsignal(sig)

    def handler(signum, frame):
        _remove_temp_files()
        if callable(previous):
            previous(signum, frame)
        else:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    try:
        signal.signal(sig, handler)
    except ValueError:  # not the main thread: atexit still removes the files
        pass


def resolve_command(command: str, base_dir: str, env: Mapping[str, str]) -> str:
    """client-go: a command with a path separator is relative to the kubeconfig's folder, else found on PATH."""
    if os.path.isabs(command):
        found: Optional[str] = command if os.access(command, os.X_OK) else None
    elif os.sep in command or (os.altsep and os.altsep in command):
        candidate = os.path.join(base_dir, command)
        found = candidate if os.access(candidate, os.X_OK) else None
    else:
        import shutil

        found = shutil.which(command, path=env.get("PATH", os.defpath))
    if found is None or os.path.isdir(found):
        raise CredentialError("exec: executable %s not found" % command)
    return found


def _interactive(mode: str, stdin: Any) -> bool:
    tty = bool(stdin is not None and hasattr(stdin, "isatty") and stdin.isatty())
    if mode == "Always" and not tty:
        raise CredentialError("exec plugin cannot support interactive mode: standard input is not a terminal")
    return tty and mode != "Never"


def exec_info(api_version: str, interactive: bool, cluster_info: Optional[Dict[str, Any]]) -> str:
    spec: Dict[str, Any] = {"interactive": interactive}
    if cluster_info is not None:
        spec["cluster"] = cluster_info
    return json.dumps({"apiVersion": api_version, "kind": "ExecCredential", "spec": spec})


def run_exec_plugin(config: Mapping[str, Any], base_dir: str, env: Mapping[str, str],
                    cluster_info: Optional[Dict[str, Any]], stdin: Any = None) -> Dict[str, Any]:
    """Run the plugin and return its ExecCredential status ({token} or {clientCertificateData, clientKeyData})."""
    if not isinstance(config, Mapping) or not isinstance(config.get("command"), str) or not config.get("command"):
        raise CredentialError("exec: the kubeconfig's exec entry has no command")
    api_version = config.get("apiVersion")
    if api_version not in EXEC_API_VERSIONS:
        raise CredentialError("exec plugin: invalid apiVersion %r (one of %s)" % (api_version, ", ".join(EXEC_API_VERSIONS)))
    mode = config.get("interactiveMode") or ("IfAvailable" if api_version.endswith("v1beta1") else None)
    if mode not in INTERACTIVE_MODES:
        raise CredentialError("exec plugin: interactiveMode must be one of %s" % ", ".join(INTERACTIVE_MODES))
    command = resolve_command(config["command"], base_dir, env)
    interactive = _interactive(mode, stdin if stdin is not None else sys.stdin)
    child_env = dict(env)
    for item in config.get("env") or ():
        if isinstance(item, Mapping) and item.get("name"):
            child_env[str(item["name"])] = str(item.get("value", ""))
    child_env["KUBERNETES_EXEC_INFO"] = exec_info(api_version, interactive,
                                                  cluster_info if config.get("provideClusterInfo") else None)
    args = [command] + [str(a) for a in config.get("args") or ()]
    import subprocess  # only exec-plugin users pay for it

    try:
        proc = subprocess.run(args, env=child_env, stdout=subprocess.PIPE,
                              stdin=None if interactive else subprocess.DEVNULL)
    except OSError as exc:
        raise CredentialError("exec: executable %s failed to start: %s" % (config["command"], exc.strerror))
    if proc.returncode != 0:
        raise CredentialError("exec: executable %s failed with exit code %d" % (config["command"], proc.returncode))
    return _credential_status(proc.stdout, api_version, config["command"])


def _credential_status(stdout: bytes, api_version: str, command: str) -> Dict[str, Any]:
    try:
        credential = json.loads(stdout)
    except ValueError:
        raise CredentialError("exec: %s did not print an ExecCredential (decoding stdout failed)" % command)
    if not isinstance(credential, dict) or credential.get("kind") != "ExecCredential":
        raise CredentialError("exec: %s did not print an ExecCredential" % command)
    if credential.get("apiVersion") != api_version:
        raise CredentialError("exec plugin is configured to use API version %s, plugin returned version %s"
                              % (api_version, credential.get("apiVersion")))
    status = credential.get("status")
    if not isinstance(status, dict):
        raise CredentialError("exec: %s returned no status" % command)
    token = trimmed_token(status.get("token"))
    has_cert = bool(status.get("clientCertificateData")) and bool(status.get("clientKeyData"))
    if not token and not has_cert:
        raise CredentialError("exec: %s returned neither a token nor a client certificate and key" % command)
    if _expired(status.get("expirationTimestamp")):
        raise CredentialError("exec: %s returned an expired credential" % command)
    return dict(status, token=token) if token else dict(status)


def _expired(stamp: Any) -> bool:
    from datetime import datetime, timezone

    if not stamp:
        return False
    try:
        when = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        raise CredentialError("exec: expirationTimestamp %r is not an RFC 3339 time" % stamp)
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when <= datetime.now(timezone.utc)
