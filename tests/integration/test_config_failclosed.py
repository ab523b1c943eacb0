"""Fail closed, never open, on what Portico cannot enforce yet (issue 9, point 11).

AuthService, RateLimitService, Module ip_allow/ip_deny, and Mappings with shadow are errors
(FILE:LINE: Kind/ns/name: message, in the log at error level, in diag, `portico check` exits 1). Ignoring an AuthService or an IP policy would let traffic through
unchecked, so while one exists the data plane denies: 403 with an empty body and response flag
UAEX (Envoy's ext_authz when its service fails) unless the Mapping sets bypass_auth: true, and
403 "RBAC: access denied" for every request while the Module has ip_allow/ip_deny. Kinds that
weaken nothing (LogService, TCPMapping, resolvers, DevPortal) are notices naming the kind."""

import re
import socket

import pytest

from portico import wait_access_lines
from portico_cfg import Portico, check, doc, dump, line_of, mapping, poll_until

DATE_RX = re.compile(rb"\r\ndate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n")
DENIED_AUTH = (b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\ndate: DATE\r\n"
               b"server: envoy\r\n\r\n")
DENIED_RBAC = (b"HTTP/1.1 403 Forbidden\r\ncontent-length: 19\r\ncontent-type: text/plain\r\n"
               b"date: DATE\r\nserver: envoy\r\n\r\nRBAC: access denied")

AUTH_MSG = ("AuthService is not supported by this build: requests are denied with 403 unless "
            "their Mapping sets bypass_auth: true, until the AuthService is removed")


def auth_service(name="auth", **spec):
    return doc("AuthService", name, {"auth_service": "extauth:3000", "proto": "http", **spec})


def module(**config):
    return doc("Module", "ambassador", {"config": config})


def exchange(port, request, host="127.0.0.1"):
    """Sends <request> (bytes) on a new connection, reads one response framed by its
    content-length, and returns it with the date header's value replaced by DATE."""
    with socket.create_connection((host, port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        m = re.search(rb"\r\ncontent-length: (\d+)", head, re.I)
        want = int(m.group(1)) if m else 0
        while len(body) < want:
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    return DATE_RX.sub(b"\r\ndate: DATE\r\n", head + b"\r\n\r\n" + body)


def get(path, host="a.example"):
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


# ---- portico check -------------------------------------------------------------------------

@pytest.mark.parametrize("bad,needle,message", [
    (auth_service(), "apiVersion", f"AuthService/default/auth: {AUTH_MSG}"),
    (doc("RateLimitService", "rl", {"service": "rl:8081"}), "apiVersion",
     "RateLimitService/default/rl: RateLimitService is not supported by this build: requests "
     "are not rate limited"),
    (module(ip_allow=[{"peer": "127.0.0.1"}]), "ip_allow",
     "Module/default/ambassador: config.ip_allow: not supported by this build: every request is "
     "denied with 403 until ip_allow and ip_deny are removed"),
    (module(ip_deny=[{"remote": "10.0.0.0/8"}]), "ip_deny",
     "Module/default/ambassador: config.ip_deny: not supported by this build: every request is "
     "denied with 403 until ip_allow and ip_deny are removed"),
    (mapping("sh", "/sh/", "127.0.0.1:9", shadow=True), "shadow",
     "Mapping/default/sh: shadow: not supported by this build; the Mapping is not served "
     "(Emissary would copy its requests to the service)"),
], ids=["AuthService", "RateLimitService", "ip_allow", "ip_deny", "shadow"])
def test_check_unenforceable_is_an_error(tmp_path, bad, needle, message):
    f = tmp_path / "c.yaml"
    f.write_text(dump(bad, mapping("good", "/good/", "127.0.0.1:9")))
    r = check(tmp_path)
    assert r.returncode == 1, r.stdout
    assert r.stdout.splitlines() == [f"{f}:{line_of(f, needle)}: {message}"]


@pytest.mark.parametrize("kind", ["LogService", "TCPMapping", "KubernetesEndpointResolver",
                                  "KubernetesServiceResolver", "ConsulResolver", "DevPortal"])
def test_check_unimplemented_harmless_kinds_are_notices(tmp_path, kind):
    f = tmp_path / "c.yaml"
    f.write_text(dump(doc(kind, "x", {"service": "svc:80"}, namespace="team")))
    r = check(tmp_path)
    assert r.returncode == 0, r.stdout
    assert r.stdout.splitlines() == [
        f"{f}:2: {kind}/team/x: notice: {kind} is not supported by this build; ignored"]


def test_check_shadow_false_and_other_ambassador_ids_are_fine(tmp_path):
    """`shadow: false` asks for nothing; an AuthService for another Portico is not ours."""
    f = tmp_path / "c.yaml"
    f.write_text(dump(mapping("m", "/m/", "127.0.0.1:9", shadow=False, host_redirect=False,
                              bypass_auth=True),
                      auth_service(ambassador_id=["other"])))
    r = check(tmp_path)
    assert (r.returncode, r.stdout) == (0, "")


# ---- portico run: the data plane fails closed ---------------------------------------------

def test_authservice_denies_unless_bypass_auth(processes, tmp_path, quote_backend):
    svc = f"127.0.0.1:{quote_backend.port}"
    px = Portico(processes, tmp_path)
    px.write("routes.yaml", dump(mapping("closed", "/backend/", svc),
                                 mapping("open", "/open/", svc, bypass_auth=True)))
    f = px.write("auth.yaml", dump(auth_service()))
    px.start()
    assert exchange(px.port, get("/backend/")) == DENIED_AUTH
    r = px.get("/open/")
    assert r.status == 200 and r.json()["server"] == quote_backend.name
    # a request that matches no Mapping is still 404
    assert exchange(px.port, get("/nowhere/")).startswith(b"HTTP/1.1 404 Not Found\r\n")
    lines = wait_access_lines(px, 3)
    denied = [m for _, m in lines if m and m["path"] == "/backend/"]
    assert [(m["code"], m["flags"], m["upstream"]) for m in denied] == [("403", "UAEX", "-")]
    want = f"{f}:{line_of(f, 'apiVersion')}: AuthService/default/auth: {AUTH_MSG}"
    assert re.search(r"portico error: " + re.escape(want), px.log()), px.log()
    errs = px.diag()["errors"]
    assert [(e["object"], e["message"]) for e in errs] == [("AuthService/default/auth", AUTH_MSG)]
    # the way out: remove the AuthService (or set bypass_auth on the Mappings that may pass)
    px.remove("auth.yaml")
    px.wait_status("/backend/", 200)
    assert px.diag()["errors"] == []


def test_invalid_authservice_still_fails_closed(processes, tmp_path, quote_backend):
    """An AuthService that is broken (no name here) is still an AuthService someone wanted."""
    px = Portico(processes, tmp_path)
    px.write("routes.yaml", dump(mapping("closed", "/backend/", f"127.0.0.1:{quote_backend.port}")))
    px.write("auth.yaml", "apiVersion: getambassador.io/v3alpha1\nkind: AuthService\n"
                          "metadata: {namespace: team}\nspec: {auth_service: extauth}\n")
    px.start()
    assert exchange(px.port, get("/backend/")) == DENIED_AUTH
    msgs = [e["message"] for e in px.diag()["errors"]]
    assert msgs == ["metadata.name: required", AUTH_MSG], msgs


def test_keepalive_connection_is_denied_request_by_request(processes, tmp_path, quote_backend):
    """The 403 is a normal reply: the connection stays usable, and a bypass_auth route on it
    still passes."""
    svc = f"127.0.0.1:{quote_backend.port}"
    px = Portico(processes, tmp_path)
    px.write("routes.yaml", dump(mapping("closed", "/backend/", svc),
                                 mapping("open", "/open/", svc, bypass_auth=True),
                                 auth_service()))
    px.start()
    with socket.create_connection(("127.0.0.1", px.port), timeout=5) as s:
        s.sendall(get("/backend/") + get("/open/"))
        data = b""
        while data.count(b"HTTP/1.1 ") < 2 or not data.endswith(b"}"):
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
    data = DATE_RX.sub(b"\r\ndate: DATE\r\n", data)
    assert data.startswith(DENIED_AUTH + b"HTTP/1.1 200 OK\r\n"), data


def test_ip_allow_denies_every_request(processes, tmp_path, quote_backend):
    svc = f"127.0.0.1:{quote_backend.port}"
    px = Portico(processes, tmp_path)
    px.write("routes.yaml", dump(mapping("m", "/backend/", svc, bypass_auth=True)))
    f = px.write("module.yaml", dump(module(ip_allow=[{"peer": "127.0.0.1"}],
                                            envoy_log_type="json")))
    px.start()
    assert exchange(px.port, get("/backend/")) == DENIED_RBAC
    assert exchange(px.port, get("/nowhere/", host="unknown.example")) == DENIED_RBAC
    want = (f"{f}:{line_of(f, 'ip_allow')}: Module/default/ambassador: config.ip_allow: not "
            f"supported by this build: every request is denied with 403 until ip_allow and "
            f"ip_deny are removed")
    assert re.search(r"portico error: " + re.escape(want), px.log()), px.log()
    assert [e["object"] for e in px.diag()["errors"]] == ["Module/default/ambassador"]
    # the rest of the Module still applies (JSON access log), with flag "-" as Envoy's RBAC
    def json_403s():
        return [l for l in px.log().splitlines() if l.startswith("{") and '"response_code":403' in l]
    logs, _ = poll_until(lambda: len(json_403s()) == 2 and json_403s(), 3)
    assert logs and all('"response_flags":"-"' in l for l in logs), px.log()
    px.write("module.yaml", dump(module(envoy_log_type="json")))
    px.wait_status("/backend/", 200)


def test_ip_deny_denies_every_request(processes, tmp_path, quote_backend):
    px = Portico(processes, tmp_path)
    px.write("routes.yaml", dump(mapping("m", "/backend/", f"127.0.0.1:{quote_backend.port}")))
    px.write("module.yaml", dump(module(ip_deny=[{"peer": "10.0.0.0/8"}])))
    px.start()
    assert exchange(px.port, get("/backend/")) == DENIED_RBAC


def test_shadow_mappings_are_not_served(processes, tmp_path, quote_backend):
    """Today's alternative would be worse than nothing: a shadow Mapping taking half the live
    traffic of its prefix. (host_redirect is served now: test_redirects.py.)"""
    other = f"127.0.0.1:{quote_backend.port}"
    px = Portico(processes, tmp_path)
    px.write("routes.yaml", dump(
        mapping("main", "/backend/", other),
        mapping("shadow", "/backend/", "127.0.0.1:9", shadow=True)))
    px.start()
    for _ in range(20):
        assert px.status("/backend/") == 200
    objs = sorted(e["object"] for e in px.diag()["errors"])
    assert objs == ["Mapping/default/shadow"]
