"""Self-tests of the Istio stand-ins in istio.py: the mesh CA and workload certificates, the
istio-agent output directory and the STRICT HAProxy sidecar. None of them needs Portico's TLS,
so they run today; if one fails, the Istio acceptance tests (test_istio_seed.py) cannot be
trusted either."""

import datetime
import os
import socket
import ssl
import subprocess
import threading
import time

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID

from conftest import RawConn
from istio import (SIDECAR_ALPN, have_openssl, https_get, issue_workload, make_mesh,
                   mesh_client_context, mismatched_pair, openssl_x509_text, start_sidecar,
                   write_istio_dir, write_workload)


@pytest.fixture
def mesh(tmp_path):
    return make_mesh(tmp_path / "mesh")


@pytest.fixture
def sidecar(processes, tmp_path, quote_backend, mesh):
    return start_sidecar(processes, tmp_path / "sidecar", quote_backend.port, mesh)


# ---- certificates ----

def test_workload_cert_is_shaped_like_istiods(mesh, tmp_path):
    wl = issue_workload(mesh, "default", "portico", serial=0x1234ABCD)
    c = wl.cert
    assert wl.serial == 0x1234ABCD
    assert list(c.subject) == []
    assert c.issuer == mesh.cert.subject
    assert c.public_key().key_size == 2048
    san = c.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    assert san.critical
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/default/sa/portico"]
    ku = c.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE)
    assert ku.critical and ku.value.digital_signature and ku.value.key_encipherment
    assert not ku.value.key_cert_sign
    eku = c.extensions.get_extension_for_oid(ExtensionOID.EXTENDED_KEY_USAGE).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    now = datetime.datetime.utcnow()
    assert datetime.timedelta(seconds=100) < now - c.not_valid_before < datetime.timedelta(
        seconds=150)
    assert abs((c.not_valid_after - now) - datetime.timedelta(hours=24)) < datetime.timedelta(
        seconds=30)
    assert wl.key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")   # PKCS#1
    assert wl.chain_pem == wl.cert_pem + mesh.root_pem
    root_days = (mesh.cert.not_valid_after - mesh.cert.not_valid_before).days
    assert 3649 <= root_days <= 3651
    assert mesh.cert.extensions.get_extension_for_oid(ExtensionOID.BASIC_CONSTRAINTS).value.ca
    # Another mesh's trust domain shows up in the SAN.
    other = make_mesh(tmp_path / "other", trust_domain="example.org")
    assert issue_workload(other, "ns1", "sa1").spiffe_id == "spiffe://example.org/ns/ns1/sa/sa1"


@pytest.mark.skipif(not have_openssl(), reason="openssl CLI not installed")
def test_openssl_sees_a_critical_uri_san_and_an_empty_subject(mesh, tmp_path):
    wl = issue_workload(mesh, "default", "portico")
    _, crt, _ = wl.write(tmp_path, "wl")
    text = openssl_x509_text(crt)
    assert "X509v3 Subject Alternative Name: critical" in text
    assert "URI:spiffe://cluster.local/ns/default/sa/portico" in text
    assert "X509v3 Key Usage: critical" in text
    assert "Digital Signature, Key Encipherment" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    subject = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in", str(crt)],
                             capture_output=True, text=True, check=True).stdout
    assert subject.strip() in ("subject=", "subject= ")
    # The leaf verifies against the mesh root: a critical SAN is no obstacle.
    leaf = tmp_path / "leaf.crt"
    leaf.write_bytes(wl.cert_pem)
    v = subprocess.run(["openssl", "verify", "-CAfile", str(mesh.root_path),
                        "-purpose", "sslclient", str(leaf)], capture_output=True, text=True)
    assert v.returncode == 0, v.stdout + v.stderr


def test_mismatched_pair_cannot_be_loaded(mesh, tmp_path):
    a, b = issue_workload(mesh, "default", "a"), issue_workload(mesh, "default", "b")
    key, chain = mismatched_pair(a, b)
    (tmp_path / "k.pem").write_bytes(key)
    (tmp_path / "c.pem").write_bytes(chain)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    with pytest.raises(ssl.SSLError, match="(?i)key values mismatch"):
        ctx.load_cert_chain(str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))


# ---- the istio-agent output directory ----

def test_write_istio_dir_writes_atomically_in_order(mesh, tmp_path):
    d = tmp_path / "istio-certs"
    wl = issue_workload(mesh, "default", "portico")
    assert write_workload(d, wl, delay=0.05) == ["key.pem", "cert-chain.pem", "root-cert.pem"]
    assert sorted(os.listdir(d)) == ["cert-chain.pem", "key.pem", "root-cert.pem"]  # no temps
    assert (d / "key.pem").read_bytes() == wl.key_pem
    assert (d / "cert-chain.pem").read_bytes() == wl.chain_pem
    assert (d / "root-cert.pem").read_bytes() == mesh.root_pem
    m = {n: os.stat(d / n).st_mtime_ns for n in os.listdir(d)}
    assert m["key.pem"] < m["cert-chain.pem"] < m["root-cert.pem"]
    assert m["cert-chain.pem"] - m["key.pem"] >= 40_000_000
    assert oct(os.stat(d / "key.pem").st_mode & 0o777) == "0o644"
    # Unchanged content is not rewritten (the root stays as it is on rotation).
    wl2 = issue_workload(mesh, "default", "portico")
    assert write_workload(d, wl2) == ["key.pem", "cert-chain.pem"]
    # Another order, and a file left out.
    wl3 = issue_workload(mesh, "default", "portico")
    assert write_istio_dir(d, wl3.key_pem, wl3.chain_pem, None,
                           order=("cert-chain.pem", "key.pem", "root-cert.pem")) == [
        "cert-chain.pem", "key.pem"]


def test_readers_never_see_a_partial_file(mesh, tmp_path):
    """Each file is replaced by rename, so a reader sees the old or the new content, whole."""
    d = tmp_path / "istio-certs"
    pairs = [issue_workload(mesh, "default", "portico") for _ in range(2)]
    write_workload(d, pairs[0])
    valid = {p.key_pem for p in pairs}
    bad = []
    stop = threading.Event()

    def reader():
        while not stop.is_set():
            data = (d / "key.pem").read_bytes()
            if data not in valid:
                bad.append(len(data))

    t = threading.Thread(target=reader)
    t.start()
    try:
        deadline = time.monotonic() + 0.5
        i = 0
        while time.monotonic() < deadline:
            i += 1
            write_workload(d, pairs[i % 2])
    finally:
        stop.set()
        t.join(5)
    assert i > 10 and bad == []


# ---- the STRICT sidecar ----

def test_mesh_client_gets_the_quote_and_its_serial_is_logged(sidecar, mesh, tmp_path):
    wl = issue_workload(mesh, "default", "portico")
    ctx = mesh_client_context(mesh, wl, alpn=["istio"], tmp=tmp_path)
    status, headers, body, alpn = https_get(sidecar.port, ctx, "/backend/")
    assert status == 200, body
    assert alpn == "istio"
    assert headers["content-type"] == "application/json"
    assert b'"quote":' in body
    e = sidecar.wait_requests(1)[-1]
    assert sidecar.serials() == [wl.serial]
    assert sidecar.alpns() == ["istio"]
    assert e["path"] == "/backend/" and e["status"] == "200" and e["verify"] == "0"
    assert e["proto"] in ("TLSv1.2", "TLSv1.3")


def test_sidecar_logs_the_negotiated_alpn(sidecar, mesh, tmp_path):
    wl = issue_workload(mesh, "default", "portico")
    offers = [["istio-http/1.1", "istio", "http/1.1"], ["http/1.1"], None]
    for alpn in offers:
        status, _, _, _ = https_get(sidecar.port,
                                    mesh_client_context(mesh, wl, alpn=alpn, tmp=tmp_path))
        assert status == 200
    sidecar.wait_requests(3)
    # The server's preference order decides (OpenSSL's SSL_select_next_proto as HAProxy uses it):
    # istio comes first in SIDECAR_ALPN.
    assert SIDECAR_ALPN.split(",")[0] == "istio"
    assert sidecar.alpns() == ["istio", "http/1.1", ""]
    assert sidecar.serials() == [wl.serial] * 3


@pytest.mark.skipif(not have_openssl(), reason="openssl CLI not installed")
def test_openssl_s_client_through_the_sidecar(sidecar, mesh, tmp_path):
    wl = issue_workload(mesh, "default", "portico")
    key, crt, _ = wl.write(tmp_path, "s_client")
    req = b"GET /backend/ HTTP/1.1\r\nHost: quote\r\nConnection: close\r\n\r\n"
    r = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{sidecar.port}",
                        "-cert", str(crt), "-key", str(key), "-CAfile", str(mesh.root_path),
                        "-verify_return_error", "-alpn", "istio", "-ign_eof", "-quiet"],
                       input=req, capture_output=True, timeout=10)
    assert b"HTTP/1.1 200" in r.stdout, r.stdout + r.stderr
    assert b'"quote":' in r.stdout
    sidecar.wait_requests(1)
    assert sidecar.serials() == [wl.serial]
    assert sidecar.alpns() == ["istio"]


def test_plaintext_http_is_closed_without_an_answer(sidecar):
    """STRICT: no plaintext filter chain, the connection is closed (what Envoy turns into
    'reset reason: connection termination')."""
    with RawConn(sidecar.port) as c:
        c.request("GET", "/backend/", headers=[("Host", "quote")])
        assert c.closed_by_peer(timeout=3)
    assert "SSL handshake failure" in sidecar.wait_errors(1)[0]
    assert sidecar.entries() == []


def _tls_get_fails(port, ctx):
    """True when the TLS connection dies before any HTTP response arrives."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with ctx.wrap_socket(raw) as s:
                s.sendall(b"GET /backend/ HTTP/1.1\r\nHost: quote\r\n\r\n")
                return s.recv(65536) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def test_client_without_certificate_is_rejected(sidecar, mesh):
    assert _tls_get_fails(sidecar.port, mesh_client_context(mesh, None, alpn=["istio"]))
    assert "SSL handshake failure" in sidecar.wait_errors(1)[0]
    assert sidecar.entries() == []


def test_client_from_another_mesh_is_rejected(sidecar, mesh, tmp_path):
    foreign = make_mesh(tmp_path / "foreign")
    wl = issue_workload(foreign, "default", "portico")
    ctx = mesh_client_context(mesh, wl, alpn=["istio"], tmp=tmp_path)
    assert _tls_get_fails(sidecar.port, ctx)
    assert "cannot be verified" in sidecar.wait_errors(1)[0]
    assert sidecar.entries() == []


def test_close_mode_shows_each_requests_identity(processes, tmp_path, quote_backend, mesh):
    """close=True: one request per connection, so a client that changes certificates between
    requests shows up with the new serial at once."""
    sc = start_sidecar(processes, tmp_path / "sc", quote_backend.port, mesh, close=True)
    a, b = issue_workload(mesh, "default", "a"), issue_workload(mesh, "default", "b")
    for wl in (a, a, b):
        status, headers, _, _ = https_get(sc.port, mesh_client_context(mesh, wl, tmp=tmp_path))
        assert status == 200
    sc.wait_requests(3)
    assert sc.serials() == [a.serial, a.serial, b.serial]
