"""The ambassador Module's ip_allow / ip_deny (docs/configuration.md 5.7): Envoy's RBAC filter as
Emissary configures it. A `peer:` rule matches the connection's peer address, a `remote:` rule
the client address after the Listener's l7Depth (X-Forwarded-For). The cases are those of
Emissary's own tests (python/tests/kat/t_ip_allow_deny.py): the Listener trusts one hop so that a
client can name its address in X-Forwarded-For, and /localhost/ loops back through Portico
itself, whose second pass comes from the peer 127.0.0.1. The test client connects from
127.0.0.2, so only the looped-back pass has the peer 127.0.0.1. Anything that cannot be read
denies every request (fail closed) with an error at its line."""

import http.client
import re
import subprocess

import pytest

from portico_cfg import Portico, doc, dump, line_of, mapping, poll_until

DENIED = b"RBAC: access denied"


def module(**config):
    return doc("Module", "ambassador", {"config": config})


def get_from(port, path, xff=None, source="127.0.0.2"):
    """(status, body) of GET <path> from <source>, with X-Forwarded-For <xff> if given."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5, source_address=(source, 0))
    try:
        headers = {"Host": "a.example"}
        if xff is not None:
            headers["X-Forwarded-For"] = xff
        conn.request("GET", path, headers=headers)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def kat(processes, tmp_path, quote_backend, policy):
    """Emissary's KAT layout: l7Depth 1, /target/ to the backend, /localhost/ back into Portico."""
    px = Portico(processes, tmp_path, listener_spec={"l7Depth": 1})
    px.write("routes.yaml", dump(
        mapping("target", "/target/", f"127.0.0.1:{quote_backend.port}", rewrite="/"),
        mapping("localhost", "/localhost/", f"127.0.0.1:{px.port}", rewrite="/target/")))
    f = px.write("module.yaml", dump(module(**policy)))
    px.start()
    return px, f


def test_ip_allow(processes, tmp_path, quote_backend):
    px, _ = kat(processes, tmp_path, quote_backend,
                {"ip_allow": [{"peer": "127.0.0.1"}, {"remote": "99.99.0.0/16"}]})
    assert px.diag()["errors"] == []
    # nothing special: neither rule matches
    assert get_from(px.port, "/target/00") == (403, DENIED)
    assert get_from(px.port, "/localhost/01") == (403, DENIED)
    # a good remote address: allowed; the looped-back pass is allowed by its peer 127.0.0.1
    assert get_from(px.port, "/target/10", xff="99.99.0.1")[0] == 200
    assert get_from(px.port, "/localhost/11", xff="99.99.0.1")[0] == 200
    # a bad one
    assert get_from(px.port, "/target/20", xff="99.98.0.1") == (403, DENIED)
    assert get_from(px.port, "/localhost/21", xff="99.98.0.1") == (403, DENIED)
    # from 127.0.0.1 itself the peer rule matches, whatever X-Forwarded-For says
    assert get_from(px.port, "/target/30", xff="99.98.0.1", source="127.0.0.1")[0] == 200
    # Envoy's RBAC counters: /target/10, both passes of /localhost/11, /target/30; 4 denied
    assert px.metric("envoy_http_rbac_allowed") == 4
    assert px.metric("envoy_http_rbac_denied") == 4


def test_ip_deny(processes, tmp_path, quote_backend):
    px, _ = kat(processes, tmp_path, quote_backend,
                {"ip_deny": [{"peer": "127.0.0.1"}, {"remote": "99.98.0.0/16"}]})
    assert get_from(px.port, "/target/00")[0] == 200
    assert get_from(px.port, "/localhost/01") == (403, DENIED)  # never works: peer 127.0.0.1
    assert get_from(px.port, "/target/10", xff="99.98.0.1") == (403, DENIED)
    assert get_from(px.port, "/localhost/11", xff="99.98.0.1") == (403, DENIED)
    assert get_from(px.port, "/target/20", xff="99.99.0.1")[0] == 200
    assert get_from(px.port, "/localhost/21", xff="99.99.0.1") == (403, DENIED)


def test_denial_is_envoys_local_reply_before_routing(processes, tmp_path, quote_backend):
    """403 with Envoy's body and flag "-", before routing (an unknown path is 403, not 404),
    over HTTP/1.1 and HTTP/2 alike; IPv6 clients are matched by IPv6 rules."""
    px, _ = kat(processes, tmp_path, quote_backend,
                {"ip_deny": [{"remote": "127.0.0.2"}, {"peer": "::1/128"}], "envoy_log_type": "json"})
    assert get_from(px.port, "/nowhere/") == (403, DENIED)
    assert get_from(px.port, "/nowhere/", source="127.0.0.1")[0] == 404
    r = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "--interface", "127.0.0.2",
                        "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
                        f"http://127.0.0.1:{px.port}/target/"], capture_output=True, text=True, timeout=10)
    assert r.stdout == "403 2", r
    r = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-g",
                        f"http://[::1]:{px.port}/target/"], capture_output=True, text=True, timeout=10)
    assert r.stdout == "403", r  # Listeners are dual-stack where IPv6 is on
    def json_403s():
        return [l for l in px.log().splitlines() if l.startswith("{") and '"response_code":403' in l]
    logs, _ = poll_until(lambda: len(json_403s()) >= 2 and json_403s(), 3)
    assert logs and all('"response_flags":"-"' in l for l in logs), px.log()


@pytest.mark.parametrize("config,needle,message", [
    ({"ip_allow": [{"peer": "127.0.0.1"}], "ip_deny": [{"peer": "10.0.0.1"}]}, "ip_deny",
     "config: ip_allow and ip_deny may not both be set"),
    ({"ip_allow": [{"peer": "127.0.0.1", "remote": "10.0.0.0/8"}]}, "peer",
     "config.ip_allow[0]: expected one `peer:` or `remote:` (principals must be separate list "
     "elements)"),
    ({"ip_deny": [{"remote": "10.0.0.0/33"}]}, "remote",
     'config.ip_deny[0]: "10.0.0.0/33": the prefix length must be 0 to 32'),
    ({"ip_allow": [{"source": "127.0.0.1"}]}, "source",
     'config.ip_allow[0]: principal type "source" unknown: must be peer or remote'),
], ids=["both", "two-in-one", "prefix", "unknown-type"])
def test_unreadable_policy_denies_everything(processes, tmp_path, quote_backend, config, needle,
                                             message):
    """Dropping a bad rule would let through what it was meant to keep out (Emissary drops it):
    every request is denied, the error names the line, the rest of the Module applies, and
    fixing it restores service."""
    px, f = kat(processes, tmp_path, quote_backend, {**config, "envoy_log_type": "json"})
    assert get_from(px.port, "/target/", source="127.0.0.1") == (403, DENIED)
    want = (f"{f}:{line_of(f, needle)}: Module/default/ambassador: {message}: every request is "
            f"denied with 403 until it is fixed")
    assert re.search(r"portico error: " + re.escape(want), px.log()), px.log()
    assert [e["object"] for e in px.diag()["errors"]] == ["Module/default/ambassador"]
    # the rest of the Module still applies: the access log is JSON
    assert poll_until(lambda: any(l.startswith("{") for l in px.log().splitlines()), 3)[0], px.log()
    px.write("module.yaml", dump(module(ip_allow=[{"peer": "127.0.0.1"}])))
    px.wait_status("/target/", 200)
    assert get_from(px.port, "/target/") == (403, DENIED)


def test_policy_changes_apply_live(processes, tmp_path, quote_backend):
    """A reload switches the policy for the next request; an empty list enforces nothing (as
    Emissary), with a notice."""
    px, f = kat(processes, tmp_path, quote_backend, {"ip_allow": [{"remote": "10.0.0.0/8"}]})
    assert get_from(px.port, "/target/")[0] == 403
    px.write("module.yaml", dump(module(ip_allow=[{"remote": "127.0.0.0/24"}])))
    px.wait_status("/target/", 200)
    assert get_from(px.port, "/target/", xff="10.1.1.1")[0] == 403
    px.write("module.yaml", dump(module(ip_allow=[])))
    px.wait_status("/target/", 200, headers={"X-Forwarded-For": "10.1.1.1"})
    assert [n["message"] for n in px.diag()["notices"]] == [
        "config.ip_allow is empty: no IP policy is enforced (as Emissary)"]
