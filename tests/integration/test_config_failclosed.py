"""Fail closed, never open, on what cannot be read (issue 9, point 11; issue 12).

A Module ip_allow/ip_deny that cannot be read is an error (FILE:LINE: Kind/ns/name: message, in
the log at error level, in diag, `portico check` exits 1) and every request gets 403 "RBAC:
access denied" (test_ip_allow_deny.py). An AuthService that cannot be read is an error too, and
while it is there every request is answered 500 with Emissary's JSON ("the ir.auth AuthService
is misconfigured"), as Emissary's Lua stand-in for the filter does. Kinds that weaken nothing
(LogService, TCPMapping, resolvers, DevPortal) are notices naming the kind."""

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
    (module(ip_allow=[{"peer": "localhost"}]), "peer",
     'Module/default/ambassador: config.ip_allow[0]: "localhost" is not an IP address: every '
     'request is denied with 403 until it is fixed'),
    (module(ip_allow=[{"peer": "127.0.0.1"}], ip_deny=[{"remote": "10.0.0.0/8"}]), "ip_deny",
     "Module/default/ambassador: config: ip_allow and ip_deny may not both be set: every request "
     "is denied with 403 until it is fixed"),
], ids=["address", "both"])
def test_check_unreadable_ip_policy_is_an_error(tmp_path, bad, needle, message):
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

def misconfigured(body_rid):
    body = ('{\n  "message": "the ir.auth AuthService is misconfigured; see the logs for more '
            'information",\n  "request_id": "%s",\n  "status_code": 500\n}\n' % body_rid).encode()
    return (b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: %d\r\ndate: DATE\r\nserver: envoy\r\n"
            b"content-type: application/json\r\n\r\n" % len(body)) + body


def test_invalid_authservice_fails_closed(processes, tmp_path, quote_backend):
    """An AuthService that is broken (no name here) is still an AuthService someone wanted:
    every request gets Emissary's 500, bypass_auth or not, until it is fixed or removed."""
    svc = f"127.0.0.1:{quote_backend.port}"
    px = Portico(processes, tmp_path)
    px.write("routes.yaml", dump(mapping("closed", "/backend/", svc),
                                 mapping("open", "/open/", svc, bypass_auth=True)))
    f = px.write("auth.yaml", "apiVersion: getambassador.io/v3alpha1\nkind: AuthService\n"
                              "metadata: {namespace: team}\nspec: {auth_service: extauth}\n")
    px.start()
    for path in ("/backend/", "/open/"):
        got = exchange(px.port, get(path) .replace(b"\r\n\r\n", b"\r\nx-request-id: rid-1\r\n\r\n"))
        assert got == misconfigured("rid-1"), got
    lines = wait_access_lines(px, 2)
    assert [(m["code"], m["flags"]) for _, m in lines if m] == [("500", "UAEX")] * 2
    assert re.search(r"portico error: " + re.escape(f"{f}:") + r"1: AuthService: metadata.name: required",
                     px.log()), px.log()
    px.remove("auth.yaml")
    px.wait_status("/backend/", 200)
    assert px.diag()["errors"] == []


def test_unreadable_ip_policy_denies_every_request(processes, tmp_path, quote_backend):
    """Whatever the Host or path; the rest of the Module still applies (JSON access log), with
    flag "-" as Envoy's RBAC; a valid policy (or none) takes over on reload."""
    svc = f"127.0.0.1:{quote_backend.port}"
    px = Portico(processes, tmp_path)
    px.write("routes.yaml", dump(mapping("m", "/backend/", svc, bypass_auth=True)))
    f = px.write("module.yaml", dump(module(ip_deny=[{"peer": "10.0.0.0/8x"}],
                                            envoy_log_type="json")))
    px.start()
    assert exchange(px.port, get("/backend/")) == DENIED_RBAC
    assert exchange(px.port, get("/nowhere/", host="unknown.example")) == DENIED_RBAC
    want = (f"{f}:{line_of(f, 'peer')}: Module/default/ambassador: config.ip_deny[0]: "
            f'"10.0.0.0/8x": the prefix length must be 0 to 32: every request is denied with 403 '
            f"until it is fixed")
    assert re.search(r"portico error: " + re.escape(want), px.log()), px.log()
    assert [e["object"] for e in px.diag()["errors"]] == ["Module/default/ambassador"]
    def json_403s():
        return [l for l in px.log().splitlines() if l.startswith("{") and '"response_code":403' in l]
    logs, _ = poll_until(lambda: len(json_403s()) == 2 and json_403s(), 3)
    assert logs and all('"response_flags":"-"' in l for l in logs), px.log()
    px.write("module.yaml", dump(module(envoy_log_type="json", ip_deny=[{"peer": "10.0.0.0/8"}])))
    px.wait_status("/backend/", 200)


def test_shadow_mappings_are_served_as_mirrors(processes, tmp_path, quote_backend):
    """A shadow Mapping is no longer an error (proxy/shadow.c, test_shadow.py): it never takes
    the live traffic of its prefix, even with its service dead."""
    other = f"127.0.0.1:{quote_backend.port}"
    px = Portico(processes, tmp_path)
    px.write("routes.yaml", dump(
        mapping("main", "/backend/", other),
        mapping("shadow", "/backend/", "127.0.0.1:9", shadow=True)))
    px.start()
    for _ in range(20):
        assert px.status("/backend/") == 200
    assert px.diag()["errors"] == []
