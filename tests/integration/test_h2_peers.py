"""Self-tests of the HTTP/2 and gRPC test peers, WITHOUT Portico: the gRPC client against the gRPC
server (grpc_peer/), h2raw.py against real HTTP/2 servers (nghttpd from nghttp2-server, and the
gRPC server, which speaks h2c), and the command-line clients the HTTP/2 tests use (curl
--http2-prior-knowledge, nghttp, h2load). If one of these fails, the peer is wrong, not Portico.
"""

import concurrent.futures
import re
import shutil
import struct
import subprocess
import time
from pathlib import Path

import grpc
import pytest

import grpc_peer
from conftest import Processes, free_port
from grpc_peer import Client, payload, pb
from h2raw import ACK, END_STREAM, HEADERS, PING, SETTINGS, H2Raw, H2Timeout, frame_bytes
from tlsenv import issue, make_ca

INDEX = b"<p>hello from nghttpd</p>\n"


def tool(name):
    path = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}")
                                       if Path(p).exists()), None)
    if path is None:
        pytest.fail(f"{name} is missing: run `make deps`", pytrace=False)
    return path


@pytest.fixture(scope="module")
def procs(tmp_path_factory):
    p = Processes(tmp_path_factory.mktemp("h2peers"))
    yield p
    p.stop_all()


@pytest.fixture(scope="module")
def pki():
    ca = make_ca("h2-peers CA")
    return ca, issue(ca, "grpc.test", dns=["grpc.test"], ips=["127.0.0.1"])


@pytest.fixture(scope="module")
def grpc_server(procs):
    return grpc_peer.start_server(procs)


@pytest.fixture(scope="module")
def client(grpc_server):
    with Client(grpc_server.port) as c:
        c.wait_ready()
        yield c


def start_nghttpd(procs, tls=None):
    """nghttpd serving a docroot (index.html, 100k.bin), echoing uploads, every response with a
    trailer and padded frames (so h2raw's trailer and padding handling is exercised)."""
    root = procs.tmp_path / "htdocs"
    root.mkdir(exist_ok=True)
    (root / "index.html").write_bytes(INDEX)
    (root / "100k.bin").write_bytes(payload(100_000))
    port = free_port()
    args = [tool("nghttpd"), "-a", "127.0.0.1", "-d", root, "--echo-upload",
            "--trailer", "x-nghttpd-trailer: yes", "-b", "5", port]
    if tls is None:
        args.insert(1, "--no-tls")
    else:
        key, crt, _ = tls.write(procs.tmp_path / f"nghttpd-{port}", "server")
        args += [key, crt]
    procs.start(args, name="nghttpd", port=port)
    return port


@pytest.fixture(scope="module")
def nghttpd(procs):
    return start_nghttpd(procs)


# ---- gRPC client against the gRPC server --------------------------------------------------------

def test_grpc_unary(client):
    r = client.unary(payload_size=1000, payload=b"x" * 5000, tag="u1")
    assert r.ok, r
    assert r.details in ("", None)
    [rep] = r.replies
    assert rep.payload == payload(1000, 0) and len(rep.payload) == 1000
    assert (rep.tag, rep.seq, rep.received_bytes, rep.received_messages) == ("u1", 0, 5000, 1)
    assert rep.peer.startswith("ipv4:127.0.0.1:")
    assert r.initial_metadata == [] and r.trailing_metadata == []


def test_grpc_server_stream(client):
    r = client.server_stream(replies=5, payload_size=300)
    assert r.ok, r
    assert [x.seq for x in r.replies] == [0, 1, 2, 3, 4]
    assert r.payloads == [payload(300, i) for i in range(5)]
    assert len(set(r.payloads)) == 5
    # An error after some replies: the replies arrive, then the status in the trailers.
    r = client.server_stream(replies=3, payload_size=10, fail_code=14, fail_message="drained")
    assert (r.code, r.details, len(r.replies)) == (grpc.StatusCode.UNAVAILABLE, "drained", 3)


def test_grpc_client_stream(client):
    reqs = [dict(payload=payload(1000, i), sleep_ms=1) for i in range(10)]
    reqs[-1]["payload_size"] = 7
    reqs[-1]["tag"] = "last"
    r = client.client_stream(reqs)
    assert r.ok, r
    [rep] = r.replies
    assert (rep.received_messages, rep.received_bytes, rep.tag) == (10, 10_000, "last")
    assert rep.payload == payload(7)


def test_grpc_bidi(client):
    # Lockstep: request i+1 leaves only after the replies to i came back. A peer that held the
    # stream until its end would make this time out (bounded) instead of passing.
    reqs = [dict(tag=f"t{i}", replies=2, payload_size=20) for i in range(5)]
    r = client.bidi(reqs, lockstep=True, timeout=5.0, bound=8.0)
    assert r.ok, r
    assert [(x.tag, x.seq) for x in r.replies] == [(f"t{i // 2}", i) for i in range(10)]
    assert [x.received_messages for x in r.replies] == [i // 2 + 1 for i in range(10)]
    # Not lockstep, and an error status at the third request.
    reqs = [dict(tag="a"), dict(tag="b"), dict(tag="c", fail_code=9, fail_message="stop"),
            dict(tag="never")]
    r = client.bidi(reqs)
    assert (r.code, r.details) == (grpc.StatusCode.FAILED_PRECONDITION, "stop")
    assert [x.tag for x in r.replies] == ["a", "b", "c"]


def test_grpc_deadline_exceeded(procs):
    server = grpc_peer.start_server(procs)
    with Client(server.port) as c:
        r = c.unary(sleep_ms=5000, timeout=0.3)
        assert r.code == grpc.StatusCode.DEADLINE_EXCEEDED, r
        assert 0.25 < r.elapsed < 2.0
        # The server saw the deadline too (grpc-timeout reached it): it stopped sleeping.
        assert server.wait_ends(1, timeout=3.0) == [("Unary", "CANCELLED")]
        # bound: no deadline sent, the client cancels by itself.
        r = c.unary(sleep_ms=5000, timeout=None, bound=0.3)
        assert r.code == grpc.StatusCode.CANCELLED and r.elapsed < 2.0, r
        assert server.wait_ends(2, timeout=3.0)[1] == ("Unary", "CANCELLED")


def test_grpc_error_status(client):
    message = "permission denied: ünïcödé % 100"
    r = client.unary(fail_code=7, fail_message=message, payload_size=10)
    assert (r.code, r.details, r.replies) == (grpc.StatusCode.PERMISSION_DENIED, message, [])
    # Trailers-only: nothing was sent before the status, so no initial metadata.
    assert r.initial_metadata == []
    r = client.unary(fail_code=99, fail_message="no such code")
    assert r.code == grpc.StatusCode.UNKNOWN


def test_grpc_metadata_echo(client):
    md = [("x-one", "1"), ("x-two", "zwei"), ("x-blob-bin", b"\x00\xff\x10")]
    r = client.unary(echo_metadata=True, metadata=md)
    assert r.ok, r
    for k, v in md:
        assert r.header(k) == v and r.trailer(k) == v
    assert r.header("x-peer-phase") == "initial" and r.trailer("x-peer-phase") == "trailing"
    assert r.header("user-agent").startswith("grpc-python/")
    # Without echo_metadata nothing comes back; with an error, both still arrive.
    assert client.unary(metadata=md).metadata == []
    r = client.server_stream(echo_metadata=True, replies=2, fail_code=8, fail_message="full",
                             metadata=md)
    assert (r.code, len(r.replies)) == (grpc.StatusCode.RESOURCE_EXHAUSTED, 2)
    assert r.header("x-two") == "zwei" and r.trailer("x-blob-bin") == b"\x00\xff\x10"


def test_grpc_thousand_unary(procs):
    server = grpc_peer.start_server(procs)
    with Client(server.port) as c:
        c.wait_ready()

        def one(i):
            return c.unary(tag=f"n{i}", payload_size=i % 64)

        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            results = list(pool.map(one, range(1000)))
    assert [r.code for r in results] == [grpc.StatusCode.OK] * 1000
    assert [r.replies[0].tag for r in results] == [f"n{i}" for i in range(1000)]
    assert all(r.payloads[0] == payload(i % 64) for i, r in enumerate(results))
    ends = server.wait_ends(1000)
    assert len(ends) == 1000 and set(ends) == {("Unary", "OK")}
    assert len(server.calls()) == 1000


def test_grpc_tls(procs, pki):
    ca, leaf = pki
    server = grpc_peer.start_server(procs, tls=leaf)
    with Client(server.port, ca=ca, server_name="grpc.test") as c:
        r = c.unary(payload_size=50, echo_metadata=True, metadata=[("x-tls", "yes")])
        assert r.ok and r.payloads == [payload(50)] and r.trailer("x-tls") == "yes", r
        r = c.bidi([dict(tag="a"), dict(tag="b")], lockstep=True)
        assert r.ok and [x.tag for x in r.replies] == ["a", "b"], r
    # A client that trusts another CA cannot call: TLS really is checked.
    with Client(server.port, ca=make_ca("other CA"), server_name="grpc.test") as c:
        r = c.unary(bound=5.0)
        assert r.code == grpc.StatusCode.UNAVAILABLE, r
    # The same port in cleartext gets nowhere either.
    with Client(server.port) as c:
        assert c.unary(bound=5.0).code == grpc.StatusCode.UNAVAILABLE
    # ALPN h2 from a raw client.
    with H2Raw(server.port, tls=True, server_name="grpc.test", ca=ca) as h:
        assert h.alpn == "h2"
        h.ping(b"tls-ping")
        h.wait_ping_ack(b"tls-ping")


def test_grpc_mtls(procs, pki):
    ca, leaf = pki
    client_cert = issue(ca, "client", client=True)
    server = grpc_peer.start_server(procs, tls=leaf, client_ca=ca)
    with Client(server.port, ca=ca, server_name="grpc.test", cert=client_cert) as c:
        assert c.unary().ok
    with Client(server.port, ca=ca, server_name="grpc.test") as c:
        assert c.unary(bound=5.0).code == grpc.StatusCode.UNAVAILABLE


# ---- h2raw against real HTTP/2 servers ----------------------------------------------------------

REQ = [(":method", "GET"), (":scheme", "http"), (":authority", "localhost"),
       (":path", "/index.html")]


def test_h2raw_nghttpd_basics(nghttpd):
    with H2Raw(nghttpd) as h:
        h.wait_frame(SETTINGS, 0)  # the server's SETTINGS
        h.ping(b"12345678")
        assert h.wait_ping_ack(b"12345678").flags & ACK
        sid = h.request("/index.html")
        r = h.wait_response(sid)
        assert (r.status, r.body, r.ended, r.reset) == (200, INDEX, True, None), r
        assert r.header("content-length") == str(len(INDEX))
        assert r.trailers == [("x-nghttpd-trailer", "yes")]
        r = h.wait_response(h.request("/no-such-file"))
        assert r.status == 404 and b"404" in r.body
        # 100 KB down: more than the initial window, so WINDOW_UPDATEs must flow.
        r = h.wait_response(h.request("/100k.bin"))
        assert r.status == 200 and r.body == payload(100_000)
        # 100 KB up (echoed): send_data waits for the server's window updates.
        body = payload(100_000, 3)
        r = h.wait_response(h.request("/", method="POST", body=body))
        assert r.status == 200 and r.body == body
        # Request trailers.
        r = h.wait_response(h.request("/", method="POST", body=b"abc",
                                      trailers=[("x-req-trailer", "1")]))
        assert r.status == 200 and r.body == b"abc"
        # A header block cut into HEADERS + 2 CONTINUATION frames.
        sid = h.next_stream_id()
        h.headers_raw(sid, REQ, end_stream=True, split=(2, 5))
        r = h.wait_response(sid)
        assert r.status == 200 and r.body == INDEX
        assert h.error is None and not h.closed


def test_h2raw_goaway_and_close(nghttpd):
    # A header block left open, then a PING: nghttpd must end the connection with a GOAWAY
    # PROTOCOL_ERROR whose last stream id is the last stream it processed.
    with H2Raw(nghttpd) as h:
        ok = h.wait_response(h.request("/index.html"))
        assert ok.status == 200
        sid = h.next_stream_id()
        h.headers_raw(sid, REQ, end_stream=True, end_headers=False)
        h.raw_frame(PING, 0, 0, b"abcdefgh")
        g = h.wait_goaway(timeout=3.0)
        assert (g.error_code, g.error_name) == (1, "PROTOCOL_ERROR")
        assert g.last_stream_id in (ok.stream_id, sid)
        assert h.wait_closed(3.0)
    # A frame on stream 0 that must not be there (DATA): GOAWAY PROTOCOL_ERROR too.
    with H2Raw(nghttpd) as h:
        h.send_raw(frame_bytes(0, END_STREAM, 0, b"x"))
        assert h.wait_goaway(3.0).error_name == "PROTOCOL_ERROR"


def test_h2raw_reset_streams(nghttpd):
    # The shape of a rapid-reset test: 200 streams opened and reset at once; the server lives.
    with H2Raw(nghttpd) as h:
        for _ in range(200):
            sid = h.request("/index.html")
            h.reset(sid, code=8)
        h.ping(b"after-rs")
        h.wait_ping_ack(b"after-rs", timeout=5.0)
        r = h.wait_response(h.request("/index.html"))
        assert r.status == 200 and r.body == INDEX


def test_h2raw_zero_window(nghttpd):
    # Stream window 0 and no automatic WINDOW_UPDATE: headers come, the body waits for us.
    with H2Raw(nghttpd, settings={4: 0}, auto_window=False) as h:  # 4: INITIAL_WINDOW_SIZE
        h.wait_settings_ack()
        sid = h.request("/index.html")
        h.wait_frame(HEADERS, sid)
        time.sleep(0.3)
        h.read(0.1)
        r = h.response(sid)
        assert r.status == 200 and r.body == b"" and not r.ended, r
        h.window_update(10, stream_id=sid)
        h.wait_frame(0, sid)
        h.read(0.2)
        assert h.response(sid).body == INDEX[:10]
        h.window_update(len(INDEX), stream_id=sid)
        assert h.wait_response(sid).body == INDEX


def test_h2raw_tls_alpn(procs, pki):
    ca, leaf = pki
    port = start_nghttpd(procs, tls=leaf)
    with H2Raw(port, tls=True, server_name="grpc.test", ca=ca) as h:
        assert h.alpn == "h2"
        r = h.wait_response(h.request("/index.html", authority="grpc.test"))
        assert r.status == 200 and r.body == INDEX
    # The client can offer other protocols: nghttpd only speaks h2, so none is agreed.
    with H2Raw(port, tls=True, alpn=("http/1.1",), preface=False) as h:
        assert h.alpn is None


def test_h2raw_against_grpc_server(grpc_server):
    grpc_req = [(":method", "POST"), (":scheme", "http"), (":authority", "localhost"),
                ("content-type", "application/grpc"), ("te", "trailers")]
    with H2Raw(grpc_server.port) as h:
        # An unknown method: gRPC answers 200 trailers-only with grpc-status 12.
        sid = h.request("/portico.peer.Peer/Nope", method="POST", headers=grpc_req[3:],
                        body=b"\x00\x00\x00\x00\x00")
        r = h.wait_response(sid)
        assert r.status == 200 and r.header("grpc-status") == "12", r
        # A real Unary call framed by hand: a 5-byte prefix, then the message.
        msg = pb.Request(payload_size=33, tag="raw").SerializeToString()
        sid = h.request("/portico.peer.Peer/Unary", method="POST", headers=grpc_req[3:],
                        body=b"\x00" + struct.pack(">I", len(msg)) + msg)
        r = h.wait_response(sid)
        assert r.status == 200 and r.header("content-type") == "application/grpc", r
        assert r.body[0] == 0 and struct.unpack(">I", r.body[1:5])[0] == len(r.body) - 5
        rep = pb.Reply.FromString(r.body[5:])
        assert (rep.tag, rep.payload) == ("raw", payload(33))
        assert dict(r.trailers)["grpc-status"] == "0"
        assert h.error is None


def test_h2raw_wait_is_bounded(nghttpd):
    with H2Raw(nghttpd) as h:
        t0 = time.monotonic()
        with pytest.raises(H2Timeout):
            h.wait_goaway(timeout=0.3)
        with pytest.raises(H2Timeout):
            h.wait_response(99, timeout=0.2)
        assert not h.wait_closed(0.2)
        assert time.monotonic() - t0 < 2.0


# ---- command-line HTTP/2 clients -----------------------------------------------------------------

def run(args, timeout=20):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout)


def test_curl_nghttp_h2load(nghttpd, grpc_server):
    url = f"http://127.0.0.1:{nghttpd}/index.html"
    r = run(["curl", "-sS", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}",
             "--max-time", "5", url])
    assert r.returncode == 0, r.stderr
    assert r.stdout == INDEX.decode() + "\n2 200"
    r = run([tool("nghttp"), "-t", "5", url])
    assert r.returncode == 0 and r.stdout.encode() == INDEX, r
    for port in (nghttpd, grpc_server.port):
        r = run([tool("h2load"), "-n", "100", "-c", "2", "-m", "10", "-T", "5", "-N", "5",
                 f"http://127.0.0.1:{port}/index.html"])
        assert r.returncode == 0, r.stdout + r.stderr
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded",
                      r.stdout)
        assert m, r.stdout
        if port == nghttpd:
            assert m.groups() == ("100", "100", "100", "100"), r.stdout
        else:  # gRPC answers GET with an HTTP error (405/415-like), but all 100 complete
            assert m.group(3) == "100", r.stdout


def test_generated_stubs_not_committed():
    here = Path(__file__).resolve().parent
    assert not list((here / "grpc_peer").glob("*_pb2*.py"))
    assert grpc_peer.pb.__file__.startswith(str(grpc_peer.stubs._cache_root()))
