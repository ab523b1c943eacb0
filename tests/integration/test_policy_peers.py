"""Self-tests of the policy peers (policy_peer/), WITHOUT Portico: a gRPC client calls the ext_authz
and rate limit servers, `requests` calls the HTTP auth server, and each answer and record is
checked against the controls documented in policy_peer/__init__.py. If one of these fails, the
peer is wrong, not Portico. Also: the Python messages of proto/ give the bytes the C unit test
(tests/unit/test_pb.c) expects, so both sides agree on the field numbers.
"""

import concurrent.futures
import socket

import grpc
import pytest
import requests

import policy_peer
from conftest import Processes
from policy_peer import pb
from tlsenv import issue, make_ca


@pytest.fixture(scope="module")
def procs(tmp_path_factory):
    p = Processes(tmp_path_factory.mktemp("policypeers"))
    yield p
    p.stop_all()


@pytest.fixture(scope="module")
def pki():
    ca = make_ca("policy-peers CA")
    return (ca, issue(ca, "auth.test", dns=["auth.test"], ips=["127.0.0.1"]),
            issue(ca, "portico.test", client=True))


@pytest.fixture(scope="module")
def authz(procs):
    return policy_peer.start_authz(procs, ratelimit=True)


@pytest.fixture(scope="module")
def http_auth(procs):
    return policy_peer.start_http_auth(procs)


def check_request(headers, path="/backend/x", method="GET", raw_body=b"", ext=None):
    req = pb.auth.CheckRequest()
    a = req.attributes
    a.source.address.socket_address.address = "192.0.2.7"
    a.source.address.socket_address.port_value = 40123
    a.source.principal = "spiffe://test/client"
    a.destination.address.socket_address.address = "127.0.0.1"
    a.destination.address.socket_address.port_value = 8080
    h = a.request.http
    h.method, h.path, h.host = method, path, "example.test"
    h.scheme, h.protocol = "http", "HTTP/1.1"
    h.headers.update(headers)
    h.raw_body = raw_body
    h.size = len(raw_body)
    a.context_extensions.update(ext or {})
    return req


def check(srv, req, timeout=5.0, **kw):
    with policy_peer.channel(srv.port, **kw) as ch:
        return pb.auth_grpc.AuthorizationStub(ch).Check(req, timeout=timeout)


def should(srv, *descriptors, domain="ambassador", timeout=5.0):
    req = pb.rls.RateLimitRequest(domain=domain, hits_addend=1)
    for d in descriptors:
        req.descriptors.add(entries=[{"key": k, "value": v} for k, v in d])
    with policy_peer.channel(srv.port) as ch:
        return pb.rls_grpc.RateLimitServiceStub(ch).ShouldRateLimit(req, timeout=timeout)


def opts(options):
    """HeaderValueOptions as (key, value, append set?, append value)."""
    return [(o.header.key, o.header.value, o.HasField("append"), o.append.value) for o in options]


def test_wire_bytes_match_the_c_unit_test():
    req = pb.rls.RateLimitRequest(domain="d", hits_addend=2,
                                  descriptors=[{"entries": [{"key": "k", "value": "v"}]}])
    assert req.SerializeToString() == bytes.fromhex("0a016412080a060a016b1201761802")
    c = pb.auth.CheckRequest()
    c.attributes.source.address.socket_address.address = "a"
    c.attributes.source.address.socket_address.port_value = 80
    c.attributes.request.http.method = "GET"
    c.attributes.request.http.headers["x"] = "y"
    assert c.SerializeToString() == bytes.fromhex(
        "0a1c0a090a070a051201611850220f120d1203474554" "1a060a0178120179")


def test_authz_allow_records_and_mutates(authz):
    n = len(authz.checks())
    r = check(authz, check_request({"x-auth-header": "x-user=alice, x-team=blue",
                                    "x-auth-append-header": "x-trace=1",
                                    "x-auth-remove-header": "authorization, cookie",
                                    "x-auth-response-header": "x-seen=yes",
                                    "authorization": "Bearer t"},
                                   method="POST", raw_body=b"a\0b", ext={"tenant": "t1"}))
    assert r.status.code == 0
    assert r.WhichOneof("http_response") == "ok_response"
    ok = r.ok_response
    assert opts(ok.headers) == [("x-user", "alice", False, False), ("x-team", "blue", False, False),
                                ("x-trace", "1", True, True)]
    assert list(ok.headers_to_remove) == ["authorization", "cookie"]
    assert opts(ok.response_headers_to_add) == [("x-seen", "yes", False, False)]
    rec = authz.checks(since=n)
    assert len(rec) == 1
    rec = rec[0]
    assert rec["service"] == "authz" and rec["decision"] == "allow"
    assert rec["source"]["address"] == "192.0.2.7" and rec["source"]["port"] == 40123
    assert rec["source"]["principal"] == "spiffe://test/client"
    assert rec["destination"]["port"] == 8080
    assert (rec["method"], rec["path"], rec["host"], rec["scheme"], rec["protocol"]) == \
        ("POST", "/backend/x", "example.test", "http", "HTTP/1.1")
    assert rec["headers"]["authorization"] == "Bearer t"
    assert rec["raw_body"] == b"a\0b" and rec["size"] == 3
    assert rec["context_extensions"] == {"tenant": "t1"}
    assert 0 < rec["deadline_ms"] <= 5100  # 5 s, measured by the server: a little slack


def test_authz_deny(authz):
    r = check(authz, check_request({"x-auth-decision": "deny", "x-auth-status": "401",
                                    "x-auth-body": "go away",
                                    "x-auth-header": "www-authenticate=Basic"}))
    assert r.status.code == 7
    assert r.WhichOneof("http_response") == "denied_response"
    d = r.denied_response
    assert d.status.code == 401 and d.body == "go away"
    assert opts(d.headers) == [("www-authenticate", "Basic", False, False)]
    r = check(authz, check_request({"x-auth-decision": "deny"}))
    assert r.status.code == 7 and not r.denied_response.HasField("status")
    r = check(authz, check_request({"x-auth-decision": "deny-bare"}))
    assert r.status.code == 7 and r.WhichOneof("http_response") is None
    r = check(authz, check_request({"x-auth-decision": "allow-bare"}))
    assert r.status.code == 0 and r.WhichOneof("http_response") is None


def test_authz_error_and_sleep(authz):
    with pytest.raises(grpc.RpcError) as e:
        check(authz, check_request({"x-auth-decision": "error"}))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    n = len(authz.checks())
    with pytest.raises(grpc.RpcError) as e:
        check(authz, check_request({"x-auth-sleep-ms": "2000"}, path="/slow"), timeout=0.3)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert [c["path"] for c in authz.checks(since=n)] == ["/slow"]
    r = check(authz, check_request({"x-auth-sleep-ms": "100"}), timeout=2)
    assert r.status.code == 0


def test_authz_tls_with_client_certificate(procs, pki):
    ca, leaf, client = pki
    srv = policy_peer.start_authz(procs, tls=leaf, client_ca=ca)
    r = check(srv, check_request({}), ca=ca, server_name="auth.test", cert=client)
    assert r.status.code == 0
    with pytest.raises(grpc.RpcError):
        check(srv, check_request({}), timeout=2, ca=ca, server_name="auth.test")
    assert len(srv.checks()) == 1


def test_ratelimit(authz):
    srv = authz  # the same process serves ShouldRateLimit
    n = len(srv.requests())
    Code = pb.rls.RateLimitResponse
    r = should(srv, [("generic_key", "a")], [("remote_address", "192.0.2.7")])
    assert r.overall_code == Code.OK and [s.code for s in r.statuses] == [Code.OK, Code.OK]
    assert not r.request_headers_to_add and not r.response_headers_to_add
    r = should(srv, [("generic_key", "a")], [("generic_key", "over-x")])
    assert r.overall_code == Code.OVER_LIMIT
    assert [s.code for s in r.statuses] == [Code.OK, Code.OVER_LIMIT]
    assert [(h.key, h.value) for h in r.response_headers_to_add] == [("x-ratelimit-test", "over")]
    assert r.raw_body == b""
    r = should(srv, [("generic_key", "over-body")])
    assert r.raw_body == b"rate limited by policy-peer\n"
    r = should(srv, [("generic_key", "addhdr")])
    assert r.overall_code == Code.OK
    assert [(h.key, h.value) for h in r.request_headers_to_add] == [("x-ratelimit-ok", "yes")]
    with pytest.raises(grpc.RpcError) as e:
        should(srv, [("generic_key", "fail")])
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE
    with pytest.raises(grpc.RpcError) as e:
        should(srv, [("generic_key", "sleep-2000")], timeout=0.3)
    assert e.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    recs = [r for r in srv.requests(since=n) if r["service"] == "ratelimit"]
    assert len(recs) == 6
    assert recs[0]["domain"] == "ambassador" and recs[0]["hits_addend"] == 1
    assert recs[0]["descriptors"] == [[["generic_key", "a"]], [["remote_address", "192.0.2.7"]]]


def test_ratelimit_alone(procs):
    srv = policy_peer.start_ratelimit(procs)
    assert should(srv, [("k", "over")], domain="d1").overall_code == \
        pb.rls.RateLimitResponse.OVER_LIMIT
    with pytest.raises(grpc.RpcError) as e:  # no Authorization service in this process
        check(srv, check_request({}))
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert [r["domain"] for r in srv.requests()] == ["d1"]
    assert srv.ends() == [("ShouldRateLimit", "over_limit")]


def test_authz_concurrent_calls(authz):
    n = len(authz.checks())
    with policy_peer.channel(authz.port) as ch:
        stub = pb.auth_grpc.AuthorizationStub(ch)

        def one(i):
            d = "deny" if i % 3 == 0 else "allow"
            r = stub.Check(check_request({"x-auth-decision": d}, path=f"/p{i}"), timeout=5)
            return i, r.status.code

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            got = dict(ex.map(one, range(60)))
    assert got == {i: (7 if i % 3 == 0 else 0) for i in range(60)}
    assert sorted(c["path"] for c in authz.checks(since=n)) == sorted(f"/p{i}" for i in range(60))


def test_http_auth_allow_deny_keepalive(http_auth):
    url = f"http://127.0.0.1:{http_auth.port}"
    with requests.Session() as s:
        r = s.post(url + "/auth/backend/x?q=1", data=b"hello",
                   headers={"x-auth-header": "x-user=alice", "Authorization": "Bearer t"},
                   timeout=5)
        assert r.status_code == 200 and r.headers["x-user"] == "alice" and r.content == b""
        r = s.get(url + "/auth/deny", timeout=5,
                  headers={"x-auth-decision": "deny", "x-auth-status": "401",
                           "x-auth-body": "nope", "x-auth-header": "www-authenticate=Basic, x-a=1"})
        assert (r.status_code, r.content) == (401, b"nope")
        assert r.headers["www-authenticate"] == "Basic" and r.headers["x-a"] == "1"
        r = s.get(url + "/auth/d2", headers={"x-auth-decision": "deny"}, timeout=5)
        assert (r.status_code, r.content) == (403, b"")
        r = s.get(url + "/auth/rm", headers={"x-auth-remove-header": "authorization"}, timeout=5)
        assert r.headers["x-envoy-auth-headers-to-remove"] == "authorization"
    recs = http_auth.requests()[-4:]
    assert [(r["method"], r["path"]) for r in recs] == [
        ("POST", "/auth/backend/x?q=1"), ("GET", "/auth/deny"), ("GET", "/auth/d2"),
        ("GET", "/auth/rm")]
    assert recs[0]["body"] == b"hello"
    assert ["Authorization", "Bearer t"] in recs[0]["headers"]
    assert len({r["peer"] for r in recs}) == 1  # one keep-alive connection


def test_http_auth_error_and_sleep(http_auth):
    url = f"http://127.0.0.1:{http_auth.port}"
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url + "/err", headers={"x-auth-decision": "error"}, timeout=5)
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.get(url + "/slow", headers={"x-auth-sleep-ms": "1500"}, timeout=0.3)
    paths = [r["path"] for r in http_auth.requests()]
    assert "/err" in paths and "/slow" in paths
    # Raw: exact status line, Content-Length framing, keep-alive.
    with socket.create_connection(("127.0.0.1", http_auth.port), timeout=5) as c:
        c.sendall(b"GET /a HTTP/1.1\r\nHost: x\r\nx-auth-decision: deny\r\nx-auth-status: 418\r\n"
                  b"x-auth-body: tea\r\n\r\n")
        data = b""
        while not data.endswith(b"tea"):
            data += c.recv(4096)
        assert data.startswith(b"HTTP/1.1 418 ")
        assert b"\r\nContent-Length: 3\r\n" in data


def test_http_auth_tls(procs, pki, tmp_path):
    ca, leaf, _ = pki
    srv = policy_peer.start_http_auth(procs, tls=leaf)
    ca_file = tmp_path / "ca.crt"
    ca_file.write_bytes(ca.cert_pem)
    r = requests.get(f"https://127.0.0.1:{srv.port}/t", verify=str(ca_file), timeout=5)
    assert r.status_code == 200
    assert [r["path"] for r in srv.requests()] == ["/t"]
