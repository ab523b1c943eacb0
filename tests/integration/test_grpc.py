"""gRPC through Portico (issue 11, points 2, 3 and the gRPC half of 7): a Mapping with
`grpc: true` speaks HTTP/2 to its service (h2c, or TLS with ALPN h2), multiplexing streams on
few connections; a real gRPC client (python3-grpcio) calls a real gRPC server (grpc_peer) through
it: unary, server-streaming, client-streaming and bidirectional calls, error statuses and
messages, metadata both ways (headers and trailers), deadlines (grpc-timeout), and many calls
with none lost. Raw HTTP/2 (h2raw) checks the exact frames where a gRPC client would hide them.
"""

import re
import threading
import time

import grpc
import pytest

from grpc_peer import Client, payload, request, start_server
from tlsenv import (host_yaml, issue, make_ca, mapping_yaml, metric, secret_yaml, start_portico,
                    start_tls_upstream, tlscontext_yaml)


def grpc_mapping(name, service, prefix="/portico.peer.Peer/", extra="", tls=None):
    return mapping_yaml(name, service, prefix=prefix, tls=tls,
                        extra="  rewrite: \"\"\n  grpc: true\n" + extra)


@pytest.fixture
def h2c_peer(processes):
    return start_server(processes)


@pytest.fixture
def edge(processes, tmp_path, h2c_peer):
    return start_portico(processes, tmp_path, grpc_mapping("grpc", f"127.0.0.1:{h2c_peer.port}"))




# ---- the four call types over h2c ---------------------------------------------------------------

def test_unary_h2c(edge, h2c_peer):
    r = Client(edge.http).unary(payload_size=1000, tag="t1")
    assert r.ok, r
    assert r.replies[0].payload == payload(1000, 0)
    assert r.replies[0].tag == "t1"
    calls = h2c_peer.calls()
    assert calls and calls[0][0].endswith("Unary")


def test_server_stream(edge):
    r = Client(edge.http).server_stream(replies=5, payload_size=70000)
    assert r.ok, r
    assert r.payloads == [payload(70000, i) for i in range(5)]


def test_client_stream(edge):
    reqs = [request(payload=bytes([i]) * 50000) for i in range(6)]
    r = Client(edge.http).client_stream(reqs)
    assert r.ok, r
    assert r.replies[-1].received_bytes == 300000
    assert r.replies[-1].received_messages == 6


def test_bidi_lockstep(edge):
    """Each reply comes back before the next request is sent: nothing waits for a whole
    message, or for the request's end."""
    reqs = [request(payload=b"x" * 100, payload_size=10, tag=f"m{i}") for i in range(20)]
    r = Client(edge.http).bidi(reqs, lockstep=True)
    assert r.ok, r
    assert [x.tag for x in r.replies] == [f"m{i}" for i in range(20)]


# ---- statuses, metadata, deadlines --------------------------------------------------------------

def test_error_status_and_message(edge):
    r = Client(edge.http).unary(fail_code=grpc.StatusCode.NOT_FOUND.value[0], fail_message="no such thing")
    assert r.code == grpc.StatusCode.NOT_FOUND, r
    assert r.details == "no such thing"
    r = Client(edge.http).server_stream(replies=2, fail_code=grpc.StatusCode.ABORTED.value[0],
                                        fail_message="halfway")
    assert r.code == grpc.StatusCode.ABORTED, r
    assert r.details == "halfway" and len(r.replies) == 2


def test_metadata_echo_headers_and_trailers(edge):
    r = Client(edge.http).unary(echo_metadata=True, metadata=(("x-one", "1"), ("x-bin-bin", b"\x00\xff")))
    assert r.ok, r
    assert r.header("x-one") == "1" and r.header("x-peer-phase") == "initial"
    assert r.trailer("x-one") == "1" and r.trailer("x-peer-phase") == "trailing"
    assert r.trailer("x-bin-bin") == b"\x00\xff"


def test_deadline_exceeded(edge, h2c_peer):
    t0 = time.monotonic()
    r = Client(edge.http).unary(sleep_ms=3000, timeout=0.3)
    assert r.code == grpc.StatusCode.DEADLINE_EXCEEDED, r
    assert time.monotonic() - t0 < 2.0


class SilentH2Server:
    """An HTTP/2 server (python3-h2, h2c) that takes requests and never answers them: what
    ends a call through it is Portico's timer, never the server's deadline handling."""

    def __init__(self):
        import socket
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.requests = []
        self.resets = []
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        import h2.config
        import h2.connection
        import h2.events
        h = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        h.initiate_connection()
        conn.settimeout(10)
        try:
            conn.sendall(h.data_to_send())
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                for ev in h.receive_data(data):
                    if isinstance(ev, h2.events.RequestReceived):
                        self.requests.append(dict(ev.headers))
                    elif isinstance(ev, h2.events.StreamReset):
                        self.resets.append(ev.stream_id)
                conn.sendall(h.data_to_send())
        except OSError:
            return

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


def wait_log(edge, pred, timeout=3.0):
    deadline = time.monotonic() + timeout
    while True:
        lines = edge.access_lines()
        if any(pred(ln) for ln in lines) or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_grpc_timeout_bounds_the_request(processes, tmp_path):
    """grpc-timeout (200m) is shorter than the route timeout (3 s): Portico ends the call at
    about 200 ms (UT) and resets its upstream stream; the upstream got grpc-timeout too."""
    from h2raw import H2Raw
    srv = SilentH2Server()
    try:
        edge = start_portico(processes, tmp_path, grpc_mapping("grpc", f"127.0.0.1:{srv.port}"))
        body = grpc_frame(request(sleep_ms=2500).SerializeToString())
        with H2Raw(edge.http) as c:
            t0 = time.monotonic()
            sid = c.request("/portico.peer.Peer/Unary", method="POST", authority="x",
                            headers=[("content-type", "application/grpc"), ("te", "trailers"),
                                     ("grpc-timeout", "200m")], body=body)
            resp = c.wait_response(sid, timeout=5)
            elapsed = time.monotonic() - t0
        assert 0.15 < elapsed < 1.5, elapsed
        assert resp.ended, resp
        # a gRPC local reply (trailers-only): Envoy's 504 -> grpc-status mapping (14); 4
        # (DEADLINE_EXCEEDED) once local replies tell the deadline apart (PT_SF_GRPC_DEADLINE)
        assert resp.status == 200 and resp.header("grpc-status") in ("4", "14"), resp
        assert resp.header("grpc-message") == "upstream request timeout", resp
        lines = wait_log(edge, lambda ln: " 200 UT " in ln)
        assert any(" 200 UT " in ln for ln in lines), lines
        assert srv.requests and srv.requests[0][b"grpc-timeout"] == b"200m"
        assert srv.requests[0][b"te"] == b"trailers"
        deadline = time.monotonic() + 3
        while not srv.resets and time.monotonic() < deadline:
            time.sleep(0.02)
        assert srv.resets == [1]
        # without grpc-timeout the route timeout (3 s) is the bound
        with H2Raw(edge.http) as c:
            t0 = time.monotonic()
            sid = c.request("/portico.peer.Peer/Unary", method="POST", authority="x",
                            headers=[("content-type", "application/grpc"), ("te", "trailers")],
                            body=body)
            resp = c.wait_response(sid, timeout=6)
            assert 2.8 < time.monotonic() - t0 < 4.5
    finally:
        srv.close()


def grpc_frame(msg):
    return b"\x00" + len(msg).to_bytes(4, "big") + msg


# ---- many calls, one connection -----------------------------------------------------------------

def test_thousand_unary_calls_none_lost(edge, h2c_peer):
    c = Client(edge.http)
    bad = []
    for i in range(1000):
        r = c.unary(payload_size=8, tag=str(i))
        if not r.ok or r.replies[0].tag != str(i):
            bad.append((i, r))
    assert not bad, bad[:3]
    ends = h2c_peer.wait_ends(1000)
    assert sum(1 for m, code in ends if code == "OK") == 1000


def test_concurrent_streams_share_one_connection(edge, h2c_peer):
    """50 calls at once from 50 clients: the upstream sees them on one HTTP/2 connection."""
    results = [None] * 50

    def call(i):
        results[i] = Client(edge.http).unary(sleep_ms=300, tag=str(i))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert all(r is not None and r.ok for r in results), [r for r in results if not (r and r.ok)][:3]
    peers = {p for _, p, _ in h2c_peer.calls()}
    assert len(peers) == 1, peers
    assert metric(edge, "envoy_cluster_upstream_cx_http2_total") == 1


def test_second_connection_when_the_first_is_full(processes, tmp_path):
    """The server allows 4 streams per connection: 10 calls at once need 3 connections."""
    peer = start_server(processes, options=(("grpc.max_concurrent_streams", 4),))
    edge = start_portico(processes, tmp_path, grpc_mapping("grpc", f"127.0.0.1:{peer.port}"))
    Client(edge.http).unary()  # the connection, and the server's SETTINGS
    results = [None] * 10

    def call(i):
        results[i] = Client(edge.http).unary(sleep_ms=1500, tag=str(i))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert all(r is not None and r.ok for r in results), results
    peers = {p for _, p, _ in peer.calls()}
    assert len(peers) == 3, peers


# ---- TLS both sides ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki():
    ca = make_ca("Portico gRPC Test CA")
    return {"ca": ca,
            "edge": issue(ca, "grpc.example", dns=["grpc.example"]),
            "up": issue(ca, "peer.example", dns=["peer.example"], ips=["127.0.0.1"])}


def tls_edge(processes, tmp_path, pki, service, ctx_fields, tls="up-ctx"):
    return start_portico(
        processes, tmp_path,
        secret_yaml("edge-cert", pki["edge"].chain_pem, pki["edge"].key_pem),
        host_yaml("grpc", "grpc.example", "  tlsSecret:\n    name: edge-cert\n"),
        secret_yaml("up-ca", ca=pki["ca"].cert_pem, type="Opaque"),
        tlscontext_yaml("up-ctx", **ctx_fields),
        grpc_mapping("grpc", service, tls=tls))


@pytest.mark.parametrize("ctx_fields", [{"alpn_protocols": "h2", "ca_secret": "up-ca"},
                                        {"ca_secret": "up-ca"}],
                         ids=["alpn-h2", "h2-offered-for-grpc"])
def test_tls_client_to_tls_grpc_upstream(processes, tmp_path, pki, ctx_fields):
    """client TLS h2 -> Portico (HTTPS listener) -> TLS h2 server, verified with the CA; h2 is
    offered by the TLSContext, or by Portico itself for a grpc Mapping."""
    peer = start_server(processes, tls=pki["up"])
    edge = tls_edge(processes, tmp_path, pki, f"127.0.0.1:{peer.port}", ctx_fields)
    c = Client(edge.https, ca=pki["ca"], server_name="grpc.example")
    r = c.unary(payload_size=100, echo_metadata=True, metadata=(("x-k", "v"),))
    assert r.ok, r
    assert r.replies[0].payload == payload(100, 0)
    assert r.trailer("x-k") == "v" and r.header("x-k") == "v"
    r = c.bidi([request(tag=f"b{i}", payload_size=5) for i in range(5)], lockstep=True)
    assert r.ok and [x.tag for x in r.replies] == [f"b{i}" for i in range(5)], r
    r = c.server_stream(replies=3, fail_code=grpc.StatusCode.PERMISSION_DENIED.value[0], fail_message="nope")
    assert r.code == grpc.StatusCode.PERMISSION_DENIED and r.details == "nope" and len(r.replies) == 3, r
    assert metric(edge, "envoy_cluster_upstream_cx_http2_total") == 1


def test_grpc_to_http1_only_tls_backend_is_uf(processes, tmp_path, pki, quote_backend):
    """The backend's TLS selects http/1.1 (or nothing): never HTTP/2 assumed; the request fails
    as a connection failure with the reason."""
    up = start_tls_upstream(processes, tmp_path / "up", quote_backend.port, pki["up"],
                            alpn="http/1.1")
    edge = tls_edge(processes, tmp_path, pki, f"127.0.0.1:{up.port}", {"ca_secret": "up-ca"})
    from h2raw import H2Raw
    with H2Raw(edge.https, tls=True, server_name="grpc.example") as c:
        sid = c.request("/portico.peer.Peer/Unary", method="POST", authority="grpc.example",
                        headers=[("content-type", "application/grpc"), ("te", "trailers")],
                        body=grpc_frame(b""))
        resp = c.wait_response(sid, timeout=5)
    from urllib.parse import unquote
    assert resp.status == 200 and resp.header("grpc-status") == "14", resp  # 503 as gRPC
    text = unquote(resp.header("grpc-message"))
    assert "remote connection failure" in text, text
    assert text.endswith("transport failure reason: ALPN: the upstream selected no protocol; "
                         "h2 is required"), text
    lines = wait_log(edge, lambda ln: " 200 UF " in ln)
    assert any(" 200 UF " in ln for ln in lines), lines


def test_grpc_and_http1_mappings_of_one_service_are_two_clusters(processes, tmp_path, quote_backend):
    """The same service with and without grpc: the HTTP/1 route still speaks HTTP/1.1."""
    edge = start_portico(processes, tmp_path,
                         mapping_yaml("plain", f"127.0.0.1:{quote_backend.port}"),
                         grpc_mapping("grpc", f"127.0.0.1:{quote_backend.port}", prefix="/g/"))
    r = edge.get("/backend/")
    assert r.status_code == 200, r.text
    assert metric(edge, "envoy_cluster_upstream_cx_http2_total") == 0


def test_response_complete_upstream_while_the_client_is_slow(edge):
    """The client takes nothing for a while (window 0): Portico pauses the upstream stream, which
    meanwhile ends cleanly (all data, trailers, END_STREAM, closed). That is no reset: once the
    client opens its window it gets every byte and the trailers (it got RST_STREAM
    INTERNAL_ERROR)."""
    import struct
    from h2raw import H2Raw
    from grpc_peer import pb
    msg = request(payload_size=100000).SerializeToString()
    body = b"\0" + struct.pack(">I", len(msg)) + msg
    with H2Raw(edge.http, auto_window=False, settings={4: 0}, timeout=10) as c:  # INITIAL_WINDOW_SIZE 0
        sid = c.request("/portico.peer.Peer/ServerStream", method="POST", authority="x",
                        headers=[("content-type", "application/grpc"), ("te", "trailers")], body=body)
        c.wait_frame(type=1, stream_id=sid)        # the response head
        time.sleep(0.5)                            # the upstream finishes meanwhile
        c.update_settings({4: 1 << 20})
        c.window_update(1 << 24)
        r = c.wait_response(sid)
    assert r.reset is None and r.status == 200, r
    assert dict(r.trailers or []).get("grpc-status") == "0", r
    reply = pb.Reply.FromString(r.body[5:])
    assert reply.payload == payload(100000, 0)


class _H2EchoServer:
    """A cleartext HTTP/2 server (Debian's python3-h2, server side) that answers each request
    with its body length and the trailers it received, in the response head."""

    def __init__(self):
        import socket
        import h2.config
        import h2.connection
        import h2.events
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = False

        def serve(conn):
            c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
            c.initiate_connection()
            conn.sendall(c.data_to_send())
            bodies, trailers = {}, {}
            conn.settimeout(5)
            while not self.stop:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                for ev in c.receive_data(data):
                    if isinstance(ev, h2.events.DataReceived):
                        bodies[ev.stream_id] = bodies.get(ev.stream_id, 0) + len(ev.data)
                        c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, h2.events.TrailersReceived):
                        trailers[ev.stream_id] = [(k.decode(), v.decode()) for k, v in ev.headers]
                    elif isinstance(ev, h2.events.StreamEnded):
                        got = ";".join(f"{k}={v}" for k, v in trailers.get(ev.stream_id, []))
                        c.send_headers(ev.stream_id, [(":status", "200"), ("x-body", str(bodies.get(ev.stream_id, 0))),
                                                      ("x-trailers", got or "-")], end_stream=True)
                conn.sendall(c.data_to_send())

        def accept():
            while not self.stop:
                try:
                    conn, _ = self.sock.accept()
                except OSError:
                    return
                threading.Thread(target=serve, args=(conn,), daemon=True).start()

        threading.Thread(target=accept, daemon=True).start()

    def close(self):
        self.stop = True
        self.sock.close()


def test_request_trailers_reach_an_http2_upstream(processes, tmp_path):
    """Trailers an HTTP/2 client sends after its body go on to an HTTP/2 upstream (gRPC's
    "trailers in both directions"), after the body and ending the stream; with no body too."""
    from h2raw import H2Raw
    srv = _H2EchoServer()
    try:
        edge = start_portico(processes, tmp_path, grpc_mapping("h2", f"127.0.0.1:{srv.port}", prefix="/t/"))
        with H2Raw(edge.http) as c:
            a = c.request("/t/a", method="POST", authority="x", body=b"y" * 70000,
                          trailers=[("x-checksum", "abc"), ("x-two", "2")])
            b = c.request("/t/b", method="POST", authority="x", body=b"", trailers=[("x-only", "1")])
            plain = c.request("/t/c", method="POST", authority="x", body=b"zz")
            ra, rb, rc = c.wait_response(a), c.wait_response(b), c.wait_response(plain)
        assert (ra.status, ra.header("x-body"), ra.header("x-trailers")) == (200, "70000", "x-checksum=abc;x-two=2"), ra
        assert (rb.status, rb.header("x-body"), rb.header("x-trailers")) == (200, "0", "x-only=1"), rb
        assert (rc.status, rc.header("x-body"), rc.header("x-trailers")) == (200, "2", "-"), rc
    finally:
        srv.close()
