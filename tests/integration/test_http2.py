"""HTTP/2 from clients (issue 11, point 1 and its downstream parts of 4-6): ALPN h2 on the HTTPS
Listener, prior-knowledge h2c next to HTTP/1.1 on the cleartext one, and every request behaviour
of HTTP/1.1 on h2 streams: routing, the headers the upstream and the client see, bodies both
ways under flow control, local replies, the SNI/:authority check, resets, malformed requests,
the access log and the metrics.

Real clients: curl (--http2, --http2-prior-knowledge), h2load and nghttp (nghttp2-client), and
h2raw (Debian's python3-h2) for frames no polite client sends. The upstream is the bundled quote
backend over HTTP/1.1 (its /echo describes the request it received).
"""

import json
import re
import ssl
import subprocess
import time

import pytest

from h2raw import H2Raw, RST_STREAM, GOAWAY
from tlsenv import (client_ctx, host_yaml, issue, make_ca, mapping_yaml, secret_yaml,
                    start_portico, tls_get, tlscontext_yaml)


@pytest.fixture(scope="module")
def certs():
    ca = make_ca("Portico HTTP/2 Test CA")
    return {"a": issue(ca, "a.example", dns=["a.example"]),
            "b": issue(ca, "b.example", dns=["b.example"])}


def hosts(certs, **ctx):
    docs = []
    for n in ("a", "b"):
        docs.append(secret_yaml(f"{n}-cert", certs[n].chain_pem, certs[n].key_pem))
        if ctx:
            docs.append(tlscontext_yaml(f"{n}-ctx", hosts=[f"{n}.example"], secret=f"{n}-cert", **ctx))
            docs.append(host_yaml(n, f"{n}.example", f"  tlsContext:\n    name: {n}-ctx\n"))
        else:
            docs.append(host_yaml(n, f"{n}.example", f"  tlsSecret:\n    name: {n}-cert\n"))
    return docs


def edge_for(processes, tmp_path, quote_backend, *docs, args=()):
    return start_portico(processes, tmp_path,
                         mapping_yaml("quote-backend", f"127.0.0.1:{quote_backend.port}"), *docs,
                         args=args)


def curl(*args):
    r = subprocess.run(["curl", "-s", "-S", "--max-time", "10", "-D", "-", *args],
                       capture_output=True, timeout=20)
    return r.stdout.decode("latin-1"), r.stderr.decode()


def wait_access(edge, pred, timeout=3.0):
    """The access-log lines once one satisfies <pred> (lines are written within 0.5 s)."""
    deadline = time.monotonic() + timeout
    while True:
        lines = edge.access_lines()
        if any(pred(l) for l in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def echo(body):
    j = json.loads(body)
    return j, {k: v for k, v in j["headers"]}


# ---- negotiation ---------------------------------------------------------------------------------

def test_h2c_prior_knowledge_and_http11_share_the_cleartext_port(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend)
    out, err = curl("--http2-prior-knowledge", f"http://127.0.0.1:{edge.http}/backend/")
    assert out.startswith("HTTP/2 200"), (out, err)
    assert '"quote"' in out
    r = edge.get("/backend/")
    assert r.status_code == 200 and r.raw.version == 11
    # An h2 connection carries several requests.
    with H2Raw(edge.http) as c:
        sids = [c.request("/backend/", authority="x") for _ in range(5)]
        assert [c.wait_response(s).status for s in sids] == [200] * 5


def test_https_offers_h2_then_http11_by_default(processes, tmp_path, quote_backend, certs):
    edge = edge_for(processes, tmp_path, quote_backend, *hosts(certs))
    r = tls_get(edge.https, client_ctx(alpn=["h2", "http/1.1"]), sni="a.example", request=False)
    assert r.handshake_ok and r.alpn == "h2", r
    r = tls_get(edge.https, client_ctx(alpn=["http/1.1"]), sni="a.example")
    assert (r.alpn, r.status) == ("http/1.1", 200), r
    out, err = curl("-k", "--http2", "--resolve", f"a.example:{edge.https}:127.0.0.1",
                    f"https://a.example:{edge.https}/backend/")
    assert out.startswith("HTTP/2 200"), (out, err)


def test_tlscontext_alpn_protocols_is_honoured_exactly(processes, tmp_path, quote_backend, certs):
    edge = edge_for(processes, tmp_path, quote_backend, *hosts(certs, alpn_protocols="http/1.1"))
    r = tls_get(edge.https, client_ctx(alpn=["h2", "http/1.1"]), sni="a.example")
    assert (r.alpn, r.status) == ("http/1.1", 200), r
    out, err = curl("-k", "--http2", "--resolve", f"a.example:{edge.https}:127.0.0.1",
                    f"https://a.example:{edge.https}/backend/")
    assert out.startswith("HTTP/1.1 200"), (out, err)


# ---- what the upstream and the client see --------------------------------------------------------

def test_request_head_as_the_upstream_sees_it(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend)
    with H2Raw(edge.http) as c:
        sid = c.request("/backend/echo?q=1", authority="a.example:8080",
                        headers=[("user-agent", "h2raw"), ("cookie", "a=1"), ("x-one", "1"),
                                 ("cookie", "b=2"), ("te", "trailers")])
        r = c.wait_response(sid)
    assert r.status == 200, r
    j, h = echo(r.body)
    assert (j["method"], j["path"], j["version"]) == ("GET", "/echo?q=1", "HTTP/1.1")
    names = [k for k, _ in j["headers"]]
    assert h["host"] == "a.example:8080"          # :authority plays Host's role
    assert h["cookie"] == "a=1; b=2"              # RFC 9113 §8.2.3, one field for HTTP/1.1
    assert names.count("cookie") == 1
    assert h["x-one"] == "1" and h["user-agent"] == "h2raw"
    assert "te" not in names                      # hop-by-hop for HTTP/1.1
    assert h["x-forwarded-proto"] == "http" and h["x-forwarded-for"] == "127.0.0.1"
    assert re.fullmatch(r"[0-9a-f-]{36}", h["x-request-id"])
    assert j["body_length"] == 0 and "transfer-encoding" not in names
    # The client's head: lower-case names, as HTTP/2 wants, and the proxy's own fields.
    resp = dict(r.headers)
    assert all(k == k.lower() for k, _ in r.headers)
    assert resp["server"] == "envoy" and "x-envoy-upstream-service-time" in resp
    assert "connection" not in resp and "transfer-encoding" not in resp


def test_request_bodies_with_and_without_content_length(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend)
    body = bytes(i % 251 for i in range(200_000))  # > the 64 KiB stream window: flow control
    with H2Raw(edge.http, timeout=10) as c:
        s1 = c.request("/backend/echo", method="POST", authority="x", body=body)
        s2 = c.request("/backend/echo", method="POST", authority="x", body=body,
                       headers=[("content-length", str(len(body)))])
        r1, r2 = c.wait_response(s1), c.wait_response(s2)
    j1, h1 = echo(r1.body)
    j2, h2 = echo(r2.body)
    assert (j1["body_length"], j1["body_chunked"]) == (len(body), True)   # framed by Portico
    assert h1["transfer-encoding"] == "chunked" and "content-length" not in h1
    assert (j2["body_length"], j2["body_chunked"]) == (len(body), False)
    assert h2["content-length"] == str(len(body))


def test_large_response_under_flow_control(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend)
    n = 3_000_000
    out = tmp_path / "o"
    r = subprocess.run(["curl", "-s", "--http2-prior-knowledge", "--max-time", "20", "-o", str(out),
                        "-w", "%{http_version} %{http_code}",
                        f"http://127.0.0.1:{edge.http}/backend/size/{n}"],
                       capture_output=True, text=True, timeout=30)
    assert r.stdout == "2 200", r
    data = out.read_bytes()
    assert len(data) == n
    assert data == bytes(97 + i % 26 for i in range(n))


def test_many_streams_many_connections(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend)
    r = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "10",
                        f"http://127.0.0.1:{edge.http}/backend/"],
                       capture_output=True, text=True, timeout=60)
    assert "2000 succeeded, 0 failed, 0 errored" in r.stdout, r.stdout[-1500:]
    assert "status codes: 2000 2xx" in r.stdout, r.stdout[-1500:]
    r = subprocess.run(["nghttp", "-n", "-s", "-m", "20", f"http://127.0.0.1:{edge.http}/backend/"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr[-1000:]


# ---- local replies and refusals -------------------------------------------------------------------

def test_local_replies_on_h2(processes, tmp_path, quote_backend, certs):
    edge = edge_for(processes, tmp_path, quote_backend, *hosts(certs))
    with H2Raw(edge.http) as c:
        nr = c.request("/nothing-here", authority="unknown.example")  # no Host: 404
        redir = c.request("/backend/x?y=1", authority="a.example")  # cleartext: the Host redirects
        head = c.request("/nothing-here", method="HEAD", authority="unknown.example")
        r404, r301, rhead = c.wait_response(nr), c.wait_response(redir), c.wait_response(head)
    assert (r404.status, r404.body) == (404, b"")
    assert r404.header("content-length") == "0" and r404.header("server") == "envoy"
    assert r301.status == 301 and r301.header("location") == "https://a.example/backend/x?y=1"
    assert rhead.status == 404 and rhead.body == b""


def test_authority_must_agree_with_sni(processes, tmp_path, quote_backend, certs):
    edge = edge_for(processes, tmp_path, quote_backend, *hosts(certs))
    with H2Raw(edge.https, tls=True, server_name="a.example") as c:
        assert c.alpn == "h2"
        ok = c.request("/backend/", authority="a.example")
        other = c.request("/backend/", authority="b.example")
        r_ok, r_other = c.wait_response(ok), c.wait_response(other)
    assert r_ok.status == 200
    assert r_other.status == 421, r_other


def test_malformed_requests_are_refused_and_the_connection_goes_on(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend)
    cases = [
        [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/backend/"),
         ("X-Upper", "1")],                                   # upper-case name
        [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/backend/"),
         ("connection", "keep-alive")],                       # connection-specific
        [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/backend/"),
         ("upgrade", "websocket")],                           # an HTTP/1-only upgrade
        [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/backend/"),
         ("te", "gzip")],                                     # TE other than trailers
        [(":method", "GET"), (":scheme", "http"), (":authority", "x")],  # no :path
        [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "backend")],
        [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/a b")],
    ]
    with H2Raw(edge.http, validate=False) as c:
        for hdrs in cases:
            sid = c.next_stream_id()
            c.headers_raw(sid, block=c.encode_headers(hdrs), end_stream=True)
            r = c.wait_response(sid)
            assert r.reset is not None or r.status == 400, (hdrs, r)
            assert r.status != 200
        sid = c.next_stream_id()
        c.headers_raw(sid, block=c.encode_headers([(":method", "GET"), (":scheme", "http"),
                                                   (":authority", "x"), (":path", "/backend/")]),
                      end_stream=True)
        assert c.wait_response(sid).status == 200   # the connection was not harmed


def test_client_reset_ends_only_its_stream(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend)
    with H2Raw(edge.http) as c:
        slow = c.request("/backend/delay/400", authority="x")
        time.sleep(0.1)
        c.reset(slow, code=8)  # CANCEL
        fast = c.request("/backend/", authority="x")
        assert c.wait_response(fast).status == 200
    lines = [l for l in wait_access(edge, lambda l: "/backend/delay/400" in l) if "/backend/delay/400" in l]
    assert lines and '" 0 DC ' in lines[0], edge.access_lines()


# ---- observability and lifetime -------------------------------------------------------------------

def test_access_log_and_metrics_say_http2(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend)
    out, _ = curl("--http2-prior-knowledge", f"http://127.0.0.1:{edge.http}/backend/")
    assert out.startswith("HTTP/2 200")
    edge.get("/backend/")
    lines = wait_access(edge, lambda l: "HTTP/1.1" in l)
    assert any('"GET /backend/ HTTP/2"' in l for l in lines), lines
    assert any('"GET /backend/ HTTP/1.1"' in l for l in lines), lines
    import requests
    text = requests.get(f"http://127.0.0.1:{edge.admin}/metrics", timeout=5).text

    def total(name):
        return sum(float(v) for v in re.findall(rf"^envoy_http_{name}\{{[^}}]*\}} (\S+)$", text, re.M))
    assert total("downstream_cx_http2_total") >= 1
    assert total("downstream_rq_http2_total") >= 1
    assert total("downstream_rq_http1_total") >= 1
    assert total("downstream_cx_http2_active") == 0   # curl's connection is closed


def test_idle_h2_connection_gets_goaway(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend, args=("--idle-timeout-ms", "300"))
    with H2Raw(edge.http) as c:
        sid = c.request("/backend/", authority="x")
        assert c.wait_response(sid).status == 200
        g = c.wait_goaway(timeout=3)
        assert g.error_code == 0 and g.last_stream_id == sid
        assert c.wait_closed(timeout=3)


# ---- gRPC requests answered by Portico itself -------------------------------------------------------

def test_grpc_local_replies_are_trailers_only(processes, tmp_path, quote_backend):
    """Envoy's local reply to a gRPC request: HTTP 200, content-type application/grpc, the outcome
    in grpc-status (404 -> 12 UNIMPLEMENTED, 503 -> 14 UNAVAILABLE) and grpc-message, no body,
    on HTTP/2 and HTTP/1.1 alike."""
    edge = edge_for(processes, tmp_path, quote_backend,
                    mapping_yaml("dead", "127.0.0.1:1", prefix="/dead/"))
    grpc_hdrs = [("content-type", "application/grpc"), ("te", "trailers")]
    with H2Raw(edge.http) as c:
        nr = c.request("/pkg.Svc/Method", method="POST", authority="x", headers=grpc_hdrs, body=b"")
        uf = c.request("/dead/pkg.Svc/M", method="POST", authority="x",
                       headers=[("content-type", "application/grpc+proto")], body=b"")
        plain = c.request("/nothing", authority="x")
        r_nr, r_uf, r_plain = c.wait_response(nr), c.wait_response(uf), c.wait_response(plain)
        end_frames = [f for f in c.frames if f.stream_id == nr]
    assert (r_nr.status, r_nr.body) == (200, b""), r_nr
    assert r_nr.header("content-type") == "application/grpc"
    assert r_nr.header("grpc-status") == "12" and r_nr.header("grpc-message") is None
    # trailers-only: one HEADERS with END_STREAM (then at most a RST_STREAM NO_ERROR when the
    # request's own END_STREAM had not arrived yet)
    assert end_frames[0].name == "HEADERS" and end_frames[0].flags & 0x1, end_frames
    assert all(f.name == "RST_STREAM" and f.payload == b"\0\0\0\0" for f in end_frames[1:]), end_frames
    assert r_uf.status == 200 and r_uf.header("grpc-status") == "14"
    assert r_uf.header("grpc-message").startswith("upstream connect error or disconnect/reset before headers.")
    assert (r_plain.status, r_plain.header("grpc-status")) == (404, None)
    # HTTP/1.1
    import socket
    s = socket.create_connection(("127.0.0.1", edge.http), timeout=5)
    s.sendall(b"POST /pkg.Svc/Method HTTP/1.1\r\nHost: x\r\ncontent-type: application/grpc\r\n"
              b"content-length: 0\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    s.close()
    head = data.split(b"\r\n\r\n")[0].decode()
    assert head.startswith("HTTP/1.1 200 OK\r\n"), head
    assert "content-type: application/grpc\r\n" in head and "grpc-status: 12\r\n" in head
    assert "content-length: 0\r\n" in head


def test_grpc_client_sees_unavailable_when_no_backend_answers(processes, tmp_path, quote_backend):
    """A real gRPC client (python3-grpcio) over h2c: a route whose backend refuses connections
    gives UNAVAILABLE with Envoy's message; an unknown service UNIMPLEMENTED."""
    from grpc_peer import Client
    import grpc
    edge = edge_for(processes, tmp_path, quote_backend, mapping_yaml("dead", "127.0.0.1:1", prefix="/"))
    r = Client(edge.http).unary(timeout=5)
    assert r.code == grpc.StatusCode.UNAVAILABLE, r
    assert "upstream connect error" in r.details, r


def test_request_trailers_are_dropped_not_taken_for_a_new_head(processes, tmp_path, quote_backend):
    """Trailers after a request body are a second HEADERS block on the stream: not a new request
    head (the stream is routed once) and, for an HTTP/1.1 upstream, not forwarded."""
    edge = edge_for(processes, tmp_path, quote_backend)
    with H2Raw(edge.http) as c:
        sids = [c.request("/backend/echo", method="POST", authority="x", body=b"x" * 3000,
                          trailers=[("x-trailer", "t" * 200)]) for _ in range(3)]
        rs = [c.wait_response(s) for s in sids]
        after = c.request("/backend/", authority="x")
        assert c.wait_response(after).status == 200
    for r in rs:
        assert r.status == 200, r
        j, h = echo(r.body)
        assert j["body_length"] == 3000 and "x-trailer" not in h
    lines = wait_access(edge, lambda l: l.count("/backend/echo") >= 3)
    assert sum("/backend/echo" in l for l in lines) == 3, lines   # one log line per stream
