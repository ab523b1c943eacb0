"""Local replies are written whole and in bounds (issue 9, point 3): the 301 of a Host's insecure
Redirect carries the full URL however long the request target is (up to the request-head limit),
a reset reply keeps its body well-formed whatever the TLS failure reason, and a local reply to
HEAD or to an HTTP/1.0 client never sends bytes its Content-Length does not announce. Raw sockets
in, exact bytes out; the date header is the only part not compared byte for byte."""

import os
import re
import socket
import threading

from cryptography.hazmat.primitives import serialization

from conftest import RawConn
from portico_cfg import Portico, doc, dump, host, mapping
from tlsenv import make_ca

DATE_RX = rb"date: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n"
MAX_HEAD = 61440  # --max-header-bytes default: request line + headers + blank line


def read_until_quiet(sock, quiet=0.5, limit=2 * 1024 * 1024):
    """Everything <sock> sends until it closes or stays silent for <quiet> seconds."""
    sock.settimeout(quiet)
    data = b""
    while len(data) < limit:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        data += chunk
    return data


def exact(wire, head_rx, body=b""):
    """Asserts <wire> is exactly one response: the head matching <head_rx> (DATE stands for the
    date line), then <body>, and nothing else."""
    rx = re.escape(head_rx).replace(re.escape(b"DATE"), DATE_RX) + re.escape(body)
    assert re.fullmatch(rx, wire, re.S), wire[:300] + b" ... " + wire[-200:]


# HTTP/1.0 clients are served only with enable_http10 (issue 9, point 2).
HTTP10 = doc("Module", "ambassador", {"config": {"enable_http10": True}})


def redirect_proxy(processes, tmp_path, quote_backend):
    px = Portico(processes, tmp_path)
    px.write("config.yaml", dump(HTTP10, host("r", "redirect.example"),  # insecure: Redirect
                                 mapping("quote", "/", f"127.0.0.1:{quote_backend.port}")))
    return px.start()


def test_redirect_with_a_long_path_is_a_correct_301(processes, tmp_path, quote_backend):
    px = redirect_proxy(processes, tmp_path, quote_backend)
    path = b"/" + b"A" * 2000
    with RawConn(px.port) as c:
        c.send(b"GET " + path + b" HTTP/1.1\r\nHost: redirect.example\r\n\r\n")
        wire = read_until_quiet(c.sock)
    exact(wire, b"HTTP/1.1 301 Moved Permanently\r\ncontent-length: 0\r\nDATE"
                b"server: envoy\r\nlocation: https://redirect.example" + path + b"\r\n\r\n")


def test_redirect_of_an_absolute_form_target(processes, tmp_path, quote_backend):
    """The Location is https:// + authority + path and query, never the target's "http://"."""
    px = redirect_proxy(processes, tmp_path, quote_backend)
    for target, loc in ((b"http://redirect.example/a/%2e%2e/b?x=1", b"/b?x=1"),
                        (b"http://redirect.example?y", b"/?y"),
                        (b"http://redirect.example:80", b"/")):
        with RawConn(px.port) as c:
            c.send(b"GET " + target + b" HTTP/1.1\r\nHost: other.example\r\n\r\n")
            wire = read_until_quiet(c.sock)
        exact(wire, b"HTTP/1.1 301 Moved Permanently\r\ncontent-length: 0\r\nDATE"
                    b"server: envoy\r\nlocation: https://redirect.example" + loc + b"\r\n\r\n")


def test_redirect_up_to_the_request_head_limit(processes, tmp_path, quote_backend):
    """The longest target a request head can carry still gets its full Location; one byte more
    is a 400 for the request head, with nothing of the target echoed."""
    px = redirect_proxy(processes, tmp_path, quote_backend)
    fixed = len(b"GET  HTTP/1.1\r\nHost: redirect.example:80\r\n\r\n")
    path = b"/" + b"B" * (MAX_HEAD - fixed - 1)
    req = b"GET " + path + b" HTTP/1.1\r\nHost: redirect.example:80\r\n\r\n"
    assert len(req) == MAX_HEAD
    with RawConn(px.port) as c:
        c.send(req)
        wire = read_until_quiet(c.sock)
    exact(wire, b"HTTP/1.1 301 Moved Permanently\r\ncontent-length: 0\r\nDATE"
                b"server: envoy\r\nlocation: https://redirect.example" + path + b"\r\n\r\n")
    with RawConn(px.port) as c:
        c.send(b"GET " + path + b"C HTTP/1.1\r\nHost: redirect.example:80\r\n\r\n")
        wire = read_until_quiet(c.sock)
    exact(wire, b"HTTP/1.1 400 Bad Request\r\ncontent-length: 11\r\ncontent-type: text/plain\r\n"
                b"DATEserver: envoy\r\nconnection: close\r\n\r\n", b"Bad Request")


def test_redirect_to_http10_client_and_head(processes, tmp_path, quote_backend):
    px = redirect_proxy(processes, tmp_path, quote_backend)
    path = b"/" + b"D" * 3000
    with RawConn(px.port) as c:
        c.send(b"HEAD " + path + b" HTTP/1.0\r\nHost: redirect.example\r\n\r\n")
        wire = read_until_quiet(c.sock)
    exact(wire, b"HTTP/1.1 301 Moved Permanently\r\ncontent-length: 0\r\nDATE"
                b"server: envoy\r\nlocation: https://redirect.example" + path +
                b"\r\nconnection: close\r\n\r\n")


def test_local_reply_to_head_sends_no_body(processes, tmp_path):
    """503 "no healthy upstream" to HEAD: its content-length, and no body on the wire (the
    body would be read as the next response on a keep-alive connection)."""
    px = Portico(processes, tmp_path)
    px.write("config.yaml", dump(mapping("empty", "/", "nowhere-service")))
    px.start()
    with RawConn(px.port) as c:
        c.send(b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\nGET /y HTTP/1.1\r\nHost: a\r\n\r\n")
        wire = read_until_quiet(c.sock)
    one = (b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 19\r\ncontent-type: text/plain"
           b"\r\nDATEserver: envoy\r\n\r\n")
    exact(wire, one + one, b"no healthy upstream")


def _bad_cert_der():
    """A certificate whose issuer name has a broken DER length deep inside: OpenSSL's client
    queues nine errors (ASN.1's nested errors, then SSL's) when it parses it."""
    der = bytearray(make_ca("long-reason").cert.public_bytes(serialization.Encoding.DER))
    i = der.find(bytes([0x06, 0x03, 0x55, 0x04, 0x03]))  # the OID of the issuer's CN
    der[i + 1] ^= 0xFF
    return bytes(der)


class RawTLSServer:
    """Answers a TLS ClientHello with a TLS 1.2 ServerHello (ECDHE-RSA-AES128-GCM-SHA256,
    renegotiation_info) and a Certificate message holding <cert>, then waits for the client to
    give up. One thread; every socket has a timeout."""

    def __init__(self, cert):
        self.cert = cert
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(5)
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while True:
                conn, _ = self.sock.accept()
                with conn:
                    conn.settimeout(5)
                    self._serve(conn)
        except OSError:
            return

    def _serve(self, conn):
        def exact_bytes(n):
            b = b""
            while len(b) < n:
                chunk = conn.recv(n - len(b))
                if not chunk:
                    raise OSError("closed")
                b += chunk
            return b
        head = exact_bytes(5)
        exact_bytes(int.from_bytes(head[3:5], "big"))  # the ClientHello
        ext = b"\xff\x01\x00\x01\x00"  # renegotiation_info, empty
        hello = (b"\x03\x03" + os.urandom(32) + b"\x00" + b"\xc0\x2f" + b"\x00" +
                 len(ext).to_bytes(2, "big") + ext)
        certs = len(self.cert).to_bytes(3, "big") + self.cert
        certmsg = len(certs).to_bytes(3, "big") + certs
        msgs = (b"\x02" + len(hello).to_bytes(3, "big") + hello +
                b"\x0b" + len(certmsg).to_bytes(3, "big") + certmsg)
        conn.sendall(b"\x16\x03\x03" + len(msgs).to_bytes(2, "big") + msgs)
        try:
            conn.recv(4096)  # the client's alert, or its close
        except OSError:
            pass

    def close(self):
        self.sock.close()


def test_tls_failure_with_a_long_reason_keeps_the_body_well_formed(processes, tmp_path):
    up = RawTLSServer(_bad_cert_der())
    try:
        px = Portico(processes, tmp_path)
        px.write("config.yaml", dump(mapping("tls", "/", f"https://127.0.0.1:{up.port}")))
        px.start()
        with RawConn(px.port) as c:
            c.send(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
            r = c.read_response()
            tail = read_until_quiet(c.sock, 0.3)
    finally:
        up.close()
    prefix = (b"upstream connect error or disconnect/reset before headers. reset reason: remote "
              b"connection failure, transport failure reason: TLS_error:")
    assert r.status == 503, r
    assert int(r.header("content-length")) == len(r.body)
    assert tail == b""  # nothing beyond what the content-length announced
    assert r.body.startswith(prefix), r.body
    assert r.body.endswith(b":TLS_error_end"), r.body
    entries = r.body[len(prefix):-len(b":TLS_error_end")].split(b"|")
    assert entries[0] == b"" and len(entries) >= 6, r.body  # several whole errors
    for e in entries[1:]:
        assert re.fullmatch(rb"\d+:[a-zA-Z0-9 ]+:OPENSSL_internal:[A-Z0-9_]+", e), (e, r.body)
    assert b"HEADER_TOO_LONG" in r.body and b"NESTED_ASN1_ERROR" in r.body
