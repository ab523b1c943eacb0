"""docs/security.md: private keys and Secret data never reach the logs (even at debug level), the
diag page or /metrics, whether the Secret is valid, broken, or named by a TLSContext whose
settings are wrong."""

import base64

import requests

import tlsenv


def test_key_material_never_leaves_the_process(processes, tmp_path, quote_backend):
    ca = tlsenv.make_ca("Secret Test CA")
    good = tlsenv.issue(ca, "good.example", dns=["good.example"])
    other = tlsenv.issue(ca, "other.example", dns=["other.example"])
    edge = tlsenv.start_portico(
        processes, tmp_path,
        tlsenv.mapping_yaml("quote", f"127.0.0.1:{quote_backend.port}"),
        tlsenv.secret_yaml("good-cert", good.chain_pem, good.key_pem),
        # a key that does not match its certificate: an error that must not quote the key
        tlsenv.secret_yaml("bad-cert", good.chain_pem, other.key_pem),
        tlsenv.host_yaml("good", "good.example", "  tlsSecret:\n    name: good-cert\n"),
        tlsenv.host_yaml("bad", "bad.example", "  tlsSecret:\n    name: bad-cert\n"),
        args=("--log-level", "debug"))
    r = tlsenv.tls_get(edge.https, tlsenv.client_ctx(), sni="good.example", host="good.example")
    assert r.status == 200, r
    diag = requests.get(f"http://127.0.0.1:{edge.admin}/ambassador/v0/diag/?json=true",
                        timeout=5).text
    metrics = requests.get(f"http://127.0.0.1:{edge.admin}/metrics", timeout=5).text
    log = edge.proc.log()
    assert "bad-cert" in diag or "bad.example" in diag  # the broken Secret is reported...
    for key in (good.key_pem, other.key_pem):
        pem = key.decode() if isinstance(key, bytes) else key
        body = "".join(pem.strip().splitlines()[1:-1])  # the base64 of the key
        b64 = base64.b64encode(pem.encode()).decode()
        assert len(body) > 40 and "PRIVATE KEY" in pem
        for where, text in (("diag", diag), ("metrics", metrics), ("log", log)):
            assert body[:40] not in text, f"key material in {where}"  # ...never its key
            assert b64[:40] not in text, f"Secret data in {where}"
