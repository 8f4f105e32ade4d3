"""Cluster access exactly as kubectl's: credentials, connection flags, proxies, TLS, signals, time, scripting."""
import base64
import json
import signal
import subprocess
import sys
import time

import pytest
import yaml

from conftest import base_env as conftest_base_env
from conftest import DEMO, LAUNCHER, base_env, run_cli, run_json, run_subprocess
from testkit import pki
from testkit.fakekube import FakeKube, serve_tls
from testkit.proxy import serve_proxy

TOKEN = "t0ken-value"


def one_error(proc):
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


def kubeconfig(path, server, user, cluster_extra=None):
    cluster = dict({"server": server}, **(cluster_extra or {}))
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "k", "cluster": cluster}], "users": [{"name": "u", "user": user}],
              "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u", "namespace": "default"}}]}
    path.write_text(yaml.safe_dump(config))
    return str(path)


def b64(data):
    return base64.b64encode(data).decode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    if not pki.available():
        pytest.skip("openssl not available")
    folder = str(tmp_path_factory.mktemp("pki"))
    ca = pki.authority(folder)
    return {"ca": ca, "server": pki.issue(folder, ca, "apiserver", ["IP:127.0.0.1", "DNS:kube.test"]),
            "named": pki.issue(folder, ca, "named", ["DNS:kube.test"]),
            "expired": pki.issue(folder, ca, "expired", ["IP:127.0.0.1"], start="20200101000000Z",
                                 end="20210101000000Z"),
            "alice": pki.issue(folder, ca, "alice", client=True)}


@pytest.fixture
def tls(demo_objects, certs):
    """Start fakes behind TLS (asking for client certificates) with the named server certificate."""
    started = []

    def start(which="server"):
        api = FakeKube(demo_objects)
        server, url = serve_tls(api, certs[which].cert, certs[which].key, client_ca=certs["ca"].cert)
        started.append(server)
        return api, url

    yield start
    for server in started:
        server.shutdown()
        server.server_close()


# ---- credentials ------------------------------------------------------------------------------
def test_token_file_with_a_trailing_newline_is_trimmed(fake, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    kc = kubeconfig(tmp_path / "kc", fake.url, {"tokenFile": "token"})  # relative to the kubeconfig
    assert run_cli(["common", "-o", "json"], env=base_env(KUBECONFIG=kc)).returncode == 0
    assert {r["headers"]["authorization"] for r in fake.requests} == {"Bearer " + TOKEN}


def test_a_token_that_cannot_be_sent_is_refused_and_never_shown(fake, tmp_path):
    kc = kubeconfig(tmp_path / "kc", fake.url, {"token": "abc\nsecretpart"})
    err = one_error(run_cli(["common", "-v", "9"], env=base_env(KUBECONFIG=kc)))
    assert "getting credentials" in err and "secretpart" not in err and "abc" not in err
    assert fake.requests == []


def test_client_key_data_never_reaches_the_disk(tls, certs, tmp_path):
    api, url = tls()
    user = {"client-certificate-data": b64(certs["alice"].pem()), "client-key-data": b64(certs["alice"].key_pem())}
    kc = kubeconfig(tmp_path / "kc", url, user, {"certificate-authority-data": b64(certs["ca"].pem())})
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = base_env(KUBECONFIG=kc, TMPDIR=str(scratch))
    assert run_subprocess(["common", "-o", "json"], env=env).returncode == 0
    assert {r["client_cn"] for r in api.requests} == {"alice"}  # the key really served the TLS handshake
    api.fault("GET", "nodes", delay=20)
    proc = subprocess.Popen([sys.executable, LAUNCHER, "common"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 15
    while not any(r["path"] == "/api/v1/nodes" for r in api.requests[-1:]) and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # no cleanup can run: nothing may have been written
    proc.wait()
    assert list(scratch.iterdir()) == []


def exec_plugin(folder, script):
    path = folder / "bin" / "credential-helper"
    path.parent.mkdir(exist_ok=True)
    path.write_text("#!%s\n%s" % (sys.executable, script))
    path.chmod(0o755)
    return path


PLUGIN_OK = """import json, os, sys
info = json.loads(os.environ["KUBERNETES_EXEC_INFO"])
open(os.environ["PROBE"], "w").write(json.dumps({"info": info, "args": sys.argv[1:], "greeting": os.environ["GREETING"]}))
print(json.dumps({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": "from-exec\\n", "expirationTimestamp": "2999-01-01T00:00:00Z"}}))
"""


def test_exec_plugin_relative_to_the_kubeconfig_with_args_env_and_cluster_info(fake, tmp_path):
    exec_plugin(tmp_path, PLUGIN_OK)
    probe = tmp_path / "probe.json"
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": "./bin/credential-helper",
                     "args": ["--cluster", "prod"], "env": [{"name": "GREETING", "value": "hi"}],
                     "interactiveMode": "Never", "provideClusterInfo": True}}
    kc = kubeconfig(tmp_path / "kc", fake.url, user, {"extensions": [
        {"name": "client.authentication.k8s.io/exec", "extension": {"audience": "kube"}}]})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = subprocess.run([sys.executable, LAUNCHER, "common", "-o", "json"], cwd=str(elsewhere), capture_output=True,
                          text=True, env=base_env(KUBECONFIG=kc, PROBE=str(probe)))
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(probe.read_text())
    assert seen["args"] == ["--cluster", "prod"] and seen["greeting"] == "hi"
    assert seen["info"]["spec"]["interactive"] is False
    assert seen["info"]["spec"]["cluster"]["server"] == fake.url
    assert seen["info"]["spec"]["cluster"]["config"] == {"audience": "kube"}
    assert {r["headers"]["authorization"] for r in fake.requests} == {"Bearer from-exec"}


@pytest.mark.parametrize("script, expected", [
    ("import sys; sys.exit(1)", "failed with exit code 1"),
    ("print('not json')", "did not print an ExecCredential"),
    ("import json; print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1', 'kind': 'ExecCredential',"
     " 'status': {'token': 'x', 'expirationTimestamp': '2001-01-01T00:00:00Z'}}))", "expired credential"),
    ("import json; print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1', 'kind': 'ExecCredential',"
     " 'status': {'token': 'x'}}))", "plugin returned version"),
    (None, "executable missing-helper not found"),
    ("print('never run')", "standard input is not a terminal"),  # interactiveMode Always, no terminal
])
def test_exec_plugin_failures_stop_before_any_request(fake, tmp_path, script, expected):
    command = "missing-helper"
    if script is not None:
        command = str(exec_plugin(tmp_path, script))
    mode = "Always" if "terminal" in expected else "Never"
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": command,
                     "interactiveMode": mode}}
    kc = kubeconfig(tmp_path / "kc", fake.url, user)
    err = one_error(run_cli(["common"], env=base_env(KUBECONFIG=kc)))
    assert err.startswith("error: getting credentials: ") and expected in err
    assert fake.requests == []  # never a request without the credentials the kubeconfig asked for


def test_oidc_auth_provider_keeps_working(fake, tmp_path):
    claims = base64.urlsafe_b64encode(json.dumps({"sub": "jane", "exp": 32503680000}).encode()).decode().rstrip("=")
    id_token = "eyJhbGciOiJSUzI1NiJ9.%s.c2lnbmF0dXJl" % claims
    user = {"auth-provider": {"name": "oidc", "config": {"client-id": "kubectl", "id-token": id_token,
                                                         "idp-issuer-url": "https://issuer.invalid"}}}
    kc = kubeconfig(tmp_path / "kc", fake.url, user)
    assert run_cli(["common", "-o", "json"], env=base_env(KUBECONFIG=kc)).returncode == 0
    assert {r["headers"]["authorization"] for r in fake.requests} == {"Bearer " + id_token}


def test_401_is_kubectls_unauthorized(live_env, fake):
    fake.fault("GET", "nodes", status=401, reason="Unauthorized", message="Unauthorized")
    assert "You must be logged in to the server (Unauthorized)" in one_error(run_cli(["common"], env=live_env))


# ---- connection flags ------------------------------------------------------------------------------
def test_server_and_token_flags_need_no_kubeconfig(fake, tmp_path):
    env = base_env(HOME=str(tmp_path))
    doc = run_json(["common", "-s", fake.url, "--token", TOKEN], env=env)
    assert doc["recommended"] == "Skylake-Server-IBRS"
    assert {r["headers"]["authorization"] for r in fake.requests} == {"Bearer " + TOKEN}


def test_headers_carry_utf8_and_refuse_line_breaks(live_env, fake):
    assert run_cli(["common", "--as", "jürgen-用户"], env=live_env).returncode == 0
    sent = fake.requests[-1]["header_lists"]["impersonate-user"][0]
    assert sent.encode("latin-1").decode("utf-8") == "jürgen-用户"  # UTF-8 bytes on the wire, as client-go sends
    proc = run_cli(["common", "--as", "eve\r\nX-Evil: 1"], env=live_env)
    assert proc.returncode == 1 and "holds a line break" in proc.stderr and "Traceback" not in proc.stderr
    assert "X-Evil" not in proc.stderr


def test_a_server_url_with_a_path_as_rancher_proxies_downstream_clusters(fake, tmp_path):
    fake.path_prefix = "/k8s/clusters/c-m-4x2kq"
    kc = kubeconfig(tmp_path / "kc", fake.url + fake.path_prefix, {"token": TOKEN})
    doc = json.loads(run_cli(["common", "-o", "json"], env=base_env(KUBECONFIG=kc)).stdout)
    assert doc["recommended"] == "Skylake-Server-IBRS"
    proc = run_cli(["set", "vm/web-1", "Skylake-Server-IBRS"], env=base_env(KUBECONFIG=kc))
    assert proc.returncode == 0, proc.stderr
    assert any(r["method"] == "PATCH" for r in fake.requests)


def test_impersonation_headers(live_env, fake):
    assert run_cli(["common", "--as", "jane", "--as-group", "devs", "--as-group", "ops", "--as-uid", "42"],
                   env=live_env).returncode == 0
    for request in fake.requests:
        assert request["header_lists"]["impersonate-user"] == ["jane"]
        assert request["header_lists"]["impersonate-group"] == ["devs", "ops"]
        assert request["header_lists"]["impersonate-uid"] == ["42"]


def test_flags_override_the_kubeconfig(fake, tmp_path):
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "dead", "cluster": {"server": "http://127.0.0.1:1"}},
                           {"name": "live", "cluster": {"server": fake.url}}],
              "users": [{"name": "nobody", "user": {"token": "wrong"}}, {"name": "ops", "user": {"token": TOKEN}}],
              "contexts": [{"name": "c", "context": {"cluster": "dead", "user": "nobody"}}]}
    kc = tmp_path / "kc"
    kc.write_text(yaml.safe_dump(config))
    env = base_env(KUBECONFIG=str(kc))
    assert "cannot connect" in one_error(run_cli(["common"], env=env))
    assert run_cli(["--cluster", "live", "common", "--user", "ops"], env=env).returncode == 0
    assert {r["headers"]["authorization"] for r in fake.requests} == {"Bearer " + TOKEN}
    assert 'cluster "gone" not found' in one_error(run_cli(["--cluster", "gone", "common"], env=env))


def test_tls_flags_and_client_certificates(tls, certs, tmp_path):
    api, url = tls()
    kc = kubeconfig(tmp_path / "kc", url, {"token": TOKEN})
    env = base_env(KUBECONFIG=kc)
    err = one_error(run_cli(["common"], env=env))
    assert "TLS error talking to %s: x509: certificate signed by unknown authority" % url in err
    insecure = run_cli(["common", "--insecure-skip-tls-verify", "-o", "json"], env=env)
    assert insecure.returncode == 0 and insecure.stderr == ""  # no warning per request
    ok = run_cli(["common", "--certificate-authority", certs["ca"].cert, "--client-certificate", certs["alice"].cert,
                  "--client-key", certs["alice"].key, "-o", "json"], env=env)
    assert ok.returncode == 0, ok.stderr
    assert api.requests[-1]["client_cn"] == "alice"


def test_without_a_ca_in_the_kubeconfig_the_system_store_is_trusted_as_go_trusts_it(tls, certs, tmp_path,
                                                                                      monkeypatch):
    """Go's crypto/x509 (root_unix.go, root_linux.go): $SSL_CERT_FILE replaces the distribution's bundle list,
    $SSL_CERT_DIR the directories (':'-separated, every file read); certifi is the fallback only where no
    system store exists; a CA in the kubeconfig is trusted alone."""
    from cpumodel.sources import transport

    def base_env(**extra):  # this machine's own SSL_CERT_FILE/SSL_CERT_DIR must not decide the test
        env = {k: v for k, v in conftest_base_env(**extra).items() if k in extra or not k.startswith("SSL_CERT_")}
        return env

    _, url = tls()
    kc = kubeconfig(tmp_path / "kc", url, {"token": TOKEN})
    untrusted = "x509: certificate signed by unknown authority"
    assert untrusted in one_error(run_cli(["common"], env=base_env(KUBECONFIG=kc)))
    # $SSL_CERT_FILE, as a company CA is often handed to tools.
    assert run_cli(["common", "-o", "json"], env=base_env(KUBECONFIG=kc, SSL_CERT_FILE=certs["ca"].cert)
                   ).returncode == 0
    # $SSL_CERT_DIR: any file name, several folders.
    folder = tmp_path / "company-cas"
    folder.mkdir()
    (folder / "our-root.pem").write_bytes(certs["ca"].pem())
    env = base_env(KUBECONFIG=kc, SSL_CERT_DIR="%s:%s" % (tmp_path / "missing", folder))
    assert run_cli(["common", "-o", "json"], env=env).returncode == 0
    # The distribution's bundle (where update-ca-certificates puts company CAs): the first file that exists.
    bundle = tmp_path / "ca-bundle.crt"
    bundle.write_bytes(certs["alice"].pem() + certs["ca"].pem())
    monkeypatch.setattr(transport, "CERT_FILES", (str(tmp_path / "absent.crt"), str(bundle)))
    monkeypatch.setattr(transport, "CERT_DIRS", (str(tmp_path / "absent"),))
    monkeypatch.setattr(transport, "_certifi_bundle", lambda: pytest.fail("certifi read beside a system store"))
    assert run_cli(["common", "-o", "json"], env=base_env(KUBECONFIG=kc)).returncode == 0
    # A CA in the kubeconfig is the only trust: the system's does not widen it.
    other = kubeconfig(tmp_path / "other", url, {"token": TOKEN},
                       {"certificate-authority-data": b64(certs["alice"].pem())})
    assert untrusted in one_error(run_cli(["common"], env=base_env(KUBECONFIG=other)))
    # No system store at all: certifi's bundle stands in.
    monkeypatch.setattr(transport, "CERT_FILES", (str(tmp_path / "absent.crt"),))
    monkeypatch.setattr(transport, "_certifi_bundle", lambda: certs["ca"].cert)
    assert run_cli(["common", "-o", "json"], env=base_env(KUBECONFIG=kc)).returncode == 0
    monkeypatch.setattr(transport, "_certifi_bundle", lambda: None)
    assert untrusted in one_error(run_cli(["common"], env=base_env(KUBECONFIG=kc)))


def test_tls_errors_name_the_reason(tls, certs, tmp_path):
    for which, reason in (("expired", "certificate has expired or is not yet valid"),
                          ("named", "certificate is not valid for the server's name")):
        _, url = tls(which)
        kc = kubeconfig(tmp_path / ("kc-" + which), url, {"token": TOKEN},
                        {"certificate-authority-data": b64(certs["ca"].pem())})
        err = one_error(run_cli(["common"], env=base_env(KUBECONFIG=kc)))
        assert ("TLS error talking to %s: x509: %s" % (url, reason)) in err
    # The name the certificate holds, given with --tls-server-name, makes it valid.
    assert run_cli(["common", "--tls-server-name", "kube.test", "-o", "json"],
                   env=base_env(KUBECONFIG=str(tmp_path / "kc-named"))).returncode == 0


# ---- proxies ------------------------------------------------------------------------------------
@pytest.fixture
def proxy():
    server, url, log = serve_proxy()
    yield url, log
    server.shutdown()
    server.server_close()


def test_kubeconfig_proxy_url(fake, proxy, tmp_path):
    url, log = proxy
    kc = kubeconfig(tmp_path / "kc", fake.url, {"token": TOKEN}, {"proxy-url": url})
    assert run_cli(["common", "-o", "json"], env=base_env(KUBECONFIG=kc)).returncode == 0
    assert log and all(target.startswith(fake.url) for _, target in log)
    socks = kubeconfig(tmp_path / "socks", fake.url, {"token": TOKEN}, {"proxy-url": "socks5://127.0.0.1:1080"})
    assert "socks5 proxy scheme is not supported" in one_error(run_cli(["common"], env=base_env(KUBECONFIG=socks)))


def test_http_proxy_for_http_servers(fake, proxy, tmp_path):
    url, log = proxy
    named = fake.url.replace("127.0.0.1", "kube.test")
    kc = kubeconfig(tmp_path / "kc", named, {"token": TOKEN})
    env = base_env(KUBECONFIG=kc, HTTP_PROXY=url, HTTPS_PROXY="http://127.0.0.1:1")
    assert run_cli(["common", "-o", "json"], env=env).returncode == 0
    assert log and all(method == "GET" and target.startswith(named) for method, target in log)
    assert {r["headers"]["authorization"] for r in fake.requests} == {"Bearer " + TOKEN}


def test_https_proxy_for_https_servers_and_no_proxy(tls, certs, proxy, tmp_path):
    url, log = proxy
    _, server = tls()
    named = server.replace("127.0.0.1", "kube.test")  # a name: loopback addresses never go through a proxy
    kc = kubeconfig(tmp_path / "kc", named, {"token": TOKEN}, {"certificate-authority-data": b64(certs["ca"].pem())})
    env = base_env(KUBECONFIG=kc, HTTPS_PROXY=url, HTTP_PROXY="http://127.0.0.1:1")
    assert run_cli(["common", "-o", "json"], env=env).returncode == 0, "HTTP_PROXY must not be used for https"
    assert log and log[0] == ("CONNECT", named.replace("https://", ""))
    direct = one_error(run_cli(["common"], env=dict(env, NO_PROXY=".test")))
    assert "cannot resolve the host of %s" % named in direct  # NO_PROXY: straight to kube.test, which has no DNS


# ---- usage, terminal, signals and time ------------------------------------------------------------
def test_usage_errors_come_before_any_file_or_cluster(tmp_path):
    env = base_env(HOME=str(tmp_path))  # no kubeconfig at all
    assert "unsupported VM reference" in one_error(run_cli(["why-not", "pod/x"], env=env))
    err = one_error(run_cli(["set", "vm/a", "M", "--cluster"], env=env))
    assert "--cluster sets the cluster default" in err
    both = one_error(run_cli(["set", "vmi/a", "M", "--request-timeout", "soon"], env=env))
    assert "--request-timeout" in both and "set works on VirtualMachines" in both  # every problem at once


def test_did_you_mean_for_commands_and_models():
    assert "did you mean why-not?" in one_error(run_cli(["why-nto", "vm/x"]))
    err = one_error(run_cli(["set", "vm/web-1", "skylake-server-ibrs", "--dry-run", "-f", DEMO], offline=True))
    assert "did you mean Skylake-Server-IBRS?" in err


def test_bare_dry_run_means_client_and_eats_nothing():
    proc = run_cli(["set", "vm/web-1", "--dry-run", "Skylake-Server-IBRS", "-f", DEMO], offline=True)
    assert proc.returncode == 0, proc.stderr
    assert "cpu model set to Skylake-Server-IBRS (dry run)" in proc.stdout


def test_ascii_terminal_gets_words_not_glyphs():
    env = base_env(PYTHONIOENCODING="ascii")
    proc = run_subprocess(["why-not", "vm/db-1", "-f", DEMO], offline=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "hv-02        yes" in proc.stdout and "hv-04        no" in proc.stdout


def test_ctrl_c_mid_request_stops_at_once_with_130(live_env, fake):
    fake.fault("GET", "nodes", delay=30)
    proc = subprocess.Popen([sys.executable, LAUNCHER, "common"], env=live_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30  # a hang guard, not a timing assertion
    while not any(r["path"] == "/api/v1/nodes" for r in fake.requests) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=5)  # 5 s of 30: the stalled request did not hold it
    assert proc.returncode == 130 and err == "error: interrupted\n" and out == ""


def test_request_timeout_bounds_the_whole_request(live_env, fake):
    # Each byte run arrives well within 1 s, so only a bound on the whole request can stop it.
    fake.fault("GET", "nodes", trickle=8)
    err = one_error(run_cli(["common", "--request-timeout", "1s"], env=live_env))
    assert "timed out after 1s" in err


def test_closed_pipe_exits_quietly():
    pipeline = subprocess.run("'%s' '%s' diff -f '%s' | head -1" % (sys.executable, LAUNCHER, DEMO), shell=True,
                              capture_output=True, text=True, env=base_env())
    assert pipeline.stdout.startswith("GROUP") and pipeline.stderr == ""


# ---- scripting -----------------------------------------------------------------------------------
def test_every_document_carries_api_version_and_kind():
    for args, kind in ((["common"], "CommonReport"), (["diff", "hv-01", "hv-04"], "DiffReport"),
                       (["diff"], "DiffMatrixReport"), (["why-not", "vm/db-1", "hv-02"], "WhyNotReport"),
                       (["why-not", "vm/db-1"], "WhyNotNodesReport")):
        for fmt in ("json", "yaml"):
            proc = run_cli(args + ["-f", DEMO, "-o", fmt], offline=True)
            doc = yaml.safe_load(proc.stdout)
            assert (doc["apiVersion"], doc["kind"]) == ("cpumodel.kubevirt.io/v1alpha1", kind)


def test_no_headers_and_output_name():
    plain = run_cli(["why-not", "vm/db-1", "-f", DEMO], offline=True).stdout
    bare = run_cli(["why-not", "vm/db-1", "-f", DEMO, "--no-headers"], offline=True).stdout
    assert "NODE" in plain and "MIGRATABLE" not in bare and "hv-04" in bare
    assert run_cli(["why-not", "vm/db-1", "-f", DEMO, "-o", "name"], offline=True).stdout == "node/hv-02\nnode/hv-03\n"
    assert run_cli(["common", "-f", DEMO, "-o", "name"], offline=True).stdout.splitlines()[0] == "node/hv-01"
    written = run_cli(["set", "vm/web-1", "Skylake-Server-IBRS", "--dry-run", "-o", "name", "-f", DEMO], offline=True)
    assert written.stdout == "virtualmachine.kubevirt.io/web-1\n"
