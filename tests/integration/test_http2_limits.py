"""HTTP/2 limits and the known HTTP/2 attacks (issue 11, point 4): the Listener's
http2MaxConcurrentStreams, and for each attack the offending connection ends with a GOAWAY of
the right code while another client (a fresh HTTP/2 connection and HTTP/1.1) is served: rapid
reset (CVE-2023-44487), CONTINUATION flood (CVE-2024-27316), HPACK bomb, SETTINGS/PING flood,
zero-window stall, stream id misuse, and the header timeout of a connection that never
completes a request.

The attacker is h2raw (Debian's python3-h2 plus raw frames); floods are read back with
read_wire(), which parses the frames fast (h2raw keeps every frame, too slow for 10^5 ACKs).
Every loop is bounded in time and count.
"""

import re
import socket
import struct
import time

import pytest
import requests

from h2raw import (H2Raw, PREFACE, CONTINUATION, END_HEADERS, END_STREAM, GOAWAY, HEADERS, PING,
                   RST_STREAM, SETTINGS, frame_bytes)
from conftest import connections_on_port
from portico import docs, listener_yaml, mapping_yaml, start_portico, wait_access_lines

NO_ERROR, PROTOCOL_ERROR, STREAM_CLOSED, REFUSED_STREAM, ENHANCE_YOUR_CALM = 0, 1, 5, 7, 11
GET = [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/backend/")]


def edge_for(processes, tmp_path, quote_backend, *args, listener_spec="", **mapping):
    listener = listener_yaml()
    if listener_spec:
        listener = listener.replace("hostBinding:", f"{listener_spec}, hostBinding:")
    return start_portico(processes, tmp_path,
                         docs(listener, mapping_yaml("q", f"127.0.0.1:{quote_backend.port}",
                                                     **mapping)),
                         *args, workers=1)


def metric(edge, name):
    text = requests.get(f"http://127.0.0.1:{edge.admin_port}/metrics", timeout=5).text
    return sum(float(v) for v in re.findall(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M))


def wait_metric(edge, name, value, timeout=3.0):
    deadline = time.monotonic() + timeout
    while True:
        v = metric(edge, name)
        if v == value or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def others_served(edge):
    """A fresh HTTP/2 connection and an HTTP/1.1 request are answered 200."""
    with H2Raw(edge.port, timeout=5) as c:
        sid = c.request("/backend/", authority="x")
        assert c.wait_response(sid).status == 200
    r = requests.get(f"http://127.0.0.1:{edge.port}/backend/", timeout=5)
    assert r.status_code == 200


def rss_kb(edge):
    with open(f"/proc/{edge.proc.pid}/status") as f:
        return int(re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M).group(1))


def block(headers):
    """An HPACK block of <headers> from a fresh encoder (literal names, no dynamic table)."""
    import hpack
    return hpack.Encoder().encode([(k.encode(), v.encode()) for k, v in headers])


def read_wire(sock, timeout=10.0, limit=64 << 20):
    """Reads <sock> to EOF (bounded by <timeout> and <limit> bytes); returns (counts by frame
    type, [(last_stream_id, error_code)] of the GOAWAYs, eof)."""
    sock.settimeout(0.5)
    buf, counts, goaways, eof = b"", {}, [], False
    deadline, total = time.monotonic() + timeout, 0
    while time.monotonic() < deadline and total < limit:
        try:
            data = sock.recv(1 << 20)
        except socket.timeout:
            continue
        except OSError:
            data = b""
        if not data:
            eof = True
            break
        total += len(data)
        buf += data
        i = 0
        while len(buf) - i >= 9:
            n = int.from_bytes(buf[i:i + 3], "big")
            if len(buf) - i < 9 + n:
                break
            t = buf[i + 3]
            counts[t] = counts.get(t, 0) + 1
            if t == GOAWAY:
                last, code = struct.unpack(">II", buf[i + 9:i + 17])
                goaways.append((last & 0x7FFFFFFF, code))
            i += 9 + n
        buf = buf[i:]
    return counts, goaways, eof


def settled(c):
    """The SETTINGS exchange is done, so that h2 writes nothing in the middle of raw frames."""
    c.wait_settings_ack()
    c.read(0.1)


# ---- Listener http2MaxConcurrentStreams ------------------------------------------------------------

def server_settings(c):
    f = c.wait_frame(SETTINGS, 0, pred=lambda f: not f.flags & 1)
    return {struct.unpack(">H", f.payload[i:i + 2])[0]: struct.unpack(">I", f.payload[i + 2:i + 6])[0]
            for i in range(0, len(f.payload), 6)}


def test_max_concurrent_streams_from_the_listener(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend, listener_spec="http2MaxConcurrentStreams: 3")
    slow = [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
            (":path", "/backend/delay/500")]
    # Before the client acknowledged the SETTINGS: a stream beyond the limit is refused
    # (REFUSED_STREAM: safe to retry) and the others go on.
    with H2Raw(edge.port, validate=False, preface=False) as c:
        c.send_raw(PREFACE + frame_bytes(SETTINGS, 0, 0) + b"".join(
            frame_bytes(HEADERS, END_HEADERS | END_STREAM, s, c.encode_headers(slow))
            for s in (1, 3, 5, 7)))
        assert server_settings(c)[3] == 3                # SETTINGS_MAX_CONCURRENT_STREAMS
        r7 = c.wait_response(7, timeout=2)
        assert r7.reset == REFUSED_STREAM and r7.status is None, r7   # refused at once
        assert [c.wait_response(s).status for s in (1, 3, 5)] == [200] * 3
        c.headers_raw(9, block=c.encode_headers(GET), end_stream=True)
        assert c.wait_response(9).status == 200          # the connection goes on
        assert not c.goaways()
    # After it: exceeding the limit it acknowledged is a connection error (nghttp2).
    with H2Raw(edge.port, validate=False) as c:
        settled(c)
        c.send_raw(b"".join(frame_bytes(HEADERS, END_HEADERS | END_STREAM, s,
                                        c.encode_headers(slow)) for s in (1, 3, 5, 7)))
        g = c.wait_goaway(timeout=3)
        assert (g.error_code, g.last_stream_id) == (PROTOCOL_ERROR, 5), g
        assert c.wait_closed(timeout=5)
    others_served(edge)


def test_max_concurrent_streams_default_is_100(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend)
    with H2Raw(edge.port) as c:
        assert server_settings(c)[3] == 100


# ---- rapid reset (CVE-2023-44487) ----------------------------------------------------------------

def reset_burst(c, first, n, path="/backend/delay/3000"):
    hdrs = [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", path)]
    out = []
    for sid in range(first, first + 2 * n, 2):
        out.append(frame_bytes(HEADERS, END_HEADERS | END_STREAM, sid, c.encode_headers(hdrs)))
        out.append(frame_bytes(RST_STREAM, 0, sid, struct.pack(">I", 8)))  # CANCEL
    return c.send_raw(b"".join(out))


def test_rapid_reset_ends_the_connection(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend)
    with H2Raw(edge.port, validate=False) as c:
        settled(c)
        reset_burst(c, 1, 150)                           # below the limit: nothing happens
        c.headers_raw(301, block=c.encode_headers(GET), end_stream=True)
        assert c.wait_response(301).status == 200 and not c.goaways()
        reset_burst(c, 303, 400)
        g = c.wait_goaway(timeout=5)
        assert g.error_code == ENHANCE_YOUR_CALM, g
        assert g.last_stream_id <= 303 + 2 * 60, g       # > 200 resets within a second
        assert c.wait_closed(timeout=5)
    # Reset streams leave no upstream work behind (each /delay/3000 would run 3 s).
    assert wait_metric(edge, "envoy_cluster_upstream_rq_active", 0, timeout=1.5) == 0
    others_served(edge)


def test_reset_stream_leaves_no_upstream_request(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend)
    with H2Raw(edge.port) as c:
        sid = c.request("/backend/delay/5000", authority="x")
        assert wait_metric(edge, "envoy_cluster_upstream_rq_active", 1) == 1
        c.reset(sid, code=8)
        assert wait_metric(edge, "envoy_cluster_upstream_rq_active", 0, timeout=1.5) == 0
        assert c.wait_response(c.request("/backend/", authority="x")).status == 200


# ---- CONTINUATION flood (CVE-2024-27316) -----------------------------------------------------------

def test_continuation_flood_of_tiny_frames(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend)
    with H2Raw(edge.port, validate=False) as c:
        settled(c)
        flood = [frame_bytes(HEADERS, END_STREAM, 1, c.encode_headers(GET))]
        flood += [frame_bytes(CONTINUATION, 0, 1, b"") for _ in range(5000)]
        c.send_raw(b"".join(flood))
        g = c.wait_goaway(timeout=5)
        assert g.error_code == ENHANCE_YOUR_CALM, g
        assert c.wait_closed(timeout=5)
        assert c.response(1).status is None
    others_served(edge)


def test_continuation_flood_of_large_frames_is_bounded(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend)
    others_served(edge)
    before = rss_kb(edge)
    with H2Raw(edge.port, validate=False) as c:
        settled(c)
        head = frame_bytes(HEADERS, END_STREAM, 1, block(GET))
        # Each CONTINUATION a new 16 KB literal field: far past the 60 KiB head limit.
        piece = block([(f"x-{i}", "v" * 16000) for i in range(1)])
        c.send_raw(head + b"".join(frame_bytes(CONTINUATION, 0, 1, piece) for _ in range(200)))
        g = c.wait_goaway(timeout=5)
        assert g.error_code == ENHANCE_YOUR_CALM, g
        assert c.wait_closed(timeout=5)
        assert c.response(1).status is None
    assert rss_kb(edge) - before < 8 * 1024, (before, rss_kb(edge))
    others_served(edge)


# ---- HPACK bomb -------------------------------------------------------------------------------------

def test_hpack_bomb_ends_the_connection(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend)
    others_served(edge)
    before = rss_kb(edge)
    with H2Raw(edge.port, validate=False) as c:
        settled(c)
        # x-bomb enters the dynamic table (a literal with incremental indexing), then each
        # repeat is one byte (indexed field 62): 16 KB of block decoding to ~50 MB.
        blk = block(GET + [("x-bomb", "b" * 4000)] * 12000)
        assert len(blk) < 16384
        c.send_raw(frame_bytes(HEADERS, END_HEADERS | END_STREAM, 1, blk))
        g = c.wait_goaway(timeout=5)
        assert g.error_code == ENHANCE_YOUR_CALM, g
        assert c.wait_closed(timeout=5)
        assert c.response(1).status is None
    assert rss_kb(edge) - before < 8 * 1024, (before, rss_kb(edge))
    others_served(edge)


def test_oversized_head_gets_431_and_the_connection_goes_on(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend)
    with H2Raw(edge.port, validate=False) as c:
        settled(c)
        big = block(GET + [(f"x-{i}", "v" * 15000) for i in range(5)])  # 75 KB > 60 KiB
        c.headers_raw(1, block=big, end_stream=True, split=range(16000, len(big), 16000))
        assert c.wait_response(1).status == 431
        c.headers_raw(3, block=block(GET), end_stream=True)
        assert c.wait_response(3).status == 200


# ---- SETTINGS and PING floods -------------------------------------------------------------------------

@pytest.mark.parametrize("frame", [frame_bytes(PING, 0, 0, b"12345678"), frame_bytes(SETTINGS, 0, 0)],
                         ids=["ping", "settings"])
def test_control_frame_flood_from_a_client_that_does_not_read(processes, tmp_path, quote_backend,
                                                               frame):
    edge = edge_for(processes, tmp_path, quote_backend)
    c = H2Raw(edge.port, validate=False)
    try:
        settled(c)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sock.settimeout(1.0)
        # More than the server's socket buffer (4 MB at most) can hold in answers, so that
        # ACKs pile up in nghttp2; then the client reads.
        chunk, sent, deadline = frame * 4096, 0, time.monotonic() + 15
        while sent < (12 << 20) and time.monotonic() < deadline:
            try:
                c.sock.sendall(chunk)
            except (socket.timeout, OSError):
                break
            sent += len(chunk)
        counts, goaways, eof = read_wire(c.sock)
        assert goaways and goaways[-1][1] == ENHANCE_YOUR_CALM, (counts, goaways, sent)
        assert eof
        others_served(edge)
    finally:
        c.close()


# ---- zero-window stall ----------------------------------------------------------------------------

def test_zero_window_stall_times_out_and_holds_little(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend, idle_timeout_ms=800)
    others_served(edge)
    before = rss_kb(edge)
    with H2Raw(edge.port, settings={4: 0}, auto_window=False, validate=False) as c:  # window 0
        settled(c)
        sids = []
        for i in range(20):
            sid = c.next_stream_id()
            c.headers_raw(sid, block=c.encode_headers(
                [(":method", "GET"), (":scheme", "http"), (":authority", "x"),
                 (":path", "/backend/size/20000000")]), end_stream=True)
            sids.append(sid)
        rs = [c.wait_response(sid, timeout=5) for sid in sids]
        assert all(r.status == 200 and r.reset is not None for r in rs), rs[0]
        # 20 streams x 20 MB asked: each buffers ~64 KiB and pauses its upstream.
        assert rss_kb(edge) - before < 16 * 1024, (before, rss_kb(edge))
        others_served(edge)
    lines = [l for l, _ in wait_access_lines(edge, 22) if "/backend/size/20000000" in l]
    assert len(lines) == 20 and all(" SI " in l for l in lines), lines[:2]
    assert wait_metric(edge, "envoy_cluster_upstream_rq_active", 0) == 0


def test_local_reply_to_a_zero_window_client_ends_at_the_idle_timeout(processes, tmp_path, quote_backend):
    """A local reply that cannot be framed (the client never opens its window) is bounded by the
    stream idle timeout, also when the route has no timeout and the reply is the idle timeout's
    own 504: the stream is reset, its request slot goes back to the cluster's breaker, and the
    connection ends at its idle timeout. Before, such streams stayed forever and a few thousand
    of them took the cluster's max_requests from every other client."""
    edge = edge_for(processes, tmp_path, quote_backend, "--stream-idle-timeout-ms", "500",
                    "--idle-timeout-ms", "1000", timeout_ms=0, idle_timeout_ms=300)
    with H2Raw(edge.port, settings={4: 0}, auto_window=False, validate=False) as c:  # window 0
        settled(c)
        sids = [c.request("/nowhere/", authority="unknown.example"),   # 404: no body
                c.request("/backend/delay/60000", authority="x"),        # 504 stream timeout
                c.request("/backend/delay/60000", authority="x")]
        rs = [c.wait_response(sid, timeout=5) for sid in sids]
        assert rs[0].status == 404 and rs[0].reset is None, rs[0]
        assert [(r.status, r.reset is not None) for r in rs[1:]] == [(504, True)] * 2, rs
        assert wait_metric(edge, "envoy_http_downstream_rq_active", 0) == 0
        assert wait_metric(edge, "envoy_cluster_upstream_rq_active", 0) == 0
        counts, goaways, eof = read_wire(c.sock, timeout=5)
        assert eof and goaways and goaways[-1][1] == NO_ERROR, (counts, goaways, eof)
    others_served(edge)


def test_unread_request_bodies_give_their_window_back(processes, tmp_path, quote_backend):
    """Bodies a local reply leaves unread (here 404s to uploads) no longer use up the
    connection's 1 MiB flow-control window: a client that respects flow control can upload on
    the same connection after 40 of them."""
    edge = edge_for(processes, tmp_path, quote_backend)
    with H2Raw(edge.port, timeout=5) as c:
        for _ in range(40):
            sid = c.request("/nowhere/", method="POST", authority="unknown.example",
                            body=b"x" * 60000, end_stream=False)
            assert c.wait_response(sid).status == 404
        sid = c.request("/backend/echo", method="POST", authority="x", body=b"y" * 100000)
        r = c.wait_response(sid)
        assert r.status == 200, r


def test_connection_closed_by_a_timeout_leaves_nothing_queued(processes, tmp_path, quote_backend):
    """A client that opened large windows, asked for large responses and stopped reading its
    socket: when its connection ends (idle timeout, GOAWAY, linger), what it has not taken is
    dropped with a reset instead of staying in the kernel (FIN_WAIT1, MBs queued) for as long as
    the client answers TCP's window probes."""
    edge = edge_for(processes, tmp_path, quote_backend, "--idle-timeout-ms", "500", timeout_ms=500)
    socks = []
    for _ in range(2):
        c = H2Raw(edge.port, settings={4: 2**31 - 1}, auto_window=False, validate=False)
        settled(c)
        c.window_update(2**31 - 1 - 65535)
        for _ in range(4):
            c.request("/backend/size/50000000", authority="x")
        socks.append(c)
    try:
        deadline = time.monotonic() + 10
        while connections_on_port(edge.port) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert connections_on_port(edge.port) == []
    finally:
        for c in socks:
            c.close()
    others_served(edge)


# ---- stream ids ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["even", "lower", "reuse"])
def test_stream_id_misuse_is_a_connection_error(processes, tmp_path, quote_backend, case):
    edge = edge_for(processes, tmp_path, quote_backend)
    with H2Raw(edge.port, validate=False) as c:
        settled(c)
        if case == "even":
            c.headers_raw(2, block=c.encode_headers(GET), end_stream=True)
        else:
            c.headers_raw(5, block=c.encode_headers(GET), end_stream=True)
            assert c.wait_response(5).status == 200
            c.headers_raw(3 if case == "lower" else 5, block=c.encode_headers(GET), end_stream=True)
        g = c.wait_goaway(timeout=3)
        assert g.error_code in ((PROTOCOL_ERROR, STREAM_CLOSED) if case == "reuse"
                                else (PROTOCOL_ERROR,)), g
        assert c.wait_closed(timeout=5)
    others_served(edge)


# ---- timeouts -----------------------------------------------------------------------------------------

def test_preface_alone_is_closed_at_the_header_timeout(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend, "--header-timeout-ms", "500",
                    "--idle-timeout-ms", "30000")
    with H2Raw(edge.port) as c:
        t0 = time.monotonic()
        g = c.wait_goaway(timeout=5)
        assert g.error_code == NO_ERROR and g.last_stream_id == 0
        assert c.wait_closed(timeout=5)
        assert 0.4 < time.monotonic() - t0 < 3
    others_served(edge)


def test_stalled_header_block_is_closed_at_the_header_timeout(processes, tmp_path, quote_backend):
    edge = edge_for(processes, tmp_path, quote_backend, "--header-timeout-ms", "500",
                    "--idle-timeout-ms", "30000")
    with H2Raw(edge.port, validate=False) as c:
        settled(c)
        c.headers_raw(1, block=c.encode_headers(GET), end_stream=True)
        assert c.wait_response(1).status == 200
        time.sleep(0.8)                                  # a served connection idles on
        assert not c.goaways() and not c.closed
        c.headers_raw(3, block=c.encode_headers(GET), end_stream=True, end_headers=False)
        t0 = time.monotonic()
        g = c.wait_goaway(timeout=5)                     # ... but a head must complete
        assert g.error_code == NO_ERROR, g
        assert c.wait_closed(timeout=5)
        assert 0.4 < time.monotonic() - t0 < 3
    others_served(edge)
