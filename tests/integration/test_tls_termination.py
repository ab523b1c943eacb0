"""TLS termination on an HTTPS Listener: the self-signed fallback certificate, certificates chosen
by SNI from the Hosts (tlsSecret, tlsContext, inline tls, TLSContext hosts), TLSContext settings
(client certificates, versions, ciphers, ALPN), session resumption, and the Host's
requestPolicy.insecure.action for cleartext requests.

Every test starts its own Portico (one HTTP and one HTTPS Listener on free ports, see
tlsenv.start_portico) in front of the bundled quote backend, and talks to it with Python's ssl
module, curl or ``openssl s_client``.
"""

import json
import os
import re
import socket
import ssl
import time

import pytest
import requests

from tlsenv import (client_ctx, host_yaml, issue, make_ca, mapping_yaml, openssl_s_client,
                    secret_yaml, start_portico, tls_get, tlscontext_yaml)


@pytest.fixture(scope="module")
def ca():
    return make_ca("Portico Test Server CA")


@pytest.fixture(scope="module")
def certs(ca):
    """Server certificates by name, all from <ca>."""
    return {
        "a": issue(ca, "a.example", dns=["a.example"]),
        "b": issue(ca, "b.example", dns=["b.example"]),
        "exact": issue(ca, "a.example.com", dns=["a.example.com"]),
        "wild": issue(ca, "wildcard.example.com", dns=["*.example.com"]),
        "star": issue(ca, "star-host", dns=["star-host"]),
        "prefix": issue(ca, "www-prefix", dns=["www-prefix"]),
    }


def quote_mapping(quote_backend):
    return mapping_yaml("quote-backend", f"127.0.0.1:{quote_backend.port}")


def tls_secret_host(name, hostname, secret, extra=""):
    return host_yaml(name, hostname, f"  tlsSecret:\n    name: {secret}\n{extra}")


def two_hosts(certs):
    """Hosts a.example and b.example, each with its own certificate from a tlsSecret."""
    return [secret_yaml("a-cert", certs["a"].chain_pem, certs["a"].key_pem),
            secret_yaml("b-cert", certs["b"].chain_pem, certs["b"].key_pem),
            tls_secret_host("a", "a.example", "a-cert"),
            tls_secret_host("b", "b.example", "b-cert")]


def is_quote(body):
    try:
        return list(json.loads(body)) == ["server", "quote", "time"]
    except (ValueError, TypeError):
        return False


# ---- fresh install: no Host -----------------------------------------------------------------

def test_fallback_certificate_on_fresh_install(processes, tmp_path, quote_backend):
    """The seed's `curl -k https://{{AMBASSADOR_HOST}}/backend/` with no Host configured."""
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend))
    code, body, err = edge.curl("-k", f"https://127.0.0.1:{edge.https}/backend/")
    assert code == 200, (body, err)
    assert is_quote(body), body
    r = tls_get(edge.https, client_ctx())
    assert r.error is None, r
    assert r.subject_cn == "localhost", r.peer.subject


def test_a_users_fallback_self_signed_cert_secret_is_served(processes, tmp_path,
                                                              quote_backend, ca):
    mine = issue(ca, "my-fallback", dns=["my-fallback"])
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend),
                         secret_yaml("fallback-self-signed-cert", mine.chain_pem, mine.key_pem))
    r = tls_get(edge.https, client_ctx())
    assert r.status == 200, r
    assert r.subject_cn == "my-fallback"
    assert edge.get().status_code == 200      # still no Host: cleartext is routed


def test_cleartext_on_the_https_port_is_routed_without_host(processes, tmp_path, quote_backend):
    """protocol: HTTPS takes TLS and cleartext on one port; the synthesised default Host routes
    cleartext (no redirect) when no Host exists."""
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend))
    r = edge.get(port=edge.https)
    assert r.status_code == 200, r.text
    assert is_quote(r.text)


# ---- SNI ------------------------------------------------------------------------------------

@pytest.mark.parametrize("client", ["python", "openssl"])
def test_sni_chooses_the_hosts_certificate(processes, tmp_path, quote_backend, certs, client):
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend), *two_hosts(certs))
    for name in ("a.example", "b.example"):
        if client == "python":
            r = tls_get(edge.https, client_ctx(), sni=name)
            assert r.error is None, r
            assert r.subject_cn == name
            assert r.status == 200 and is_quote(r.body), r
        else:
            subject, out = openssl_s_client(edge.https, servername=name)
            assert subject is not None, out
            assert f"CN = {name}" in subject or f"CN={name}" in subject, subject


def test_unknown_or_missing_sni_gets_the_listener_certificate(processes, tmp_path,
                                                              quote_backend, certs):
    """No Host for `*`: a name that matches no Host, and no SNI at all, get the listener's
    fallback certificate (CN localhost)."""
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend), *two_hosts(certs))
    r = tls_get(edge.https, client_ctx(), sni="other.example")
    assert r.handshake_ok, r
    assert r.subject_cn == "localhost"
    r = tls_get(edge.https, client_ctx(), sni=None)
    assert r.handshake_ok, r
    assert r.subject_cn == "localhost"


def test_sni_precedence_exact_then_suffix_then_star(processes, tmp_path, quote_backend, certs):
    docs = [secret_yaml(f"{k}-cert", certs[k].chain_pem, certs[k].key_pem)
            for k in ("exact", "wild", "star")]
    docs.append(secret_yaml("prefix-cert", certs["prefix"].chain_pem, certs["prefix"].key_pem))
    docs += [tls_secret_host("exact", "a.example.com", "exact-cert"),
             tls_secret_host("wild", "*.example.com", "wild-cert"),
             tls_secret_host("prefix", "www.*", "prefix-cert"),
             tls_secret_host("star", "*", "star-cert")]
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend), *docs)
    expect = {"a.example.com": "a.example.com",       # exact beats *.example.com
              "x.example.com": "wildcard.example.com",
              "deep.x.example.com": "wildcard.example.com",
              "A.EXAMPLE.COM": "a.example.com",       # case does not matter
              "a.example.com.": "a.example.com",      # nor a final dot
              "www.other.org": "www-prefix",          # prefix glob www.*
              "www.example.com": "wildcard.example.com",  # suffix globs come first
              "example.com": "star-host",             # *.example.com needs a label before it
              "other.org": "star-host"}
    got = {}
    for sni in expect:
        r = tls_get(edge.https, client_ctx(), sni=sni)
        assert r.handshake_ok, (sni, r)
        got[sni] = r.subject_cn
    assert got == expect
    # No SNI: the `*` Host's certificate, as Envoy's filter chain without server_names.
    assert tls_get(edge.https, client_ctx(), sni=None).subject_cn == "star-host"


@pytest.mark.parametrize("source", ["tlsSecret", "tlsSecret-namespace", "tlsContext",
                                    "tlscontext-secret.namespace", "inline-tls",
                                    "tlscontext-hosts"])
def test_host_certificate_sources(processes, tmp_path, quote_backend, certs, source):
    a = certs["a"]
    docs = [secret_yaml("a-cert", a.chain_pem, a.key_pem,
                        namespace="certs" if "namespace" in source else None)]
    if source == "tlsSecret":
        docs.append(tls_secret_host("a", "a.example", "a-cert"))
    elif source == "tlsSecret-namespace":
        docs.append(host_yaml("a", "a.example",
                              "  tlsSecret:\n    name: a-cert\n    namespace: certs\n"))
    elif source == "tlscontext-secret.namespace":
        docs.append(tlscontext_yaml("a-ctx", hosts=["a.example"], secret="a-cert.certs"))
        docs.append(host_yaml("a", "a.example"))
    elif source == "tlsContext":
        docs.append(tlscontext_yaml("a-ctx", secret="a-cert"))
        docs.append(host_yaml("a", "a.example", "  tlsContext:\n    name: a-ctx\n"))
    elif source == "inline-tls":
        docs.append(host_yaml("a", "a.example", "  tls:\n    secret: a-cert\n"))
    else:
        docs.append(tlscontext_yaml("a-ctx", hosts=["a.example"], secret="a-cert"))
        docs.append(host_yaml("a", "a.example"))
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend), *docs)
    r = tls_get(edge.https, client_ctx(), sni="a.example")
    assert r.error is None, r
    assert r.subject_cn == "a.example"
    assert r.status == 200 and is_quote(r.body), r
    assert edge.diag_errors() == []


def test_host_with_a_missing_secret_is_reported_and_falls_back(processes, tmp_path,
                                                               quote_backend):
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend),
                         tls_secret_host("a", "a.example", "no-such-secret"))
    errors = edge.diag_errors()
    assert any("Host/default/a" in e.get("object", "") and "no-such-secret" in e["message"]
               for e in errors), errors
    r = tls_get(edge.https, client_ctx(), sni="a.example")
    assert r.handshake_ok, r
    assert r.subject_cn == "localhost"


def test_a_verifying_client_accepts_the_hosts_chain(processes, tmp_path, quote_backend, ca,
                                                    certs):
    """The Secret's tls.crt chain is sent as is: a client that trusts the CA verifies it."""
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend), *two_hosts(certs))
    r = tls_get(edge.https, client_ctx(verify_ca=ca), sni="a.example")
    assert r.error is None, r
    assert r.status == 200


# ---- client certificates ------------------------------------------------------------------

@pytest.fixture(scope="module")
def client_ca():
    return make_ca("Portico Test Client CA")


def mtls_host_docs(certs, client_ca):
    a = certs["a"]
    return [secret_yaml("a-cert", a.chain_pem, a.key_pem),
            secret_yaml("client-ca", client_ca.cert_pem, type="Opaque"),
            tlscontext_yaml("a-mtls", hosts=["a.example"], secret="a-cert",
                            ca_secret="client-ca", cert_required=True),
            host_yaml("a", "a.example")]


def test_cert_required_without_client_certificate_fails(processes, tmp_path, quote_backend,
                                                        certs, client_ca):
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend),
                         *mtls_host_docs(certs, client_ca))
    # TLS 1.2: the handshake itself fails (alert handshake_failure).
    r = tls_get(edge.https, client_ctx(maxv=ssl.TLSVersion.TLSv1_2), sni="a.example")
    assert not r.handshake_ok, r
    assert "HANDSHAKE_FAILURE" in (r.error or "").upper(), r.error
    # TLS 1.3 completes the client's side of the handshake first; the server refuses the
    # client's Finished with a certificate_required alert.
    r = tls_get(edge.https, client_ctx(), sni="a.example", request=False)
    assert "CERTIFICATE_REQUIRED" in (r.error or "").upper(), r
    # A client that sends its request at once gets no response either (the connection is
    # closed; the alert may be lost to the reset).
    r = tls_get(edge.https, client_ctx(), sni="a.example")
    assert r.status is None and r.error is not None, r


def test_cert_required_with_valid_client_certificate_200(processes, tmp_path, quote_backend,
                                                         certs, client_ca):
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend),
                         *mtls_host_docs(certs, client_ca))
    cl = issue(client_ca, "client-1", client=True)
    r = tls_get(edge.https, client_ctx(cert=cl, tmp=tmp_path), sni="a.example")
    assert r.error is None, r
    assert r.status == 200 and is_quote(r.body), r


def test_cert_required_refuses_a_client_certificate_from_another_ca(processes, tmp_path,
                                                                    quote_backend, certs,
                                                                    client_ca):
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend),
                         *mtls_host_docs(certs, client_ca))
    stranger = issue(make_ca("Other CA"), "client-x", client=True)
    r = tls_get(edge.https, client_ctx(cert=stranger, tmp=tmp_path), sni="a.example",
                request=False)
    assert "UNKNOWN_CA" in (r.error or "").upper(), r
    r = tls_get(edge.https, client_ctx(cert=stranger, tmp=tmp_path), sni="a.example")
    assert r.status is None and r.error is not None, r


# ---- versions, ciphers, ALPN ----------------------------------------------------------------

def host_ctx_docs(certs, **settings):
    a = certs["a"]
    return [secret_yaml("a-cert", a.chain_pem, a.key_pem),
            tlscontext_yaml("a-ctx", hosts=["a.example"], secret="a-cert", **settings),
            host_yaml("a", "a.example")]


def test_min_tls_version_v13_refuses_a_tls12_client(processes, tmp_path, quote_backend, certs):
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend),
                         *host_ctx_docs(certs, min_tls_version="v1.3"))
    r = tls_get(edge.https, client_ctx(maxv=ssl.TLSVersion.TLSv1_2), sni="a.example")
    assert not r.handshake_ok, r
    assert "VERSION" in (r.error or "").upper(), r.error
    # Control: a TLS 1.3 client gets in.
    r = tls_get(edge.https, client_ctx(), sni="a.example")
    assert (r.version, r.status) == ("TLSv1.3", 200), r


def test_max_tls_version_v12_negotiates_tls12(processes, tmp_path, quote_backend, certs):
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend),
                         *host_ctx_docs(certs, max_tls_version="v1.2"))
    r = tls_get(edge.https, client_ctx(), sni="a.example")     # the client offers up to 1.3
    assert r.error is None, r
    assert r.version == "TLSv1.2"
    assert r.status == 200


def test_cipher_suites_limit_the_tls12_cipher(processes, tmp_path, quote_backend, certs):
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend),
                         *host_ctx_docs(certs, max_tls_version="v1.2",
                                        cipher_suites=["ECDHE-ECDSA-CHACHA20-POLY1305"]))
    ctx = client_ctx()
    r = tls_get(edge.https, ctx, sni="a.example")
    assert r.error is None, r
    assert r.status == 200
    # A client without that cipher cannot connect.
    ctx = client_ctx(maxv=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    assert not tls_get(edge.https, ctx, sni="a.example").handshake_ok


def test_default_alpn_selects_h2_then_http11(processes, tmp_path, quote_backend, certs):
    """Without alpn_protocols Portico selects h2 for a client that offers it (HTTP/2 at the edge)
    and http/1.1 for one that offers only that."""
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend), *two_hosts(certs))
    r = tls_get(edge.https, client_ctx(alpn=["h2", "http/1.1"]), sni="a.example", request=False)
    assert r.handshake_ok and r.alpn == "h2", r
    r = tls_get(edge.https, client_ctx(alpn=["http/1.1"]), sni="a.example")
    assert r.error is None, r
    assert (r.alpn, r.status) == ("http/1.1", 200)
    code, body, err = edge.curl("-k", "--http2", "--resolve", f"a.example:{edge.https}:127.0.0.1",
                                f"https://a.example:{edge.https}/backend/")
    assert code == 200, err
    assert is_quote(body)


def test_alpn_h2_in_the_tlscontext_negotiates_h2(processes, tmp_path, quote_backend, certs):
    """alpn_protocols "h2,http/1.1" (Emissary's usual way to turn HTTP/2 on) is honoured as
    written: a client that offers both gets h2 and is served over HTTP/2."""
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend),
                         *host_ctx_docs(certs, alpn_protocols="h2,http/1.1"))
    code, body, err = edge.curl("-k", "--http2", "-v", "--resolve", f"a.example:{edge.https}:127.0.0.1",
                                f"https://a.example:{edge.https}/backend/")
    r = tls_get(edge.https, client_ctx(alpn=["h2", "http/1.1"]), sni="a.example", request=False)
    assert r.handshake_ok, r
    assert (r.alpn, code) == ("h2", 200), (r, err[-300:])
    assert "< HTTP/2 200" in err and is_quote(body)


# ---- cleartext requests: requestPolicy.insecure.action -----------------------------------------

@pytest.mark.parametrize("listener", ["http", "https"])
def test_insecure_default_action_redirects_to_https(processes, tmp_path, quote_backend, certs,
                                                    listener):
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend), *two_hosts(certs))
    port = edge.http if listener == "http" else edge.https
    r = edge.get("/backend/some/path?x=1", host="a.example", port=port)
    assert r.status_code == 301, r.text
    assert r.headers["location"] == "https://a.example/backend/some/path?x=1"
    # The same Host over TLS is routed.
    t = tls_get(edge.https, client_ctx(), sni="a.example")
    assert t.status == 200, t


def test_client_x_forwarded_proto_does_not_skip_the_redirect(processes, tmp_path,
                                                             quote_backend, certs):
    """securityModel XFP with l7Depth 0: the connection decides, not a client's
    X-Forwarded-Proto: https (Envoy overwrites XFP at the edge)."""
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend), *two_hosts(certs))
    r = requests.get(f"http://127.0.0.1:{edge.http}/backend/", timeout=5, allow_redirects=False,
                     headers={"Host": "a.example", "X-Forwarded-Proto": "https"})
    assert r.status_code == 301, r.text


def test_insecure_action_route(processes, tmp_path, quote_backend, certs):
    a = certs["a"]
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend),
                         secret_yaml("a-cert", a.chain_pem, a.key_pem),
                         tls_secret_host("a", "a.example", "a-cert",
                                         "  requestPolicy:\n    insecure:\n      action: Route\n"))
    r = edge.get(host="a.example")
    assert r.status_code == 200, r.text
    assert is_quote(r.text)


def test_insecure_action_reject_is_404(processes, tmp_path, quote_backend, certs):
    a = certs["a"]
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend),
                         secret_yaml("a-cert", a.chain_pem, a.key_pem),
                         tls_secret_host("a", "a.example", "a-cert",
                                         "  requestPolicy:\n    insecure:\n      action: Reject\n"))
    r = edge.get(host="a.example")
    assert r.status_code == 404, r.text
    t = tls_get(edge.https, client_ctx(), sni="a.example")
    assert t.status == 200, t


# ---- sessions -------------------------------------------------------------------------------

@pytest.mark.parametrize("version", ["TLSv1_2", "TLSv1_3"])
def test_session_resumption(processes, tmp_path, quote_backend, certs, version):
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend), *two_hosts(certs),
                         workers=2)
    v = getattr(ssl.TLSVersion, version)
    ctx = client_ctx(minv=v, maxv=v)
    first = tls_get(edge.https, ctx, sni="a.example")
    assert first.status == 200 and first.reused is False, first
    assert first.session is not None
    for _ in range(3):      # two workers: a ticket opens on either
        again = tls_get(edge.https, ctx, sni="a.example", session=first.session)
        assert again.status == 200, again
        assert again.reused is True, again


def test_session_from_one_host_does_not_resume_on_another(processes, tmp_path, quote_backend,
                                                          certs):
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend), *two_hosts(certs))
    ctx = client_ctx(minv=ssl.TLSVersion.TLSv1_2, maxv=ssl.TLSVersion.TLSv1_2)
    first = tls_get(edge.https, ctx, sni="a.example")
    assert first.session is not None, first
    other = tls_get(edge.https, ctx, sni="b.example", session=first.session)
    assert other.handshake_ok, other
    assert other.reused is False
    assert other.subject_cn == "b.example"


def test_redirect_drops_port_80_as_envoy_does(processes, tmp_path, quote_backend, certs):
    """Envoy's https_redirect removes an explicit ":80" from the Host when switching to https
    (RouteEntryImplBase::processRequestHost); another port is kept."""
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend), *two_hosts(certs))
    r = edge.get("/backend/p", host="a.example:8080")
    assert (r.status_code, r.headers.get("location")) == (301, "https://a.example:8080/backend/p")
    r = edge.get("/backend/p", host="a.example:80")
    assert (r.status_code, r.headers.get("location")) == (301, "https://a.example/backend/p")


# ---- live changes ---------------------------------------------------------------------------

def wait_generation_above(edge, gen, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        d = edge.diag()
        if d.get("generation", 0) > gen:
            return d
        if time.monotonic() > deadline:
            pytest.fail(f"no new snapshot after {timeout}s (generation {gen})\n"
                        f"{edge.proc.log_tail()}", pytrace=False)
        time.sleep(0.05)


def test_a_new_certificate_in_the_secret_is_served_without_restart(processes, tmp_path,
                                                                   quote_backend, ca, certs):
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend), *two_hosts(certs))
    assert tls_get(edge.https, client_ctx(), sni="a.example").subject_cn == "a.example"
    gen = edge.diag()["generation"]
    renewed = issue(ca, "a.example", dns=["a.example"])
    secret = edge.cfg / "doc01.yaml"           # two_hosts' first document: a-cert
    assert "name: a-cert" in secret.read_text()
    tmp = secret.with_name(".a-cert.tmp")
    tmp.write_text(secret_yaml("a-cert", renewed.chain_pem, renewed.key_pem))
    os.rename(tmp, secret)
    wait_generation_above(edge, gen)
    r = tls_get(edge.https, client_ctx(), sni="a.example")
    assert r.status == 200, r
    assert r.peer.serial_number == renewed.serial
    assert edge.proc.running


def test_session_resumes_after_a_configuration_reload(processes, tmp_path, quote_backend,
                                                      certs):
    """Ticket keys belong to the process, not to a snapshot: a reload that leaves the Host's
    certificate alone does not cost clients a full handshake."""
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend), *two_hosts(certs))
    ctx = client_ctx()
    first = tls_get(edge.https, ctx, sni="a.example")
    assert first.session is not None, first
    gen = edge.diag()["generation"]
    (edge.cfg / "extra.yaml").write_text(mapping_yaml("other", "127.0.0.1:1", prefix="/other/"))
    wait_generation_above(edge, gen)
    again = tls_get(edge.https, ctx, sni="a.example", session=first.session)
    assert again.status == 200, again
    assert again.reused is True


def test_optional_client_certificate_with_ca_secret(processes, tmp_path, quote_backend, certs,
                                                   client_ca):
    """ca_secret without cert_required: a client without a certificate gets in; one with a
    certificate from another CA does not."""
    a = certs["a"]
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend),
                         secret_yaml("a-cert", a.chain_pem, a.key_pem),
                         secret_yaml("client-ca", client_ca.cert_pem, type="Opaque"),
                         tlscontext_yaml("a-ctx", hosts=["a.example"], secret="a-cert",
                                         ca_secret="client-ca"),
                         host_yaml("a", "a.example"))
    r = tls_get(edge.https, client_ctx(), sni="a.example")
    assert r.status == 200, r
    good = issue(client_ca, "client-ok", client=True)
    r = tls_get(edge.https, client_ctx(cert=good, tmp=tmp_path), sni="a.example")
    assert r.status == 200, r
    stranger = issue(make_ca("Other CA"), "client-x", client=True)
    r = tls_get(edge.https, client_ctx(cert=stranger, tmp=tmp_path), sni="a.example",
                request=False)
    assert "UNKNOWN_CA" in (r.error or "").upper(), r


def test_ecdh_curves_limit_the_key_exchange(processes, tmp_path, quote_backend, certs):
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend),
                         *host_ctx_docs(certs, ecdh_curves=["P-384"]))
    _, out = openssl_s_client(edge.https, servername="a.example", extra=["-groups", "P-384"])
    assert re.search(r"(Server|Peer) Temp Key: ECDH, (secp384r1|P-384)", out), out
    subject, out = openssl_s_client(edge.https, servername="a.example",
                                    extra=["-groups", "X25519"])
    assert subject is None, out


def test_x_forwarded_proto_sent_upstream_is_https_over_tls(processes, tmp_path, quote_backend):
    edge = start_portico(processes, tmp_path,
                         mapping_yaml("echo", f"127.0.0.1:{quote_backend.port}",
                                      prefix="/echo/", extra="  rewrite: /echo/\n"))
    r = tls_get(edge.https, client_ctx(), path="/echo/x")
    assert r.status == 200, r
    headers = dict(json.loads(r.body)["headers"])
    assert headers["x-forwarded-proto"] == "https"
    r = edge.get("/echo/x", port=edge.https)       # cleartext on the same port
    headers = dict(r.json()["headers"])
    assert headers["x-forwarded-proto"] == "http"


def test_a_stalled_tls_handshake_is_closed_after_the_header_timeout(processes, tmp_path,
                                                                    quote_backend):
    edge = start_portico(processes, tmp_path, quote_mapping(quote_backend),
                         args=["--header-timeout-ms", "500"])
    for data in (b"", b"\x16\x03\x01\x02\x00\x01"):     # nothing; half a ClientHello
        with socket.create_connection(("127.0.0.1", edge.https), timeout=5) as s:
            if data:
                s.sendall(data)
            t = time.monotonic()
            assert s.recv(100) == b""
            assert 0.3 < time.monotonic() - t < 3
