"""AuthService `proto: grpc`, `protocol_version: v3` (issue 12, points 2, 3, 6, 7):
envoy.service.auth.v3.Authorization/Check against a real gRPC server (policy_peer, python3-grpcio
from the repository's proto/): the CheckRequest's attributes, OkHttpResponse header mutations
(set, append, remove, response headers), DeniedHttpResponse relayed (403 by default), errors,
timeouts, failure_mode_allow, TLS to the auth service, several AuthServices merged, and calls
multiplexed on few HTTP/2 connections."""

import socket
import threading

import pytest
import requests

from conftest import RawConn, free_port, start_quote
from policy_peer import start_authz
from tlsenv import issue, make_ca, mapping_yaml, metric, secret_yaml, start_portico, tlscontext_yaml


def auth_yaml(port, name="authentication", extra="", service=None):
    return f"""\
---
apiVersion: getambassador.io/v3alpha1
kind: AuthService
metadata:
  name: {name}
spec:
  auth_service: "{service or f'127.0.0.1:{port}'}"
  proto: grpc
  protocol_version: v3
{extra}"""


@pytest.fixture
def echo(processes):
    return start_quote(processes, "--echo")


@pytest.fixture
def authz(processes):
    return start_authz(processes)


def start(processes, tmp_path, echo, *auth_docs, mapping_extra=""):
    return start_portico(processes, tmp_path, *auth_docs,
                         mapping_yaml("echo", f"127.0.0.1:{echo.port}", prefix="/backend/", extra=mapping_extra),
                         mapping_yaml("open", f"127.0.0.1:{echo.port}", prefix="/open/",
                                      extra="  bypass_auth: true\n"))


def up_headers(r):
    return [(k.lower(), v) for k, v in r.json()["headers"]]


def header(hs, name):
    return [v for k, v in hs if k == name]




def test_check_request_attributes(processes, tmp_path, echo, authz):
    edge = start(processes, tmp_path, echo, auth_yaml(authz.port),
                 mapping_extra="  auth_context_extensions:\n    team: blue\n    tier: gold\n")
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/x?y=1",
                     headers={"X-Custom": "v1", "Authorization": "Bearer a"}, timeout=5)
    assert r.status_code == 200, r.text
    (c,) = authz.wait_records(1)
    assert c["method"] == "GET"
    assert c["path"] == "/backend/x?y=1"
    assert c["host"] == f"127.0.0.1:{edge.http}"
    assert c["scheme"] == "http"
    assert c["protocol"] == "HTTP/1.1"
    assert c["source"]["address"] == "127.0.0.1"
    assert c["source"]["port"] > 0
    assert c["destination"]["address"] == "127.0.0.1"
    assert c["destination"]["port"] == edge.http
    h = c["headers"]
    assert h["x-custom"] == "v1"
    assert h["authorization"] == "Bearer a"
    assert h[":method"] == "GET" and h[":path"] == "/backend/x?y=1"
    assert h[":authority"] == f"127.0.0.1:{edge.http}"
    assert h["x-forwarded-proto"] == "http"
    assert len(h["x-request-id"]) == 36
    assert c["context_extensions"] == {"team": "blue", "tier": "gold"}
    assert c["body"] == ""


def test_ok_header_mutations(processes, tmp_path, echo, authz):
    edge = start(processes, tmp_path, echo, auth_yaml(authz.port))
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/",
                     headers={"x-user": "mallory", "x-multi": "a", "x-gone": "1",
                              "x-auth-header": "x-user=alice",
                              "x-auth-append-header": "x-multi=b",
                              "x-auth-remove-header": "x-gone",
                              "x-auth-response-header": "x-from-auth=yes"}, timeout=5)
    assert r.status_code == 200
    up = up_headers(r)
    assert header(up, "x-user") == ["alice"]
    assert header(up, "x-multi") == ["a", "b"]
    assert header(up, "x-gone") == []
    assert r.headers["x-from-auth"] == "yes"
    assert metric(edge, "envoy_cluster_ext_authz_ok") == 1


def test_denied_default_403_and_custom(processes, tmp_path, echo, authz):
    edge = start(processes, tmp_path, echo, auth_yaml(authz.port))
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-auth-decision": "deny-bare"}, timeout=5)
    assert r.status_code == 403
    assert r.text == ""
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/",
                     headers={"x-auth-decision": "deny", "x-auth-status": "418", "x-auth-body": "teapot",
                              "x-auth-header": "x-reason=brewing, content-type=application/x-tea"}, timeout=5)
    assert r.status_code == 418
    assert r.text == "teapot"
    assert r.headers["x-reason"] == "brewing"
    assert r.headers["content-type"] == "application/x-tea"
    assert metric(edge, "envoy_cluster_ext_authz_denied") == 2


def test_error_and_failure_mode_allow(processes, tmp_path, echo, authz):
    edge = start(processes, tmp_path, echo, auth_yaml(authz.port, extra="  timeout_ms: 300\n"))
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-auth-decision": "error"}, timeout=5)
    assert r.status_code == 403
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-auth-sleep-ms": "3000"}, timeout=5)
    assert r.status_code == 403
    assert metric(edge, "envoy_cluster_ext_authz_error") == 2
    edge2 = start(processes, tmp_path / "b", echo,
                  auth_yaml(authz.port, extra="  timeout_ms: 300\n  failure_mode_allow: true\n"))
    r = requests.get(f"http://127.0.0.1:{edge2.http}/backend/", headers={"x-auth-decision": "error"}, timeout=5)
    assert r.status_code == 200
    assert metric(edge2, "envoy_cluster_ext_authz_failure_mode_allowed") == 1


def test_include_body(processes, tmp_path, echo, authz):
    edge = start(processes, tmp_path, echo,
                 auth_yaml(authz.port, extra="  include_body:\n    max_bytes: 8\n    allow_partial: true\n"))
    r = requests.post(f"http://127.0.0.1:{edge.http}/backend/", data=b"hello world, all of it", timeout=5)
    assert r.status_code == 200
    (c,) = authz.wait_records(1)
    assert c["body"] == "hello wo"
    assert c["headers"]["x-envoy-auth-partial-body"] == "true"
    assert r.json()["body_length"] == 22


def test_grpc_v2_is_an_error(processes, tmp_path):
    (tmp_path / "a.yaml").write_text(auth_yaml(1).replace("  protocol_version: v3\n", ""))
    import subprocess
    from conftest import binary
    out = subprocess.run([binary("portico"), "check", str(tmp_path)], capture_output=True, text=True, timeout=10)
    assert out.returncode == 1
    assert "a.yaml:" in out.stdout + out.stderr
    assert 'protocol_version v2 is unsupported, protocol_version must be "v3"' in out.stdout + out.stderr


def test_tls_to_auth_service(processes, tmp_path, echo):
    ca = make_ca("auth-ca")
    leaf = issue(ca, "authz.test", dns=["authz.test"], ips=["127.0.0.1"])
    authz = start_authz(processes, tls=leaf)
    tls_docs = secret_yaml("auth-ca", ca=ca.cert_pem, type="Opaque") + tlscontext_yaml(
        "auth-upstream", ca_secret="auth-ca", sni="authz.test")
    edge = start(processes, tmp_path, echo, auth_yaml(authz.port, extra="  tls: auth-upstream\n"), tls_docs)
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-auth-decision": "deny"}, timeout=5)
    assert r.status_code == 403
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", timeout=5)
    assert r.status_code == 200
    assert len(authz.records()) == 2


def test_several_auth_services_merge(processes, tmp_path, echo, authz):
    a = auth_yaml(authz.port, name="one", extra="  timeout_ms: 1000\n")
    b = auth_yaml(authz.port, name="two", extra="  timeout_ms: 1000\n")
    c = auth_yaml(authz.port, name="three", extra="  timeout_ms: 2000\n")
    edge = start(processes, tmp_path, echo, a, b, c)
    diag = requests.get(f"http://127.0.0.1:{edge.admin}/ambassador/v0/diag/?json=true", timeout=5).json()
    msgs = [e["message"] for e in diag["errors"]]
    assert any("AuthService cannot support multiple timeout_ms values" in m for m in msgs), msgs
    assert requests.get(f"http://127.0.0.1:{edge.http}/backend/", timeout=5).status_code == 200
    assert requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-auth-decision": "deny"},
                        timeout=5).status_code == 403


def test_concurrent_checks_multiplexed_and_1000_judged(processes, tmp_path, echo, authz):
    edge = start(processes, tmp_path, echo, auth_yaml(authz.port))
    errors = []

    def worker(k):
        s = requests.Session()
        for i in range(250):
            deny = (i + k) % 4 == 0
            r = s.get(f"http://127.0.0.1:{edge.http}/backend/",
                      headers={"x-auth-decision": "deny" if deny else "allow", "x-auth-header": f"x-user=w{k}-{i}"},
                      timeout=10)
            if r.status_code != (403 if deny else 200):
                errors.append((k, i, r.status_code))
            elif not deny and header(up_headers(r), "x-user") != [f"w{k}-{i}"]:
                errors.append((k, i, "header"))

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    assert errors == []
    recs = authz.wait_records(1000)
    assert len({rec["peer"] for rec in recs}) <= 2  # one HTTP/2 connection carries the checks


def test_grpc_client_denied_gets_grpc_status(processes, tmp_path, authz):
    from grpc_peer import Client, start_server
    peer = start_server(processes)
    edge = start_portico(processes, tmp_path, auth_yaml(authz.port),
                         mapping_yaml("grpc", f"127.0.0.1:{peer.port}", prefix="/portico.peer.Peer/",
                                      extra="  rewrite: \"\"\n  grpc: true\n"))
    r = Client(edge.http).unary(metadata=(("x-auth-decision", "deny"),))
    assert r.code.name == "PERMISSION_DENIED"
    r = Client(edge.http).unary(tag="ok")
    assert r.ok


def test_auth_over_http2_client(processes, tmp_path, echo, authz):
    edge = start(processes, tmp_path, echo, auth_yaml(authz.port))
    import subprocess
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_code}",
                          "-H", "x-auth-decision: deny", f"http://127.0.0.1:{edge.http}/backend/"],
                         capture_output=True, text=True, timeout=10)
    assert out.stdout == "403"
    (c,) = authz.wait_records(1)
    assert c["protocol"] == "HTTP/2"


# ---- what a client (or the auth server) cannot do to the check (review findings) ----------------

def test_long_target_is_checked_whole(processes, tmp_path, echo, authz):
    edge = start(processes, tmp_path, echo, auth_yaml(authz.port, extra="  failure_mode_allow: true\n"))
    for total in (8192, 8193, 40000):
        path = "/backend/admin?" + "q" * (total - len("/backend/admin?"))
        n = len(authz.records())
        r = requests.get(f"http://127.0.0.1:{edge.http}{path}", headers={"x-auth-decision": "deny"}, timeout=5)
        assert r.status_code == 403, total
        (c,) = authz.wait_records(n + 1)[n:]
        assert c["path"] == path and c["headers"][":path"] == path


def test_repeated_headers_are_joined_once(processes, tmp_path, echo, authz):
    """Many copies of a header are joined into one map entry (Envoy's merge) without copying
    the growing value each time; the check is sent and its denial holds even with
    failure_mode_allow."""
    edge = start(processes, tmp_path, echo, auth_yaml(authz.port, extra="  failure_mode_allow: true\n"))
    head = "GET /backend/ HTTP/1.1\r\nHost: x\r\nx-auth-decision: deny\r\n" + "x-pad: " + "v" * 600 + "\r\n"
    head = head + "".join(f"x-pad: {i}\r\n" for i in range(80)) + "Connection: close\r\n\r\n"
    with socket.create_connection(("127.0.0.1", edge.http), timeout=5) as s:
        s.sendall(head.encode())
        assert s.recv(65536).startswith(b"HTTP/1.1 403 ")
    (c,) = authz.wait_records(1)
    assert c["headers"]["x-pad"] == "v" * 600 + "," + ",".join(str(i) for i in range(80))
    assert metric(edge, "envoy_cluster_ext_authz_failure_mode_allowed") == 0


def test_body_with_nul_is_sent_whole(processes, tmp_path, echo, authz):
    """A NUL is valid UTF-8: the body reaches the auth service whole, as Envoy sends it."""
    edge = start(processes, tmp_path, echo,
                 auth_yaml(authz.port, extra="  include_body:\n    max_bytes: 4096\n    allow_partial: true\n"))
    body = b'{"user":"alice"}\x00{"user":"root"}\xff'
    r = requests.post(f"http://127.0.0.1:{edge.http}/backend/", data=body, timeout=5)
    assert r.status_code == 200
    (c,) = authz.wait_records(1)
    assert c["body"] == '{"user":"alice"}\x00{"user":"root"}!'  # invalid UTF-8 as '!', as Envoy
    assert c["headers"]["x-envoy-auth-partial-body"] == "false"


def test_denied_204_carries_no_body(processes, tmp_path, echo, authz):
    """A denial with status 204 (or 304) ends at its head: the body the auth server gave it is
    not written, or a keep-alive client would read it as the next response."""
    edge = start(processes, tmp_path, echo, auth_yaml(authz.port))
    req = (b"GET /backend/ HTTP/1.1\r\nHost: x\r\nx-auth-decision: deny\r\nx-auth-status: 204\r\n"
           b"x-auth-body: HTTP/1.1 200 OK\r\n\r\n")
    with RawConn(edge.http) as c:
        c.send(req + req.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n"))
        data = c.recv_all()
    heads = data.split(b"\r\n\r\n")
    assert heads[-1] == b"" and len(heads) == 3, data  # two heads, nothing after either
    for h in heads[:2]:
        assert h.startswith(b"HTTP/1.1 204 No Content\r\n")
        assert b"content-length" not in h.lower()


def test_burst_of_checks_all_judged(processes, tmp_path, echo, authz):
    """160 checks at once (more than the calls a worker keeps for reuse: the rest are freed
    when they end), half denied: every one judged right, and the next ones too."""
    edge = start(processes, tmp_path, echo, auth_yaml(authz.port))
    results = {}

    def one(i):
        h = {"x-auth-sleep-ms": "300"}
        if i % 2:
            h["x-auth-decision"] = "deny"
        results[i] = requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers=h, timeout=10).status_code

    ts = [threading.Thread(target=one, args=(i,)) for i in range(160)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert [results[i] for i in range(160)] == [200, 403] * 80
    for i in range(4):
        one(i)
        assert results[i] == (403 if i % 2 else 200)
