"""gRPC-Web through Portico (issue 11 point 3, Module `enable_grpc_web`, Envoy's grpc_web
filter): a browser's gRPC-Web request (HTTP/1.1 or HTTP/2, binary or base64 "-text") reaches a
real gRPC server (grpc_peer) behind a `grpc: true` Mapping as gRPC, and its response comes back
as gRPC-Web: the data frames as they were, the trailers as the body's trailer frame (0x80), all
in base64 for -text. Raw sockets in, exact frames out; without the Module nothing is translated.
"""

import base64
import socket
import time

import pytest

from conftest import RawConn
from grpc_peer import payload, pb, start_server
from tlsenv import mapping_yaml, start_portico

MODULE = """---
apiVersion: getambassador.io/v3alpha1
kind: Module
metadata: {name: ambassador}
spec: {config: {enable_grpc_web: true}}
"""

BAD = "Bad gRPC-web request, invalid base64 data."


def grpc_mapping():
    return lambda port: mapping_yaml("grpc", f"127.0.0.1:{port}", prefix="/portico.peer.Peer/",
                                     extra="  rewrite: \"\"\n  grpc: true\n")


@pytest.fixture
def peer(processes):
    return start_server(processes)


@pytest.fixture
def web_edge(processes, tmp_path, peer):
    return start_portico(processes, tmp_path, grpc_mapping()(peer.port), MODULE)


@pytest.fixture
def plain_edge(processes, tmp_path, peer):
    return start_portico(processes, tmp_path, grpc_mapping()(peer.port))


def frame(msg, flag=0):
    return bytes([flag]) + len(msg).to_bytes(4, "big") + msg


def parse_frames(body):
    """[(flag, bytes)] of a gRPC-Web body; fails on a cut frame."""
    out, i = [], 0
    while i < len(body):
        assert i + 5 <= len(body), body[i:]
        n = int.from_bytes(body[i + 1:i + 5], "big")
        assert i + 5 + n <= len(body), (n, len(body) - i - 5)
        out.append((body[i], body[i + 5:i + 5 + n]))
        i += 5 + n
    return out


def b64_chunks_decode(text):
    """Base64 that may be separately padded pieces joined (gRPC-Web allows it)."""
    out, i = b"", 0
    while i < len(text):
        q = text[i:i + 4]
        assert len(q) == 4, text[i:]
        out += base64.b64decode(q, validate=True)
        i += 4
    return out


def replies(frames):
    return [pb.Reply.FromString(m) for f, m in frames if f == 0]


def trailer_frame(frames):
    """The trailer frame's fields (it must be the last frame, and the only one)."""
    assert frames and frames[-1][0] == 0x80, frames
    assert [f for f, _ in frames].count(0x80) == 1
    lines = frames[-1][1].decode().split("\r\n")
    assert lines[-1] == ""
    return dict(ln.split(":", 1) for ln in lines[:-1])


def web_call(edge, method, req, text=False, ctype=None, accept=None, body=None, sends=None):
    """A gRPC-Web call over raw HTTP/1.1; returns the Response (body decoded from base64 for a
    -text answer)."""
    msg = frame(req.SerializeToString()) if body is None else body
    if text and body is None:
        msg = base64.b64encode(msg)
    ctype = ctype or ("application/grpc-web-text" if text else "application/grpc-web+proto")
    headers = [("Content-Type", ctype), ("X-Grpc-Web", "1"), ("Content-Length", str(len(msg)))]
    if accept:
        headers.append(("Accept", accept))
    with RawConn(edge.http) as c:
        c.request("POST", f"/portico.peer.Peer/{method}", headers=headers, body=b"" if sends else msg)
        for piece in sends or ():
            c.send(piece)
            time.sleep(0.02)
        r = c.read_response()
    r.raw = r.body
    if "text" in (r.header("content-type") or ""):
        r.body = b64_chunks_decode(r.body)
    return r


def test_unary_binary(web_edge, peer):
    r = web_call(web_edge, "Unary", pb.Request(payload_size=100, tag="u1"))
    assert r.status == 200, r
    assert r.header("content-type") == "application/grpc-web+proto"
    assert r.header("transfer-encoding") == "chunked" and r.header("content-length") is None
    assert r.header("grpc-status") is None  # in the body's trailer frame
    frames = parse_frames(r.body)
    assert len(frames) == 2, frames
    (rep,) = replies(frames)
    assert rep.payload == payload(100, 0) and rep.tag == "u1"
    assert frames[0][1] == rep.SerializeToString()  # the upstream's message, byte for byte
    assert trailer_frame(frames)["grpc-status"] == "0"
    # the upstream saw gRPC, never gRPC-Web
    calls = peer.calls()
    assert calls and calls[0][0].endswith("Unary"), calls


def test_server_stream_frames_then_trailers(web_edge):
    r = web_call(web_edge, "ServerStream", pb.Request(replies=4, payload_size=30000))
    assert r.status == 200, r
    frames = parse_frames(r.body)
    assert [f for f, _ in frames] == [0, 0, 0, 0, 0x80], [f for f, _ in frames]
    assert [x.payload for x in replies(frames)] == [payload(30000, i) for i in range(4)]
    assert [x.seq for x in replies(frames)] == [0, 1, 2, 3]
    assert trailer_frame(frames)["grpc-status"] == "0"


def test_error_status_in_trailer_frame(web_edge):
    r = web_call(web_edge, "ServerStream",
                 pb.Request(replies=2, payload_size=10, fail_code=10, fail_message="half way"))
    assert r.status == 200, r
    frames = parse_frames(r.body)
    assert len(replies(frames)) == 2
    t = trailer_frame(frames)
    assert t["grpc-status"] == "10" and t["grpc-message"] == "half way", t


def test_error_trailers_only_keeps_status_in_head(web_edge):
    """A call that fails before any message is answered trailers-only: grpc-status stays in
    the head, with an empty body."""
    r = web_call(web_edge, "Unary", pb.Request(fail_code=5, fail_message="no such thing"))
    assert r.status == 200, r
    assert r.header("content-type") == "application/grpc-web+proto"
    assert r.header("grpc-status") == "5" and r.header("grpc-message") == "no such thing", r
    assert r.header("content-length") == "0" and r.body == b""


def test_text_both_ways(web_edge):
    req = pb.Request(payload=bytes(range(256)) * 200, payload_size=70000, replies=3)
    r = web_call(web_edge, "ServerStream", req, text=True)
    assert r.status == 200, r
    assert r.header("content-type") == "application/grpc-web-text+proto"
    assert set(r.raw) <= set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
    frames = parse_frames(r.body)
    got = replies(frames)
    assert [x.payload for x in got] == [payload(70000, i) for i in range(3)]
    assert got[0].received_bytes == 51200  # the request decoded whole
    assert trailer_frame(frames)["grpc-status"] == "0"


def test_text_request_pieces_and_separate_padding(web_edge):
    """A -text body cut anywhere across TCP sends, made of separately padded base64 pieces."""
    msg = frame(pb.Request(payload=b"abcde" * 7, tag="pieces").SerializeToString())
    text = base64.b64encode(msg[:7]) + base64.b64encode(msg[7:])  # "...=" inside
    assert b"=" in text[:-4]
    sends = [text[:1], text[1:6], text[6:11], text[11:]]
    r = web_call(web_edge, "Unary", None, text=True, body=text, sends=sends)
    assert r.status == 200, r
    frames = parse_frames(r.body)
    (rep,) = replies(frames)
    assert rep.tag == "pieces" and rep.received_bytes == 35
    assert trailer_frame(frames)["grpc-status"] == "0"


def test_binary_request_text_response_by_accept(web_edge):
    r = web_call(web_edge, "Unary", pb.Request(tag="acc"), accept="application/grpc-web-text")
    assert r.header("content-type") == "application/grpc-web-text+proto", r
    frames = parse_frames(r.body)
    assert replies(frames)[0].tag == "acc"


@pytest.mark.parametrize("bad", [b"!!!!AAAA", b"AAAAAA", b"AA=A"])
def test_bad_base64(web_edge, peer, bad):
    """Not base64 (a character outside the alphabet, a cut quantum, padding inside one): 400,
    told as gRPC's INTERNAL in a trailers-only gRPC-Web answer, as Envoy."""
    r = web_call(web_edge, "Unary", None, text=True, body=bad)
    assert r.status == 200, r
    assert r.header("content-type") == "application/grpc-web-text+proto"
    assert r.header("grpc-status") == "13", r
    assert r.header("grpc-message") == BAD
    assert r.raw == b""


def test_http2_client(web_edge):
    from h2raw import H2Raw
    body = frame(pb.Request(payload_size=5, replies=2, tag="h2").SerializeToString())
    with H2Raw(web_edge.http) as c:
        sid = c.request("/portico.peer.Peer/ServerStream", method="POST", authority="x",
                        headers=[("content-type", "application/grpc-web-text"), ("x-grpc-web", "1")],
                        body=base64.b64encode(body))
        resp = c.wait_response(sid, timeout=5)
    assert resp.status == 200 and resp.ended, resp
    assert resp.header("content-type") == "application/grpc-web-text+proto"
    assert resp.trailers is None, resp  # the trailers are in the body
    frames = parse_frames(b64_chunks_decode(resp.body))
    assert [x.payload for x in replies(frames)] == [payload(5, 0), payload(5, 1)]
    assert trailer_frame(frames)["grpc-status"] == "0"


def test_module_off_passes_as_is(plain_edge, peer):
    """Without the Module (Envoy without the filter) gRPC-Web goes to the upstream as it is:
    no translation either way."""
    r = web_call(plain_edge, "Unary", pb.Request(tag="off"))
    # grpc-core takes application/grpc-web as gRPC; its answer comes back untouched: gRPC's
    # content-type, its one message frame, and no trailer frame (an HTTP/1 client gets no
    # trailers)
    assert r.status == 200 and r.header("content-type") == "application/grpc", r
    frames = parse_frames(r.body)
    assert [f for f, _ in frames] == [0], frames
    assert replies(frames)[0].tag == "off"
