"""The live source against the fake API server: kubeconfig handling, requests, errors."""
import os

import pytest

from conftest import DEMO, base_env, run_cli, run_json, write_kubeconfig


def test_common_live_equals_offline(live_env, fake):
    assert run_json(["common"], env=live_env) == run_json(["common", "-f", DEMO], offline=True)


def test_node_lists_are_metadata_only_gzipped_and_paged(live_env, fake):
    run_json(["diff"], env=live_env)
    lists = [r for r in fake.requests if r["path"] == "/api/v1/nodes"]
    assert lists and all("as=PartialObjectMetadataList" in r["headers"]["accept"] for r in lists)
    assert all("gzip" in r["headers"].get("accept-encoding", "") for r in lists)
    assert lists[0]["query"]["limit"] == "500"


def test_metadata_only_falls_back_to_full_objects(live_env, fake):
    fake.metadata_lists = False
    fake.fault("GET", "^/api/v1/nodes$", status=406, reason="NotAcceptable", message="metadata not supported")
    doc = run_json(["diff"], env=live_env)
    assert doc["columns"]
    accepts = [r["headers"]["accept"] for r in fake.requests if r["path"] == "/api/v1/nodes"]
    assert "as=PartialObjectMetadataList" in accepts[0] and accepts[-1] == "application/json"


def test_paging_follows_continue_and_restarts_on_410(live_env, fake, monkeypatch):
    from testkit.kubevirt import cpu_node

    for i in range(620):
        fake.add(cpu_node("extra-%03d" % i, "Cascadelake-Server", ["Cascadelake-Server"]))
    fake.expire_continue = 1
    doc = run_json(["common"], env=live_env)
    assert len(doc["nodes"]) == 625
    node_lists = [r for r in fake.requests if r["path"] == "/api/v1/nodes"]
    assert [bool(r["query"].get("continue")) for r in node_lists] == [False, True, False, True]


def test_verbose_logs_requests_never_the_token(live_env, fake):
    proc = run_cli(["common", "-v", "6"], env=live_env)
    assert proc.returncode == 0
    assert "GET http://127.0.0.1" in proc.stderr and "/api/v1/nodes" in proc.stderr and " 200 in " in proc.stderr
    assert "s3cr3t" not in proc.stderr and "s3cr3t" not in proc.stdout
    assert all(r["headers"].get("authorization") == "Bearer s3cr3t-token" for r in fake.requests)


def one_error(proc):
    assert proc.returncode == 1, proc.stdout
    assert proc.stderr.startswith("error: ") and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_403_names_verb_and_resource(live_env, fake):
    fake.fault("GET", "^/api/v1/nodes$", status=403, reason="Forbidden",
               message='nodes is forbidden: User "dev" cannot list resource "nodes" in API group "" at the cluster scope')
    err = one_error(run_cli(["common"], env=live_env))
    assert "forbidden" in err and "list nodes at cluster scope" in err


def test_401_and_404(live_env, fake):
    fake.fault("GET", "nodes", status=401, reason="Unauthorized", message="Unauthorized")
    assert "You must be logged in to the server (Unauthorized)" in one_error(run_cli(["common"], env=live_env))
    err = one_error(run_cli(["why-not", "vm/nope", "hv-01"], env=live_env))
    assert 'virtualmachines.kubevirt.io "nope" not found in namespace "default"' in err
    err = one_error(run_cli(["why-not", "vm/web-1", "hv-01", "-n", "nope"], env=live_env))
    assert 'namespaces "nope" not found' in err
    err = one_error(run_cli(["set", "vm/web-1", "Broadwell", "-n", "nope"], env=live_env))
    assert 'namespaces "nope" not found' in err
    err = one_error(run_cli(["why-not", "vm/web-1", "hv-99"], env=live_env))
    assert 'nodes "hv-99" not found' in err
    err = one_error(run_cli(["diff", "hv-01", "hv-99"], env=live_env))
    assert 'nodes "hv-99" not found' in err


def test_5xx_and_429_are_retried_with_retry_after(live_env, fake):
    fake.fault("GET", "^/api/v1/nodes$", status=503, reason="ServiceUnavailable", times=2)
    fake.fault("GET", "kubevirts", status=429, reason="TooManyRequests", times=1, headers={"Retry-After": "0"})
    assert run_json(["common"], env=live_env)["recommended"] == "Skylake-Server-IBRS"
    fake.fault("GET", "^/api/v1/nodes$", status=500, reason="InternalError", message="etcd down", times=10)
    err = one_error(run_cli(["common"], env=live_env))
    assert "500" in err and "etcd down" in err
    assert sum(r["path"] == "/api/v1/nodes" for r in fake.requests) == 3 + 4  # bounded: 4 tries


def test_request_timeout_is_not_multiplied_by_client_retries(live_env, fake):
    fake.fault("GET", "^/api/v1/nodes$", delay=3.0, times=1)
    err = one_error(run_cli(["common", "--request-timeout", "1s"], env=live_env))
    assert "timed out after 1s" in err
    # One try: the transport never retries, and our own retries never repeat a request that timed out.
    assert sum(r["path"] == "/api/v1/nodes" for r in fake.requests) == 1


def test_unreachable_server_and_bad_kubeconfigs(tmp_path, fake):
    kc = write_kubeconfig(str(tmp_path / "kc"), fake.url)
    err = one_error(run_cli(["common", "--context", "x"], env=base_env(KUBECONFIG=kc)))
    assert "cannot connect to http://127.0.0.1:1" in err
    err = one_error(run_cli(["common", "--context", "nope"], env=base_env(KUBECONFIG=kc)))
    assert 'context "nope" not found' in err
    err = one_error(run_cli(["common", "--kubeconfig", str(tmp_path / "missing")], env=base_env()))
    assert "missing: no such file" in err
    garbage = tmp_path / "garbage"
    garbage.write_text("clusters: [\n")
    err = one_error(run_cli(["common", "--kubeconfig", str(garbage)], env=base_env()))
    assert "garbage" in err
    err = one_error(run_cli(["common"], env=base_env(HOME=str(tmp_path))))
    assert "no kubeconfig found" in err
    dns = write_kubeconfig(str(tmp_path / "dns"), "https://no-such-host.invalid:6443")
    assert "cannot resolve" in one_error(run_cli(["common"], env=base_env(KUBECONFIG=dns)))


def test_kubeconfig_merge_first_current_context_wins(tmp_path, fake):
    """kubectl: the first file that sets current-context wins (the Python client takes the last)."""
    import yaml

    first = write_kubeconfig(str(tmp_path / "a"), fake.url, namespace="prod")
    second = tmp_path / "b"
    second.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "x",
                                      "contexts": [{"name": "fake", "context": {"cluster": "elsewhere"}}]}))
    env = base_env(KUBECONFIG=os.pathsep.join([str(tmp_path / "missing"), first, str(second)]))
    doc = run_json(["why-not", "vm/app-1"], env=env)  # app-1 lives in prod: the context's namespace
    assert doc["namespace"] == "prod" and doc["sourceNode"] == "hv-04"
    doc = run_json(["why-not", "vm/web-1", "-n", "default"], env=env)
    assert doc["namespace"] == "default"


def test_in_cluster_config_is_used_without_kubeconfig(tmp_path):
    env = base_env(HOME=str(tmp_path), KUBERNETES_SERVICE_HOST="127.0.0.1", KUBERNETES_SERVICE_PORT="1")
    err = one_error(run_cli(["common"], env=env))
    # No service-account token on this machine: the in-cluster loader's complaint, in one line.
    assert "in-cluster service account is not usable" in err


def test_constant_requests_per_command(live_env, fake):
    from testkit.kubevirt import cpu_node

    def count(args):
        fake.requests.clear()
        assert run_cli(args, env=live_env).returncode == 0
        return len(fake.requests)

    before = {c: count(a) for c, a in {"common": ["common"], "whynot": ["why-not", "vm/db-1"],
                                        "set": ["set", "--cluster", "Skylake-Server-IBRS", "--dry-run=client"]}.items()}
    for i in range(40):
        fake.add(cpu_node("more-%02d" % i, "Cascadelake-Server", ["Cascadelake-Server"]))
    after = {c: count(a) for c, a in {"common": ["common"], "whynot": ["why-not", "vm/db-1"],
                                       "set": ["set", "--cluster", "Skylake-Server-IBRS", "--dry-run=client"]}.items()}
    assert before == after


def test_common_reads_readiness_from_the_node_table_and_without_it(live_env, fake):
    from testkit.kubevirt import cpu_node

    fake.add(cpu_node("hv-down", "Broadwell", ["Broadwell"], ready=False))
    fake.add(cpu_node("hv-off", "Broadwell", ["Broadwell"], unschedulable=True))
    for tables in (True, False):
        fake.tables = tables
        fake.requests.clear()
        doc = run_json(["common"], env=live_env)
        assert {e["name"]: e["reason"] for e in doc["excludedNodes"]}["hv-down"] == "node is not Ready"
        assert "hv-off" in doc["cordonedNodes"] and doc["recommended"] == "Broadwell"
        node_list = next(r for r in fake.requests if r["path"] == "/api/v1/nodes")
        assert "as=Table" in node_list["headers"]["accept"] and node_list["query"]["includeObject"] == "Metadata"


@pytest.fixture
def tls_fake(demo_objects, tmp_path):
    """The fake API server behind TLS with a self-signed certificate for 127.0.0.1."""
    import shutil
    import ssl
    import subprocess

    from testkit.fakekube import FakeKube, serve

    if not shutil.which("openssl"):
        pytest.skip("openssl not available")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "2", "-subj", "/CN=fake-apiserver", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    api = FakeKube(demo_objects)
    server, url = serve(api)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield url.replace("http://", "https://"), cert
    server.shutdown()
    server.server_close()


def test_tls_with_and_without_the_cluster_ca(tls_fake, tmp_path):
    import base64

    import yaml

    url, cert = tls_fake
    untrusted = write_kubeconfig(str(tmp_path / "untrusted"), url)
    err = one_error(run_cli(["common"], env=base_env(KUBECONFIG=untrusted)))
    assert "TLS error talking to %s" % url in err
    trusted = tmp_path / "trusted"
    config = yaml.safe_load(open(untrusted))
    config["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(cert.read_bytes()).decode()
    trusted.write_text(yaml.safe_dump(config))
    assert run_json(["common"], env=base_env(KUBECONFIG=str(trusted)))["recommended"] == "Skylake-Server-IBRS"


def test_a_keep_alive_connection_the_server_closed_is_not_reused_for_a_write():
    """API servers and load balancers drop idle keep-alive connections; a write must not be sent into one
    (it would fail, and a PATCH is not retried), so the transport checks before reuse, as urllib3 does."""
    import json
    import socket
    import threading

    from cpumodel.sources.kubeconfig import Access
    from cpumodel.sources.transport import Transport

    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    connections = []

    def serve():
        for _ in range(2):
            conn, _ = listener.accept()
            connections.append(conn)
            conn.recv(65536)
            body = json.dumps({"n": len(connections)}).encode()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (len(body), body))
            conn.close()  # without "Connection: close": the client believes it may reuse the connection

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    transport = Transport(Access("http://127.0.0.1:%d" % port, "default"), timeout=5)
    assert transport.exchange("GET", "/api", [], None)[1] == b'{"n": 1}'
    thread.join(0.2)  # the server has closed the first connection by now
    status, data, _ = transport.exchange("PATCH", "/api/v1/nodes/x", [("Content-Type", "application/json")], b"{}")
    assert (status, data) == (200, b'{"n": 2}') and len(connections) == 2
    listener.close()


# ---- leaks a hostile or unlucky environment could cause ------------------------------------------------------

def _kubeconfig_with_server(path, server, token=None):
    import yaml

    user = {"token": token} if token else {}
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "c",
              "clusters": [{"name": "c", "cluster": {"server": server}}],
              "users": [{"name": "u", "user": user}],
              "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}
    path.write_text(yaml.safe_dump(config))
    return str(path)


@pytest.mark.parametrize("token", [None, "s3cr3t-token"], ids=["basic-auth-in-url", "token"])
def test_a_password_in_the_server_url_is_never_printed(tmp_path, fake, token):
    server = fake.url.replace("http://", "http://admin:hunter2@")
    env = base_env(KUBECONFIG=_kubeconfig_with_server(tmp_path / "kc", server, token))
    proc = run_cli(["common", "-v", "6"], env=env)
    assert proc.returncode == 0, proc.stderr
    assert "hunter2" not in proc.stderr + proc.stdout and "admin:" not in proc.stderr
    assert "GET %s/api/v1/nodes" % fake.url in proc.stderr
    sent = {r["headers"].get("authorization") for r in fake.requests}
    # As Go's net/http: the URL's user-info is basic auth unless another credential set the header.
    import base64
    assert sent == {"Bearer " + token} if token else sent == {"Basic " + base64.b64encode(b"admin:hunter2").decode()}
    # Error messages show the URL without it too.
    down = base_env(KUBECONFIG=_kubeconfig_with_server(tmp_path / "down", "http://admin:hunter2@127.0.0.1:1", token))
    err = one_error(run_cli(["common"], env=down))
    assert "hunter2" not in err and "cannot connect to http://127.0.0.1:1" in err


def test_a_continue_token_seen_twice_ends_the_list(live_env, fake):
    page = b'{"kind":"NodeList","apiVersion":"v1","metadata":{"continue":"again"},"items":[]}'
    fake.fault("GET", "^/api/v1/nodes$", body=page, times=1000)
    err = one_error(run_cli(["common"], env=live_env))
    assert "listing nodes" in err and "same continue token twice" in err
    assert sum(r["path"] == "/api/v1/nodes" for r in fake.requests) <= 3


def test_a_list_that_outgrows_its_remaining_item_count_ends(live_env, fake):
    import json as _json

    for i in range(4):
        items = [{"metadata": {"name": "n-%d-%d" % (i, j)}} for j in range(500)]
        meta = {"continue": "token-%d" % i}
        if i == 0:
            meta["remainingItemCount"] = 10  # announces 510 items in all, then keeps sending pages
        fake.fault("GET", "^/api/v1/nodes$", body=_json.dumps({"kind": "NodeList", "apiVersion": "v1",
                                                                "metadata": meta, "items": items}).encode())
    err = one_error(run_cli(["common"], env=live_env))
    assert "announced 510 items" in err and "would never end" in err


def test_gzip_bodies_are_read_whole_whatever_their_trailer_says():
    """Bodies are inflated into a buffer sized from the gzip trailer: several members are all read (as Go's reader
    reads them), a wrong length is refused, and a hostile trailer cannot make the client reserve more than
    deflate's ratio allows."""
    import gzip
    import tracemalloc
    import zlib

    from cpumodel.sources.kubeclient import gunzip

    body = b'{"kind":"NodeList","items":[' + b",".join(b'{"n":%d}' % i for i in range(5000)) + b"]}"
    good = gzip.compress(body, compresslevel=1)
    assert gunzip(good) == body
    assert gunzip(gzip.compress(body[:100]) + gzip.compress(body[100:5000]) + gzip.compress(body[5000:])) == body
    for broken in (good[:-4] + (5).to_bytes(4, "little"), good[:len(good) // 2], good + b"garbage",
                   b"this is not a gzip stream, whatever its last bytes say"):
        with pytest.raises(zlib.error):
            gunzip(broken)
    hostile = good[:2000] + (2 ** 32 - 1).to_bytes(4, "little")
    tracemalloc.start()
    try:
        with pytest.raises(zlib.error):
            gunzip(hostile)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1100 * len(hostile)
