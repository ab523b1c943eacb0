"""TLS origination: Mapping `service: https://...`, `tls: true` and `tls: <TLSContext>` (client
certificate from `secret`, upstream verification with `ca_secret`, `sni`, `alpn_protocols`),
what the client gets when the upstream handshake fails or the context is unknown, and upstream
session resumption.

The upstream is HAProxy terminating TLS in front of the quote backend (tlsenv.start_tls_upstream);
its log line per request shows the SNI, ALPN, resumption flag and client certificate serial of
the connection Portico opened. Portico runs with one worker, so its upstream connection pool is
one pool.
"""

import datetime
import json
import os
import re
import threading
import time

import pytest

from istio import issue_workload, make_mesh, mismatched_pair, start_sidecar, write_workload
from tlsenv import (RESET_PREFIX, issue, make_ca, mapping_yaml, secret_yaml, start_portico,
                    start_tls_upstream, tlscontext_yaml)

TLS_ERROR_RX = re.compile(
    re.escape(RESET_PREFIX + "remote connection failure, transport failure reason: ")
    + r"TLS_error:\|(\d+:[^|]*\|?)+:?TLS_error_end$")


@pytest.fixture(scope="module")
def upstream_ca():
    return make_ca("Upstream CA")


@pytest.fixture(scope="module")
def upstream_cert(upstream_ca):
    return issue(upstream_ca, "quote.default", dns=["quote.default", "foo.example"],
                 ips=["127.0.0.1"])


@pytest.fixture(scope="module")
def edge_ca():
    """The CA of Portico's client certificates (a mesh root, in Istio terms)."""
    return make_ca("Edge client CA")


@pytest.fixture
def upstream(processes, tmp_path, quote_backend, upstream_cert):
    """HAProxy TLS in front of the quote backend, no client certificate asked for."""
    return start_tls_upstream(processes, tmp_path / "up", quote_backend.port, upstream_cert)


def is_quote(body):
    try:
        return list(json.loads(body)) == ["server", "quote", "time"]
    except (ValueError, TypeError):
        return False


def edge_with(processes, tmp_path, *docs, env=None):
    return start_portico(processes, tmp_path / "edge", *docs, env=env)


# ---- https:// and tls: true --------------------------------------------------------------------

def test_https_service_originates_tls(processes, tmp_path, upstream):
    edge = edge_with(processes, tmp_path,
                     mapping_yaml("q", f"https://127.0.0.1:{upstream.port}"))
    r = edge.get()
    assert r.status_code == 200, r.text
    assert is_quote(r.text)
    entry = upstream.wait_requests(1)[0]
    assert entry["proto"].startswith("TLSv1."), entry
    assert entry["path"] == "/"
    assert entry["sni"] == ""           # no `sni`: none sent, as Emissary
    assert entry["alpn"] == ""          # the null context offers no ALPN
    assert entry["serial"] == ""        # and no client certificate


def test_tls_true_originates_tls(processes, tmp_path, upstream):
    edge = edge_with(processes, tmp_path,
                     mapping_yaml("q", f"127.0.0.1:{upstream.port}", tls="true"))
    r = edge.get()
    assert r.status_code == 200, r.text
    assert upstream.wait_requests(1)[0]["proto"].startswith("TLSv1.")


def test_https_service_over_the_https_listener(processes, tmp_path, upstream):
    """TLS on both sides: the seed's `curl -k https://...` to a TLS upstream."""
    edge = edge_with(processes, tmp_path,
                     mapping_yaml("q", f"https://127.0.0.1:{upstream.port}"))
    code, body, err = edge.curl("-k", f"https://127.0.0.1:{edge.https}/backend/")
    assert code == 200, err
    assert is_quote(body)


def test_large_bodies_through_tls_on_both_sides(processes, tmp_path, upstream):
    """A 5 MB response and a 3 MB request body through HTTPS listener -> TLS upstream."""
    edge = edge_with(processes, tmp_path,
                     mapping_yaml("q", f"https://127.0.0.1:{upstream.port}",
                                  extra="  timeout_ms: 20000\n"))
    n = 5_000_000
    out = tmp_path / "body"
    code, _, err = edge.curl("-k", "-o", str(out), f"https://127.0.0.1:{edge.https}/backend/size/{n}")
    assert code == 200, err
    pattern = b"abcdefghijklmnopqrstuvwxyz"
    assert out.read_bytes() == (pattern * (n // 26 + 1))[:n]
    post = tmp_path / "post"
    post.write_bytes(b"x" * 3_000_000)
    code, body, err = edge.curl("-k", "--data-binary", f"@{post}",
                                f"https://127.0.0.1:{edge.https}/backend/echo")
    assert code == 200, err
    headers = dict(json.loads(body)["headers"])
    assert headers["content-length"] == "3000000"


SERVICE_TWO_PORTS = """\
---
apiVersion: v1
kind: Service
metadata: {{name: multi, namespace: default}}
spec:
  ports:
    - {{name: http, port: 80, targetPort: {port}}}
    - {{name: admin, port: 9090, targetPort: 9090}}
---
apiVersion: v1
kind: Endpoints
metadata: {{name: multi, namespace: default}}
subsets:
  - addresses: [{{ip: 127.0.0.1}}]
    ports:
      - {{name: http, port: {port}}}
      - {{name: admin, port: 9090}}
"""


def test_tls_without_a_port_to_a_service_with_several_ports(processes, tmp_path, upstream):
    """Emissary's default port with TLS is 443, and "connections to your upstream will hang"
    when the Service has none. Portico: an immediate 503 and a notice saying why; naming the
    port works."""
    edge = edge_with(processes, tmp_path, SERVICE_TWO_PORTS.format(port=upstream.port),
                     mapping_yaml("noport", "multi", prefix="/noport/", tls="true"),
                     mapping_yaml("port80", "multi:80", prefix="/port80/", tls="true"))
    t = time.monotonic()
    r = edge.get("/noport/")
    assert (r.status_code, r.text) == (503, "no healthy upstream")
    assert time.monotonic() - t < 1
    notices = edge.diag()["notices"]
    assert any(n["object"] == "Mapping/default/noport" and "has no port 443" in n["message"]
               for n in notices), notices
    assert edge.get("/port80/").status_code == 200


# ---- upstream verification ----------------------------------------------------------------

def test_ca_secret_of_another_ca_gives_503_certificate_verify_failed(processes, tmp_path,
                                                                      upstream):
    other = make_ca("Some other CA")
    edge = edge_with(processes, tmp_path,
                     secret_yaml("other-ca", other.cert_pem, type="Opaque"),
                     tlscontext_yaml("verify-other", ca_secret="other-ca"),
                     mapping_yaml("q", f"127.0.0.1:{upstream.port}", tls="verify-other"))
    r = edge.get()
    assert r.status_code == 503
    assert TLS_ERROR_RX.match(r.text), r.text
    assert "CERTIFICATE_VERIFY_FAILED" in r.text
    assert r.headers["content-type"] == "text/plain"
    assert upstream.entries() == []     # no request ever reached it
    deadline = time.monotonic() + 2
    while not [l for l in edge.access_lines() if '" 503 UF ' in l]:
        assert time.monotonic() < deadline, edge.access_lines()
        time.sleep(0.05)


def test_ca_secret_of_the_right_ca_gives_200(processes, tmp_path, upstream, upstream_ca):
    edge = edge_with(processes, tmp_path,
                     secret_yaml("upstream-ca", upstream_ca.cert_pem, type="Opaque"),
                     tlscontext_yaml("verify-ok", ca_secret="upstream-ca"),
                     mapping_yaml("q", f"127.0.0.1:{upstream.port}", tls="verify-ok"))
    r = edge.get()
    assert r.status_code == 200, r.text
    assert is_quote(r.text)


def test_without_a_ca_the_upstream_is_not_verified(processes, tmp_path, upstream):
    """As Emissary: no ca_secret / cacert_chain_file, no verification (the upstream's
    certificate is from a CA Portico knows nothing about)."""
    edge = edge_with(processes, tmp_path,
                     tlscontext_yaml("plain-ctx", alpn_protocols="http/1.1"),
                     mapping_yaml("q", f"127.0.0.1:{upstream.port}", tls="plain-ctx"))
    assert edge.get().status_code == 200


def test_cacert_chain_file_verifies_too(processes, tmp_path, upstream, upstream_ca):
    ca_file = tmp_path / "upstream-ca.pem"
    ca_file.write_bytes(upstream_ca.cert_pem)
    other_file = tmp_path / "other-ca.pem"
    other_file.write_bytes(make_ca("Yet another CA").cert_pem)
    edge = edge_with(processes, tmp_path,
                     tlscontext_yaml("good", cacert_chain_file=str(ca_file)),
                     tlscontext_yaml("bad", cacert_chain_file=str(other_file)),
                     mapping_yaml("good", f"127.0.0.1:{upstream.port}", prefix="/good/",
                                  tls="good"),
                     mapping_yaml("bad", f"127.0.0.1:{upstream.port}", prefix="/bad/",
                                  tls="bad"))
    assert edge.get("/good/").status_code == 200
    r = edge.get("/bad/")
    assert r.status_code == 503 and "CERTIFICATE_VERIFY_FAILED" in r.text, r.text


# ---- what goes into the ClientHello -----------------------------------------------------------

def test_sni_is_sent_when_set(processes, tmp_path, upstream):
    edge = edge_with(processes, tmp_path,
                     tlscontext_yaml("with-sni", sni="foo.example"),
                     mapping_yaml("q", f"127.0.0.1:{upstream.port}", tls="with-sni"))
    assert edge.get().status_code == 200
    assert upstream.wait_requests(1)[0]["sni"] == "foo.example"


def test_alpn_istio_is_negotiated(processes, tmp_path, upstream):
    """The seed's `alpn_protocols: istio` (a context without a certificate)."""
    edge = edge_with(processes, tmp_path,
                     tlscontext_yaml("alpn-istio", alpn_protocols="istio"),
                     mapping_yaml("q", f"127.0.0.1:{upstream.port}", tls="alpn-istio"))
    assert edge.get().status_code == 200
    assert upstream.wait_requests(1)[0]["alpn"] == "istio"


def test_client_certificate_from_secret_is_presented(processes, tmp_path, quote_backend,
                                                     upstream_cert, edge_ca):
    up = start_tls_upstream(processes, tmp_path / "up", quote_backend.port, upstream_cert,
                            client_ca=edge_ca, verify="required")
    mine = issue(edge_ca, "portico", client=True)
    edge = edge_with(processes, tmp_path,
                     secret_yaml("edge-client", mine.chain_pem, mine.key_pem),
                     tlscontext_yaml("mtls", secret="edge-client"),
                     mapping_yaml("q", f"127.0.0.1:{up.port}", tls="mtls"))
    r = edge.get()
    assert r.status_code == 200, r.text
    entry = up.wait_requests(1)[0]
    assert int(entry["serial"], 16) == mine.serial
    assert entry["verify"] == "0"


def test_tls_versions_apply_to_origination(processes, tmp_path, quote_backend, upstream_cert):
    """max_tls_version v1.2 against an upstream that allows 1.3: 1.2 is used."""
    up = start_tls_upstream(processes, tmp_path / "up", quote_backend.port, upstream_cert)
    edge = edge_with(processes, tmp_path,
                     tlscontext_yaml("v12", max_tls_version="v1.2"),
                     mapping_yaml("q", f"127.0.0.1:{up.port}", tls="v12"))
    assert edge.get().status_code == 200
    assert up.wait_requests(1)[0]["proto"] == "TLSv1.2"


def test_pooled_connections_are_not_shared_between_tls_contexts(processes, tmp_path,
                                                               quote_backend, upstream_cert,
                                                               edge_ca):
    """Two Mappings to the same upstream address with different client certificates: a kept-alive
    connection of one is never used for the other (each request shows its own identity)."""
    up = start_tls_upstream(processes, tmp_path / "up", quote_backend.port, upstream_cert,
                            client_ca=edge_ca, verify="optional")
    x, y = issue(edge_ca, "x", client=True), issue(edge_ca, "y", client=True)
    edge = edge_with(processes, tmp_path,
                     secret_yaml("cert-x", x.chain_pem, x.key_pem),
                     secret_yaml("cert-y", y.chain_pem, y.key_pem),
                     tlscontext_yaml("ctx-x", secret="cert-x"),
                     tlscontext_yaml("ctx-y", secret="cert-y"),
                     mapping_yaml("mx", f"127.0.0.1:{up.port}", prefix="/x/", tls="ctx-x"),
                     mapping_yaml("my", f"127.0.0.1:{up.port}", prefix="/y/", tls="ctx-y"),
                     mapping_yaml("mp", f"https://127.0.0.1:{up.port}", prefix="/p/"))
    for path in ("/x/", "/y/", "/p/", "/x/", "/y/", "/p/"):
        r = edge.get(path)
        assert r.status_code == 200, (path, r.text)
    serials = [int(e["serial"], 16) if e["serial"] else None for e in up.wait_requests(6)]
    assert serials == [x.serial, y.serial, None] * 2


# ---- failures never fall back to plaintext ------------------------------------------------------

def test_unknown_tlscontext_is_503_and_a_diag_error(processes, tmp_path, upstream):
    edge = edge_with(processes, tmp_path,
                     mapping_yaml("q", f"127.0.0.1:{upstream.port}", tls="no-such-context"))
    r = edge.get()
    assert r.status_code == 503, r.text
    errors = edge.diag_errors()
    assert any(e.get("object") == "Mapping/default/q" and
               "Originate-TLS context no-such-context is not defined" in e["message"]
               for e in errors), errors
    time.sleep(0.2)
    assert upstream.entries() == [] and upstream.errors() == []   # nothing, not even plaintext


def test_plaintext_to_a_tls_only_upstream_is_503_connection_termination(processes, tmp_path,
                                                                        upstream):
    """A Mapping without tls: to a TLS-only port (as to Istio's STRICT sidecar)."""
    edge = edge_with(processes, tmp_path, mapping_yaml("q", f"127.0.0.1:{upstream.port}"))
    r = edge.get()
    assert r.status_code == 503
    assert r.text == RESET_PREFIX + "connection termination"


def test_tls_to_a_plaintext_port_is_503_wrong_version_number(processes, tmp_path,
                                                            quote_backend):
    """`tls:` to a port that speaks cleartext HTTP (e.g. a pod without a sidecar)."""
    edge = edge_with(processes, tmp_path,
                     mapping_yaml("q", f"127.0.0.1:{quote_backend.port}", tls="true"))
    r = edge.get()
    assert r.status_code == 503
    assert r.text == (RESET_PREFIX + "remote connection failure, transport failure reason: "
                      "TLS_error:|268435703:SSL routines:OPENSSL_internal:WRONG_VERSION_NUMBER:"
                      "TLS_error_end")


def test_missing_client_certificate_for_an_mtls_upstream_is_503(processes, tmp_path,
                                                               quote_backend, upstream_cert,
                                                               edge_ca):
    """A context without a certificate against an upstream that requires one: 503, the
    request never reaches the backend."""
    up = start_tls_upstream(processes, tmp_path / "up", quote_backend.port, upstream_cert,
                            client_ca=edge_ca, verify="required")
    edge = edge_with(processes, tmp_path,
                     tlscontext_yaml("no-cert", alpn_protocols="istio"),
                     mapping_yaml("q", f"127.0.0.1:{up.port}", tls="no-cert"))
    r = edge.get()
    assert r.status_code == 503, r.text
    # TLS 1.3: the upstream refuses the (missing) certificate after Portico's side of the
    # handshake is done, so the request meets a closed connection.
    assert r.text == RESET_PREFIX + "connection termination"
    assert up.entries() == []


def test_tlscontext_with_a_missing_secret_is_503_until_it_appears(processes, tmp_path,
                                                                  quote_backend, upstream_cert,
                                                                  edge_ca):
    up = start_tls_upstream(processes, tmp_path / "up", quote_backend.port, upstream_cert,
                            client_ca=edge_ca, verify="required")
    edge = edge_with(processes, tmp_path,
                     tlscontext_yaml("mtls", secret="edge-client"),
                     mapping_yaml("q", f"127.0.0.1:{up.port}", tls="mtls"))
    r = edge.get()
    assert r.status_code == 503, r.text
    assert any("edge-client" in e["message"] for e in edge.diag_errors()), edge.diag_errors()
    assert up.entries() == [] and up.errors() == []

    mine = issue(edge_ca, "portico", client=True)
    (edge.cfg / "zz-secret.yaml").write_text(secret_yaml("edge-client", mine.chain_pem,
                                                         mine.key_pem))
    deadline = time.monotonic() + 5
    while edge.get().status_code != 200:
        assert time.monotonic() < deadline, edge.proc.log_tail()
        time.sleep(0.05)
    assert int(up.wait_requests(1)[-1]["serial"], 16) == mine.serial


# ---- sessions ---------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["v1.2", "v1.3"])
def test_upstream_sessions_are_resumed_on_new_connections(processes, tmp_path, quote_backend,
                                                          upstream_cert, edge_ca, version):
    """HAProxy closes after each response (option httpclose), so every request is a new upstream
    connection; all but the first resume the session."""
    up = start_tls_upstream(processes, tmp_path / "up", quote_backend.port, upstream_cert,
                            client_ca=edge_ca, verify="required", close=True)
    mine = issue(edge_ca, "portico", client=True)
    edge = edge_with(processes, tmp_path,
                     secret_yaml("edge-client", mine.chain_pem, mine.key_pem),
                     tlscontext_yaml("mtls", secret="edge-client", alpn_protocols="istio",
                                     min_tls_version=version, max_tls_version=version),
                     mapping_yaml("q", f"127.0.0.1:{up.port}", tls="mtls"))
    for _ in range(4):
        r = edge.get()
        assert r.status_code == 200, r.text
    entries = up.wait_requests(4)
    assert [e["resumed"] for e in entries] == ["0", "1", "1", "1"], entries
    assert {e["proto"] for e in entries} == {"TLSv" + version[1:]}
    # A resumed session still carries the client identity.
    assert {int(e["serial"], 16) for e in entries} == {mine.serial}


# ---- Istio certificate directory: diag --------------------------------------------------------

def test_diag_shows_the_istio_certificate_state(processes, tmp_path, quote_backend,
                                                upstream_cert, edge_ca):
    """AMBASSADOR_ISTIO_SECRET_DIR: the pair's serial and expiry under istio_certs; a refused
    pair (key not matching) is an error under errors[] while the previous pair stays."""
    istio_dir = tmp_path / "istio-certs"
    istio_dir.mkdir()
    wl = issue(edge_ca, "portico-wl", client=True)
    (istio_dir / "key.pem").write_bytes(wl.key_pem)
    (istio_dir / "cert-chain.pem").write_bytes(wl.chain_pem)
    (istio_dir / "root-cert.pem").write_bytes(edge_ca.cert_pem)
    up = start_tls_upstream(processes, tmp_path / "up", quote_backend.port, upstream_cert,
                            client_ca=edge_ca, verify="required")
    edge = edge_with(processes, tmp_path,
                     tlscontext_yaml("istio-upstream", secret="istio-certs",
                                     alpn_protocols="istio"),
                     mapping_yaml("q", f"127.0.0.1:{up.port}", tls="istio-upstream"),
                     env={"AMBASSADOR_ISTIO_SECRET_DIR": str(istio_dir)})
    assert edge.get().status_code == 200
    state = edge.diag()["istio_certs"]
    assert state["dir"] == str(istio_dir)
    assert state["loaded"] is True
    assert int(state["serial"], 16) == wl.serial
    assert abs(state["not_after"] - wl.cert.not_valid_after.replace(
        tzinfo=datetime.timezone.utc).timestamp()) < 2
    assert state["error"] == ""

    key, chain = mismatched_pair(issue(edge_ca, "b", client=True),
                                 issue(edge_ca, "c", client=True))
    for name, data in (("key.pem", key), ("cert-chain.pem", chain)):
        tmp = istio_dir / f".{name}.tmp"
        tmp.write_bytes(data)
        os.rename(tmp, istio_dir / name)
    deadline = time.monotonic() + 5
    while not edge.diag()["istio_certs"]["error"]:
        assert time.monotonic() < deadline, edge.diag()
        time.sleep(0.05)
    d = edge.diag()
    assert int(d["istio_certs"]["serial"], 16) == wl.serial       # the old pair stays
    assert any(e["object"] == "Secret/default/istio-certs" for e in d["errors"]), d["errors"]
    assert edge.get().status_code == 200
    assert int(up.wait_requests(2)[-1]["serial"], 16) == wl.serial


def test_istio_rotation_lets_a_request_in_flight_finish(processes, tmp_path, quote_backend,
                                                        upstream_cert, edge_ca):
    """A new pair in AMBASSADOR_ISTIO_SECRET_DIR is applied with a new snapshot (no restart):
    a request already on its upstream connection finishes with the old identity, the next new
    connection presents the new one."""
    istio_dir = tmp_path / "istio-certs"
    istio_dir.mkdir()
    old, new = issue(edge_ca, "wl-old", client=True), issue(edge_ca, "wl-new", client=True)

    def write_pair(wl):
        for name, data in (("key.pem", wl.key_pem), ("cert-chain.pem", wl.chain_pem)):
            tmp = istio_dir / f".{name}.tmp"
            tmp.write_bytes(data)
            os.rename(tmp, istio_dir / name)

    write_pair(old)
    up = start_tls_upstream(processes, tmp_path / "up", quote_backend.port, upstream_cert,
                            client_ca=edge_ca, verify="required", close=True)
    edge = edge_with(processes, tmp_path,
                     tlscontext_yaml("istio-upstream", secret="istio-certs",
                                     alpn_protocols="istio"),
                     mapping_yaml("q", f"127.0.0.1:{up.port}", tls="istio-upstream"),
                     env={"AMBASSADOR_ISTIO_SECRET_DIR": str(istio_dir)})
    gen = edge.diag()["generation"]
    pid = edge.proc.pid
    slow = {}
    t = threading.Thread(target=lambda: slow.update(r=edge.get("/backend/delay/1200")))
    t.start()
    time.sleep(0.3)                     # the slow request is on its upstream connection
    write_pair(new)
    deadline = time.monotonic() + 5
    while True:         # the pair is read, then a new snapshot is compiled with it
        d = edge.diag()
        if d["istio_certs"]["serial"] and int(d["istio_certs"]["serial"], 16) == new.serial \
                and d["generation"] > gen:
            break
        assert time.monotonic() < deadline, d
        time.sleep(0.05)
    r = edge.get()
    assert r.status_code == 200, r.text
    t.join(10)
    assert slow["r"].status_code == 200, slow["r"].text
    entries = up.wait_requests(2)
    by_path = {e["path"]: int(e["serial"], 16) for e in entries}
    assert by_path == {"/delay/1200": old.serial, "/": new.serial}, entries
    assert edge.proc.pid == pid and edge.proc.running


def test_istio_certs_secret_lives_in_the_ambassador_namespace(processes, tmp_path,
                                                              quote_backend, upstream_cert,
                                                              edge_ca):
    """As Emissary: the Secret is istio-certs in AMBASSADOR_NAMESPACE, and a TLSContext's
    `secret` is looked up in the TLSContext's own namespace unless written name.namespace."""
    istio_dir = tmp_path / "istio-certs"
    istio_dir.mkdir()
    wl = issue(edge_ca, "wl", client=True)
    (istio_dir / "key.pem").write_bytes(wl.key_pem)
    (istio_dir / "cert-chain.pem").write_bytes(wl.chain_pem)
    up = start_tls_upstream(processes, tmp_path / "up", quote_backend.port, upstream_cert,
                            client_ca=edge_ca, verify="required")

    def ctx_in(name, ns, secret):
        return tlscontext_yaml(name, secret=secret, alpn_protocols="istio").replace(
            f"  name: {name}\n", f"  name: {name}\n  namespace: {ns}\n")

    edge = edge_with(processes, tmp_path,
                     ctx_in("istio-upstream", "ambassador", "istio-certs"),   # the seed's
                     ctx_in("in-default", "default", "istio-certs"),
                     ctx_in("qualified", "default", "istio-certs.ambassador"),
                     mapping_yaml("seed", f"127.0.0.1:{up.port}", prefix="/seed/",
                                  tls="istio-upstream"),
                     mapping_yaml("dflt", f"127.0.0.1:{up.port}", prefix="/dflt/",
                                  tls="in-default"),
                     mapping_yaml("qual", f"127.0.0.1:{up.port}", prefix="/qual/",
                                  tls="qualified"),
                     env={"AMBASSADOR_ISTIO_SECRET_DIR": str(istio_dir),
                          "AMBASSADOR_NAMESPACE": "ambassador"})
    assert edge.get("/seed/").status_code == 200
    assert edge.get("/qual/").status_code == 200
    assert edge.get("/dflt/").status_code == 503
    assert any(e["object"] == "Mapping/default/dflt" and
               "secret istio-certs not found in namespace default" in e["message"]
               for e in edge.diag_errors()), edge.diag_errors()
    assert {int(e["serial"], 16) for e in up.wait_requests(2)} == {wl.serial}


@pytest.fixture(scope="module")
def meshes(tmp_path_factory):
    """Two Istio meshes (RSA roots, as istiod makes them) and Portico's workload in the first."""
    d = tmp_path_factory.mktemp("meshes")
    mesh, other = make_mesh(d / "mesh"), make_mesh(d / "other-mesh")
    return mesh, other, issue_workload(mesh, "default", "portico")


@pytest.mark.parametrize("same_mesh", [True, False], ids=["mesh-root", "foreign-mesh"])
def test_verifying_the_sidecar_against_the_mesh_root(processes, tmp_path, quote_backend, meshes,
                                                     same_mesh):
    """Beyond Emissary (which verifies nothing with istio-certs): `ca_secret: istio-certs` uses
    root-cert.pem (the Secret's ca.crt) to verify the sidecar's certificate chain."""
    mesh, other, portico_wl = meshes
    sidecar = start_sidecar(processes, tmp_path / "sidecar", quote_backend.port,
                            mesh if same_mesh else other)
    istio_dir = tmp_path / "istio-certs"
    write_workload(istio_dir, portico_wl)
    edge = edge_with(processes, tmp_path,
                     tlscontext_yaml("istio-upstream", secret="istio-certs",
                                     alpn_protocols="istio", ca_secret="istio-certs"),
                     mapping_yaml("q", f"127.0.0.1:{sidecar.port}", tls="istio-upstream"),
                     env={"AMBASSADOR_ISTIO_SECRET_DIR": str(istio_dir)})
    r = edge.get()
    if same_mesh:
        assert r.status_code == 200, r.text
        assert sidecar.alpns() == ["istio"]
    else:
        assert r.status_code == 503
        assert TLS_ERROR_RX.match(r.text) and "CERTIFICATE_VERIFY_FAILED" in r.text, r.text
        assert sidecar.entries() == []
