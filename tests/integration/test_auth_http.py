"""AuthService `proto: http` (issue 12, points 1, 3, 6, 7): Envoy's ext_authz HTTP semantics as
Emissary configures them, against a real HTTP auth server (policy_peer) and the quote backend
in --echo mode (which shows what the upstream received). The check request keeps the method
and Host, its path is path_prefix + the request's path and query, it carries the allowed
headers and add_auth_headers, and the body when include_body asks; a 200 lets the request go on
with the allowed authorization headers set on it; another status goes to the client with the
allowed headers and the body; a 5xx, a timeout or a dead service is an error (status_on_error,
or failure_mode_allow)."""

import json
import socket
import time

import pytest
import requests

from conftest import start_quote
from policy_peer import start_http_auth
from tlsenv import mapping_yaml, metric, start_portico


def auth_yaml(port, extra=""):
    return f"""\
---
apiVersion: getambassador.io/v3alpha1
kind: AuthService
metadata:
  name: authentication
spec:
  auth_service: "127.0.0.1:{port}"
  path_prefix: "/extauth"
  allowed_request_headers:
  - x-auth-decision
  - x-auth-status
  - x-auth-body
  - x-auth-header
  - x-auth-remove-header
  - x-auth-sleep-ms
  allowed_authorization_headers:
  - x-user
{extra}"""


@pytest.fixture
def echo(processes):
    return start_quote(processes, "--echo")


@pytest.fixture
def authsrv(processes):
    return start_http_auth(processes)


def start(processes, tmp_path, echo, auth_doc, mapping_extra=""):
    return start_portico(processes, tmp_path, auth_doc,
                         mapping_yaml("echo", f"127.0.0.1:{echo.port}", prefix="/backend/", extra=mapping_extra),
                         mapping_yaml("open", f"127.0.0.1:{echo.port}", prefix="/open/",
                                      extra="  bypass_auth: true\n"))


def upstream_headers(r):
    """The headers the echo backend received, lowercased names."""
    return [(k.lower(), v) for k, v in r.json()["headers"]]


def header(hs, name):
    return [v for k, v in hs if k == name]




def test_allow_check_request_and_headers(processes, tmp_path, echo, authsrv):
    edge = start(processes, tmp_path, echo, auth_yaml(authsrv.port, "  add_auth_headers:\n    x-added: yes-it-is\n"))
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/some/path?q=1",
                     headers={"Authorization": "Bearer t0k", "X-Not-Allowed": "secret", "Cookie": "c=1",
                              "x-auth-header": "x-user=alice, x-not-allowed-back=zz", "User-Agent": "ua/1"},
                     timeout=5)
    assert r.status_code == 200, r.text
    (chk,) = authsrv.wait_records(1)
    assert chk["method"] == "GET"
    assert chk["path"] == "/extauth/backend/some/path?q=1"
    hs = [(k.lower(), v) for k, v in chk["headers"]]
    assert header(hs, "host") == [f"127.0.0.1:{edge.http}"]
    assert header(hs, "authorization") == ["Bearer t0k"]
    assert header(hs, "cookie") == ["c=1"]
    assert header(hs, "user-agent") == ["ua/1"]
    assert header(hs, "x-not-allowed") == []
    assert header(hs, "x-added") == ["yes-it-is"]
    assert header(hs, "content-length") == ["0"]
    assert header(hs, "x-forwarded-for") == ["127.0.0.1"]
    assert header(hs, "x-forwarded-proto") == ["http"]
    # the allowed authorization header of the answer is set on the request; others are not
    up = upstream_headers(r)
    assert header(up, "x-user") == ["alice"]
    assert header(up, "x-not-allowed-back") == []
    assert header(up, "x-not-allowed") == ["secret"]  # the client's own headers still pass
    assert r.json()["path"] == "/some/path?q=1"


def test_auth_header_overrides_client_header(processes, tmp_path, echo, authsrv):
    edge = start(processes, tmp_path, echo, auth_yaml(authsrv.port))
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/",
                     headers={"x-user": "mallory", "x-auth-header": "x-user=alice"}, timeout=5)
    assert r.status_code == 200
    assert header(upstream_headers(r), "x-user") == ["alice"]


def test_headers_to_remove(processes, tmp_path, echo, authsrv):
    edge = start(processes, tmp_path, echo, auth_yaml(authsrv.port))
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/",
                     headers={"x-drop-me": "1", "x-auth-remove-header": "x-drop-me"}, timeout=5)
    assert r.status_code == 200
    assert header(upstream_headers(r), "x-drop-me") == []


def test_deny_relays_status_allowed_headers_and_body(processes, tmp_path, echo, authsrv):
    edge = start(processes, tmp_path, echo, auth_yaml(authsrv.port))
    s = socket.create_connection(("127.0.0.1", edge.http), timeout=5)
    s.sendall(b"GET /backend/ HTTP/1.1\r\nHost: x\r\nx-auth-decision: deny\r\nx-auth-status: 401\r\n"
              b"x-auth-body: go away\r\n"
              b"x-auth-header: www-authenticate=Bearer realm=x, x-user=bob, x-secret=no\r\n\r\n")
    data = b""
    while b"go away" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    assert lines[0] == "HTTP/1.1 401 Unauthorized"
    names = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in lines[1:]}
    assert names["www-authenticate"] == "Bearer realm=x"
    assert names["x-user"] == "bob"
    assert "x-secret" not in names
    assert names["content-length"] == "7"
    assert names["content-type"] == "text/plain"  # the auth server's content-type is not passed
    assert body == b"go away"
    assert metric(edge, "envoy_cluster_ext_authz_denied", 'envoy_cluster_name="127_0_0_1_') == 1
    assert metric(edge, "envoy_http_ext_authz_denied") == 1


def test_only_200_allows(processes, tmp_path, echo, authsrv):
    """Envoy's rule: a 2xx other than 200 is a denial, relayed to the client."""
    edge = start(processes, tmp_path, echo, auth_yaml(authsrv.port))
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-auth-status": "204"}, timeout=5)
    assert r.status_code == 204


def test_5xx_is_an_error_status_on_error(processes, tmp_path, echo, authsrv):
    edge = start(processes, tmp_path, echo, auth_yaml(authsrv.port, "  status_on_error:\n    code: 503\n"))
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/",
                     headers={"x-auth-decision": "deny", "x-auth-status": "500", "x-auth-body": "boom"}, timeout=5)
    assert r.status_code == 503
    assert r.text == ""
    assert metric(edge, "envoy_cluster_ext_authz_error") == 1


def test_timeout_default_403_and_failure_mode_allow(processes, tmp_path, echo, authsrv):
    edge = start(processes, tmp_path, echo, auth_yaml(authsrv.port, "  timeout_ms: 200\n"))
    t0 = time.monotonic()
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", headers={"x-auth-sleep-ms": "2000"}, timeout=5)
    assert r.status_code == 403
    assert time.monotonic() - t0 < 1.5
    edge2 = start(processes, tmp_path / "b", echo,
                  auth_yaml(authsrv.port, "  timeout_ms: 200\n  failure_mode_allow: true\n"))
    r = requests.get(f"http://127.0.0.1:{edge2.http}/backend/", headers={"x-auth-sleep-ms": "2000"}, timeout=5)
    assert r.status_code == 200
    assert metric(edge2, "envoy_cluster_ext_authz_failure_mode_allowed") == 1


def test_dead_auth_service(processes, tmp_path, echo):
    from conftest import free_port
    edge = start(processes, tmp_path, echo, auth_yaml(free_port()))
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", timeout=5)
    assert r.status_code == 403
    assert r.text == ""


def test_bypass_auth(processes, tmp_path, echo, authsrv):
    edge = start(processes, tmp_path, echo, auth_yaml(authsrv.port))
    r = requests.get(f"http://127.0.0.1:{edge.http}/open/", headers={"x-auth-decision": "deny"}, timeout=5)
    assert r.status_code == 200
    assert authsrv.records() == []


def test_include_body(processes, tmp_path, echo, authsrv):
    edge = start(processes, tmp_path, echo,
                 auth_yaml(authsrv.port, "  include_body:\n    max_bytes: 100\n    allow_partial: true\n"))
    body = b"0123456789" * 30
    r = requests.post(f"http://127.0.0.1:{edge.http}/backend/", data=body, timeout=5)
    assert r.status_code == 200
    (chk,) = authsrv.wait_records(1)
    assert chk["body"] == body[:100]
    assert header([(k.lower(), v) for k, v in chk["headers"]], "content-length") == ["100"]
    # the upstream still gets the whole body
    assert r.json()["body_length"] == 300
    # chunked, whole body under the limit
    r = requests.post(f"http://127.0.0.1:{edge.http}/backend/", data=iter([b"abc", b"def"]), timeout=5)
    assert r.status_code == 200
    assert authsrv.records()[1]["body"] == b"abcdef"
    assert r.json()["body_length"] == 6


def test_include_body_too_large_413(processes, tmp_path, echo, authsrv):
    edge = start(processes, tmp_path, echo,
                 auth_yaml(authsrv.port, "  include_body:\n    max_bytes: 10\n    allow_partial: false\n"))
    r = requests.post(f"http://127.0.0.1:{edge.http}/backend/", data=b"x" * 50, timeout=5)
    assert r.status_code == 413
    assert authsrv.records() == []
    r = requests.post(f"http://127.0.0.1:{edge.http}/backend/", data=b"x" * 10, timeout=5)
    assert r.status_code == 200


def test_keepalive_reuse_and_1000_requests(processes, tmp_path, echo, authsrv):
    """The auth calls reuse pooled connections, and none of 1,000 alternating allow/deny
    requests is misjudged."""
    edge = start(processes, tmp_path, echo, auth_yaml(authsrv.port))
    s = requests.Session()
    for i in range(1000):
        deny = i % 3 == 0
        r = s.get(f"http://127.0.0.1:{edge.http}/backend/{i}",
                  headers={"x-auth-decision": "deny" if deny else "allow", "x-auth-header": f"x-user=u{i}"},
                  timeout=5)
        if deny:
            assert r.status_code == 403, i
        else:
            assert r.status_code == 200, i
            assert header(upstream_headers(r), "x-user") == [f"u{i}"]
    recs = authsrv.wait_records(1000)
    assert len({rec["peer"] for rec in recs}) <= 2  # reused, not one connection per check


def test_misconfigured_auth_service_fails_closed(processes, tmp_path, echo):
    bad = """\
---
apiVersion: getambassador.io/v3alpha1
kind: AuthService
metadata:
  name: broken
spec:
  auth_service: "127.0.0.1:1"
  proto: grpc
"""
    edge = start(processes, tmp_path, echo, bad)
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", timeout=5)
    assert r.status_code == 500
    doc = json.loads(r.text)
    assert doc["status_code"] == 500
    assert "AuthService is misconfigured" in doc["message"]
    assert r.headers["content-type"] == "application/json"
    # bypass_auth does not help while the AuthService cannot be read (Emissary's Lua filter)
    assert requests.get(f"http://127.0.0.1:{edge.http}/open/", timeout=5).status_code == 500


def test_waiting_requests_keep_their_own_normalized_paths(processes, tmp_path, echo, authsrv):
    """A path that normalization made longer ('|' -> '%7C') lives in a buffer every request of
    the worker uses: a request waiting for its check must not see another request's path."""
    import threading
    edge = start(processes, tmp_path, echo, auth_yaml(authsrv.port))
    got = {}

    def one(i):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", edge.http, timeout=10)
        c.request("GET", f"/backend/x|{i}|" + "y" * i, headers={"x-auth-sleep-ms": "150"})  # '|' as is
        r = c.getresponse()
        body = r.read()
        got[i] = (r.status, json.loads(body)["path"] if r.status == 200 else body)
        c.close()

    ts = [threading.Thread(target=one, args=(i,)) for i in range(6)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    assert got == {i: (200, f"/x%7C{i}%7C" + "y" * i) for i in range(6)}


def test_include_body_over_http2(processes, tmp_path, echo, authsrv):
    """An HTTP/2 client's body is gathered for the check from its stream, and still reaches the
    upstream whole."""
    import subprocess
    edge = start(processes, tmp_path, echo,
                 auth_yaml(authsrv.port, "  include_body:\n    max_bytes: 1000\n    allow_partial: true\n"))
    body = tmp_path / "body"
    body.write_bytes(b"h2-body-" * 500)  # 4,000 bytes: cut to 1,000 for the check
    out = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "--data-binary", f"@{body}",
                          f"http://127.0.0.1:{edge.http}/backend/"], capture_output=True, timeout=10)
    assert json.loads(out.stdout)["body_length"] == 4000
    (chk,) = authsrv.wait_records(1)
    assert chk["body"] == (b"h2-body-" * 500)[:1000]


# ---- what a client cannot do to the check (review findings) ------------------------------------

def test_long_target_is_checked_not_skipped(processes, tmp_path, echo, authsrv):
    """path_prefix + a path and query longer than any fixed buffer: the check is made with the
    whole target; a request is never let through unchecked for being large, even with
    failure_mode_allow."""
    edge = start(processes, tmp_path, echo, auth_yaml(authsrv.port, "  failure_mode_allow: true\n"))
    for total in (8184, 8199, 30000):
        path = "/backend/admin?" + "q" * (total - len("/backend/admin?"))
        n = len(authsrv.records())
        r = requests.get(f"http://127.0.0.1:{edge.http}{path}", headers={"x-auth-decision": "deny"}, timeout=5)
        assert r.status_code == 403, total
        (c,) = authsrv.wait_records(n + 1)[n:]
        assert c["path"] == "/extauth" + path
    assert metric(edge, "envoy_cluster_ext_authz_failure_mode_allowed") == 0


def test_head_check_is_answered_at_once(processes, tmp_path, echo, authsrv):
    """The check of a HEAD request is a HEAD: its answer has a length and no body, and is read
    as such (not waited for until timeout_ms, which failure_mode_allow would have let through)."""
    edge = start(processes, tmp_path, echo, auth_yaml(authsrv.port, "  timeout_ms: 2000\n  failure_mode_allow: true\n"))
    t0 = time.monotonic()
    r = requests.head(f"http://127.0.0.1:{edge.http}/backend/",
                      headers={"x-auth-decision": "deny", "x-auth-status": "401", "x-auth-body": "go away"}, timeout=5)
    assert r.status_code == 401
    assert time.monotonic() - t0 < 1.0
    r = requests.head(f"http://127.0.0.1:{edge.http}/backend/", timeout=5)
    assert r.status_code == 200
    assert metric(edge, "envoy_cluster_ext_authz_error") == 0


def test_answer_with_too_many_fields_is_an_error(processes, tmp_path, echo, authsrv):
    """An answer with more header fields than a call keeps is refused as a whole (the error
    path), never read in part: a removal after the first 64 fields would be lost."""
    edge = start(processes, tmp_path, echo, auth_yaml(authsrv.port))
    fill = ", ".join(f"x-f{i}=v" for i in range(70))
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/",
                     headers={"x-user": "admin-spoofed", "x-auth-header": fill, "x-auth-remove-header": "x-user"},
                     timeout=5)
    assert r.status_code == 403
    assert metric(edge, "envoy_cluster_ext_authz_error") == 1
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/",
                     headers={"x-user": "admin-spoofed", "x-auth-header": "x-f1=v", "x-auth-remove-header": "x-user"},
                     timeout=5)
    assert r.status_code == 200 and header(upstream_headers(r), "x-user") == []
