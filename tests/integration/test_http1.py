"""HTTP/1.1 proxying through the real build/portico binary, checked with real clients
(requests, curl, raw sockets) against build/portico-quote.

Expected behaviour is Emissary on Envoy (DESIGN.md; reference/envoy-compat.md section 2).
Malformed input and request smuggling are in test_http1_parser.py, the access log in
test_http1_accesslog.py.
"""

import concurrent.futures
import json
import random
import re
import signal
import socket
import struct
import subprocess
import time

import pytest
import requests

from conftest import RawConn, free_port, start_quote
from portico import (REFUSED_BODY, TERMINATION_BODY, UUID_RX, ClosingBackend,
                     StaleKeepAliveBackend, basic_config, docs, echo, echo_headers, endpoints_yaml,
                     listener_yaml, mapping_yaml, pattern, service_yaml, start_portico,
                     wait_access_lines)


@pytest.fixture
def proxy(processes, tmp_path, quote_backend):
    """Portico on a free port: Mapping /backend/ -> the quote backend (rewrite "/")."""
    p = start_portico(processes, tmp_path, basic_config(quote_backend.port))
    p.backend = quote_backend
    return p


MODULE_HTTP10 = """apiVersion: getambassador.io/v3alpha1
kind: Module
metadata: {name: ambassador}
spec: {config: {enable_http10: true}}
"""


@pytest.fixture
def proxy10(processes, tmp_path, quote_backend):
    """As <proxy>, with the ambassador Module's enable_http10: true (HTTP/1.0 gets 426 without)."""
    p = start_portico(processes, tmp_path, docs(basic_config(quote_backend.port), MODULE_HTTP10))
    p.backend = quote_backend
    return p


# ---------------------------------------------------------------------------------------------
# Proxying and connection handling

def test_get_returns_the_quote(proxy):
    r = requests.get(proxy.url("/backend/"), timeout=5)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert list(doc) == ["server", "quote", "time"]
    assert doc["server"] == "quote-test"


def test_curl_gets_the_quote(proxy):
    out = subprocess.run(["curl", "-sS", "--max-time", "5", proxy.url("/backend/")],
                         capture_output=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["server"] == "quote-test"


def test_keep_alive_100_requests_on_one_connection(proxy):
    with RawConn(proxy.port) as c:
        for i in range(100):
            c.request("GET", f"/backend/echo/{i}")
            r = c.read_response()
            assert r.status == 200
            assert r.json()["path"] == f"/echo/{i}"
            assert (r.header("connection") or "").lower() != "close"


def test_pipelined_requests_answered_in_order(proxy):
    with RawConn(proxy.port) as c:
        c.send(b"GET /backend/delay/200 HTTP/1.1\r\nHost: h\r\n\r\n"
               b"GET /backend/status/201 HTTP/1.1\r\nHost: h\r\n\r\n"
               b"GET /backend/echo/3 HTTP/1.1\r\nHost: h\r\n\r\n")
        first = c.read_response()
        assert first.status == 200 and "quote" in first.json()
        assert c.read_response().status == 201
        assert c.read_response().json()["path"] == "/echo/3"


def test_http10_request_is_answered_and_closed(proxy10):
    with RawConn(proxy10.port) as c:
        c.send(b"GET /backend/ HTTP/1.0\r\nHost: h\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.json()["server"] == "quote-test"
        assert c.closed_by_peer()


def test_http10_keep_alive_keeps_the_connection(proxy10):
    with RawConn(proxy10.port) as c:
        for i in range(3):
            c.send(f"GET /backend/echo/{i} HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n"
                   .encode())
            r = c.read_response()
            assert r.status == 200
            assert r.json()["path"] == f"/echo/{i}"
        assert not c.closed_by_peer(timeout=0.3)


def test_connection_close_is_honoured(proxy):
    with RawConn(proxy.port) as c:
        c.request("GET", "/backend/", headers=[("Connection", "close")])
        r = c.read_response()
        assert r.status == 200
        assert r.header("connection") == "close"
        assert c.closed_by_peer()


def test_backend_closing_after_each_response(processes, tmp_path):
    """A pooled upstream connection that the backend closed must not be reused (no 503s)."""
    backend = start_quote(processes, "--close")
    p = start_portico(processes, tmp_path, basic_config(backend.port))
    with RawConn(p.port) as c:
        for i in range(20):
            c.request("GET", f"/backend/echo/{i}")
            r = c.read_response()
            assert r.status == 200, r
            assert r.json()["path"] == f"/echo/{i}"


@pytest.mark.parametrize("code", [201, 404, 500, 503])
def test_upstream_status_and_body_passed_through(proxy, code):
    r = requests.get(proxy.url(f"/backend/status/{code}"), timeout=5)
    assert r.status_code == code
    assert r.json() == {"server": "quote-test", "status": code}


# ---------------------------------------------------------------------------------------------
# Bodies, both ways

def test_post_1mib_content_length_body(proxy):
    body = random.Random(1).randbytes(1024 * 1024)
    r = requests.post(proxy.url("/backend/echo"), data=body, timeout=15)
    assert r.status_code == 200
    doc = r.json()
    assert doc["method"] == "POST"
    assert doc["body_length"] == 1024 * 1024
    assert doc["body_prefix"].encode("latin-1") == body[:64]


def test_chunked_request_body_in_several_chunks(proxy):
    with RawConn(proxy.port) as c:
        c.send(b"POST /backend/echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
        for part in (b"5\r\nhello\r\n", b"1\r\n \r\n", b"5;ext=1\r\nworld\r\n", b"0\r\n\r\n"):
            time.sleep(0.05)
            c.send(part)
        r = c.read_response()
        assert r.status == 200
        doc = r.json()
        assert doc["body_length"] == 11
        assert doc["body_prefix"] == "hello world"
        c.request("GET", "/backend/status/201")  # still in sync afterwards
        assert c.read_response().status == 201


def test_large_response_arrives_intact(proxy):
    r = requests.get(proxy.url("/backend/size/5000000"), timeout=30)
    assert r.status_code == 200
    assert r.headers["content-length"] == "5000000"
    assert len(r.content) == 5000000
    assert r.content == pattern(5000000)


def test_chunked_response_arrives_intact(proxy):
    with RawConn(proxy.port) as c:
        c.request("GET", "/backend/chunked/100000")
        r = c.read_response()
        assert r.status == 200
        assert len(r.body) == 100000
        assert r.body == pattern(100000)
        c.request("GET", "/backend/status/202")
        assert c.read_response().status == 202


def test_close_delimited_upstream_response(processes, tmp_path):
    """An HTTP/1.1 response without content-length or chunked ends when the backend closes."""
    body = pattern(30000)

    class CloseDelimited(ClosingBackend):
        def serve(self, conn):
            super().serve(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n" + body)

    backend = CloseDelimited()
    try:
        p = start_portico(processes, tmp_path, basic_config(backend.port))
        with RawConn(p.port) as c:
            c.request("GET", "/backend/x")
            r = c.read_response()
            assert r.status == 200
            assert r.body == body
    finally:
        backend.close()


def test_chunked_upstream_response_to_http10_client(proxy10):
    with RawConn(proxy10.port) as c:
        c.send(b"GET /backend/chunked/1000 HTTP/1.0\r\nHost: h\r\n\r\n")
        r = c.read_response()
        assert r.status == 200
        assert r.header("transfer-encoding") is None  # HTTP/1.0 has no chunked coding
        assert r.body == pattern(1000)


def test_head_has_headers_and_no_body(proxy):
    with RawConn(proxy.port) as c:
        c.request("HEAD", "/backend/size/5000")
        r = c.read_response(head=True)
        assert r.status == 200
        assert r.header("content-length") == "5000"
        c.request("HEAD", "/backend/chunked/5000")
        assert c.read_response(head=True).status == 200
        # had a body followed, this would be parsed as the next response and fail
        c.request("GET", "/backend/status/201")
        assert c.read_response().status == 201


@pytest.mark.parametrize("code", [204, 304])
def test_no_body_statuses_keep_the_connection_usable(proxy, code):
    with RawConn(proxy.port) as c:
        c.request("GET", f"/backend/status/{code}")
        r = c.read_response()
        assert r.status == code
        assert r.body == b""
        c.request("GET", "/backend/status/201")
        assert c.read_response().status == 201


def test_expect_100_continue(proxy):
    with RawConn(proxy.port, timeout=3) as c:
        c.send(b"PUT /backend/echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\n"
               b"Expect: 100-continue\r\n\r\n")
        interim = c.read_response()  # before any body byte is sent
        assert (interim.version, interim.status) == ("HTTP/1.1", 100)
        c.send(b"data")
        r = c.read_response()
        assert r.status == 200
        assert r.json()["body_length"] == 4


# ---------------------------------------------------------------------------------------------
# Headers

def test_xff_is_the_client_address(proxy):
    assert echo_headers(echo(proxy), "x-forwarded-for") == ["127.0.0.1"]


def test_xff_appends_the_client_address(proxy):
    doc = echo(proxy, headers={"X-Forwarded-For": "1.2.3.4"})
    assert echo_headers(doc, "x-forwarded-for") == ["1.2.3.4,127.0.0.1"]


def test_xfp_is_http(proxy):
    assert echo_headers(echo(proxy), "x-forwarded-proto") == ["http"]


def test_request_id_generated_when_absent(proxy):
    ids = [echo_headers(echo(proxy), "x-request-id") for _ in range(3)]
    for one in ids:
        assert len(one) == 1 and UUID_RX.match(one[0]), one
    assert len({one[0] for one in ids}) == 3


def test_request_id_kept_when_present(proxy):
    doc = echo(proxy, headers={"X-Request-Id": "my-request-id-42"})
    assert echo_headers(doc, "x-request-id") == ["my-request-id-42"]


def test_original_path_set_when_rewritten(proxy):
    doc = echo(proxy, "/backend/echo/x?a=1")
    assert doc["path"] == "/echo/x?a=1"
    assert echo_headers(doc, "x-envoy-original-path") == ["/backend/echo/x?a=1"]


def test_original_path_absent_without_rewrite(processes, tmp_path):
    backend = start_quote(processes, "--echo")
    p = start_portico(processes, tmp_path, docs(
        listener_yaml(), mapping_yaml("raw", f"127.0.0.1:{backend.port}", prefix="/raw/",
                                      rewrite="")))
    doc = echo(p, "/raw/x?a=1")
    assert doc["path"] == "/raw/x?a=1"
    assert echo_headers(doc, "x-envoy-original-path") == []


def test_hop_by_hop_headers_not_forwarded(proxy):
    with RawConn(proxy.port) as c:
        c.request("GET", "/backend/echo", headers=[
            ("Connection", "keep-alive"), ("Keep-Alive", "timeout=5"), ("TE", "gzip"),
            ("Upgrade", "foo/1"), ("Proxy-Connection", "keep-alive"), ("X-Keep", "yes")])
        doc = c.read_response().json()
    names = {k.lower() for k, _ in doc["headers"]}
    assert not names & {"keep-alive", "te", "upgrade", "proxy-connection"}, doc["headers"]
    assert "keep-alive" not in ",".join(echo_headers(doc, "connection")).lower()
    assert echo_headers(doc, "x-keep") == ["yes"]


def test_headers_named_by_connection_not_forwarded(proxy):
    with RawConn(proxy.port) as c:
        c.request("GET", "/backend/echo", headers=[("Connection", "X-Hop, keep-alive"),
                                                   ("X-Hop", "1"), ("X-Keep", "yes")])
        doc = c.read_response().json()
    assert echo_headers(doc, "x-hop") == [], doc["headers"]
    assert echo_headers(doc, "x-keep") == ["yes"]


def test_host_passed_through(proxy):
    with RawConn(proxy.port) as c:
        c.request("GET", "/backend/echo", headers=[("Host", "example.test:8443")])
        doc = c.read_response().json()
    assert echo_headers(doc, "host") == ["example.test:8443"]


def test_response_has_server_envoy_and_upstream_service_time(proxy):
    r = requests.get(proxy.url("/backend/"), timeout=5)
    assert r.headers["server"] == "envoy"
    assert re.fullmatch(r"\d+", r.headers["x-envoy-upstream-service-time"])


def test_expected_rq_timeout_sent_upstream(proxy):
    assert echo_headers(echo(proxy), "x-envoy-expected-rq-timeout-ms") == ["3000"]


@pytest.fixture
def header_proxy(processes, tmp_path, quote_backend):
    return start_portico(processes, tmp_path, basic_config(
        quote_backend.port,
        add_request_headers={"x-added": "hello", "x-added-obj": {"value": "v2"}},
        remove_request_headers=["x-secret"],
        add_response_headers={"x-resp-added": "yes"},
        remove_response_headers=["content-type"],
        host_rewrite="rewritten.example"))


def test_add_request_headers(header_proxy):
    doc = echo(header_proxy)
    assert echo_headers(doc, "x-added") == ["hello"]
    assert echo_headers(doc, "x-added-obj") == ["v2"]


def test_remove_request_headers(header_proxy):
    doc = echo(header_proxy, headers={"X-Secret": "s3cr3t", "X-Other": "o"})
    assert echo_headers(doc, "x-secret") == []
    assert echo_headers(doc, "x-other") == ["o"]


def test_add_response_headers(header_proxy):
    r = requests.get(header_proxy.url("/backend/"), timeout=5)
    assert r.headers.get("x-resp-added") == "yes"


def test_remove_response_headers(header_proxy):
    r = requests.get(header_proxy.url("/backend/"), timeout=5)
    assert r.status_code == 200
    assert "content-type" not in r.headers
    assert json.loads(r.content)["server"] == "quote-test"


def test_host_rewrite(header_proxy):
    doc = echo(header_proxy, headers={"Host": "original.example"})
    assert echo_headers(doc, "host") == ["rewritten.example"]


# ---------------------------------------------------------------------------------------------
# Local replies, exactly as Envoy writes them

def test_no_route_is_404_with_empty_body(proxy):
    with RawConn(proxy.port) as c:
        c.request("GET", "/nowhere")
        r = c.read_response()
        assert r.status == 404
        assert r.header("content-length") == "0"
        assert r.body == b""
        assert r.header("server") == "envoy"
        c.request("GET", "/backend/status/201")  # the connection stays usable
        assert c.read_response().status == 201


def test_connection_refused_is_503_with_envoy_text(processes, tmp_path):
    p = start_portico(processes, tmp_path, basic_config(free_port()))
    r = requests.get(p.url("/backend/"), timeout=5)
    assert r.status_code == 503
    assert r.content == REFUSED_BODY
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["content-length"] == str(len(REFUSED_BODY))


def test_upstream_closes_without_answer_is_503_connection_termination(processes, tmp_path):
    backend = ClosingBackend()
    try:
        p = start_portico(processes, tmp_path, basic_config(backend.port))
        r = requests.get(p.url("/backend/"), timeout=5)
        assert r.status_code == 503
        assert r.content == TERMINATION_BODY
        assert r.headers["content-type"] == "text/plain"
    finally:
        backend.close()


def test_pooled_connection_closed_by_backend_is_retried_for_get(processes, tmp_path):
    """The backend closes a kept-alive connection just as Portico reuses it (no byte of a
    response): a GET goes again on a new connection and the client never sees the race."""
    backend = StaleKeepAliveBackend()
    try:
        p = start_portico(processes, tmp_path, basic_config(backend.port), workers=1)
        for i in range(3):
            r = requests.get(p.url(f"/backend/{i}"), timeout=5)
            assert (r.status_code, r.content) == (200, b"ok")
        # connection 1 answered request 0 and dropped request 1, which connection 2 answered;
        # connection 2 dropped request 2, which connection 3 answered
        assert backend.connections == 3 and backend.heads == 5
    finally:
        backend.close()


def test_pooled_connection_closed_by_backend_is_not_retried_for_post(processes, tmp_path):
    """A POST is not repeated (the backend may have acted on it): Envoy's 503 as before."""
    backend = StaleKeepAliveBackend()
    try:
        p = start_portico(processes, tmp_path, basic_config(backend.port), workers=1)
        assert requests.get(p.url("/backend/"), timeout=5).status_code == 200
        r = requests.post(p.url("/backend/"), data=b"x" * 10, timeout=5)
        assert (r.status_code, r.content) == (503, TERMINATION_BODY)
        assert backend.connections == 1 and backend.heads == 2
    finally:
        backend.close()


def test_route_timeout_is_504(processes, tmp_path, quote_backend):
    p = start_portico(processes, tmp_path, basic_config(quote_backend.port, timeout_ms=500))
    t0 = time.monotonic()
    r = requests.get(p.url("/backend/delay/5000"), timeout=10)
    elapsed = time.monotonic() - t0
    assert r.status_code == 504
    assert r.content == b"upstream request timeout"
    assert r.headers["content-type"] == "text/plain"
    assert 0.45 <= elapsed < 1.5, elapsed


def test_idle_timeout_before_the_response_is_504_stream_timeout(processes, tmp_path, quote_backend):
    """Mapping idle_timeout_ms (Envoy's route idle_timeout): nothing moved for that long."""
    p = start_portico(processes, tmp_path,
                      basic_config(quote_backend.port, timeout_ms=5000, idle_timeout_ms=300))
    t0 = time.monotonic()
    r = requests.get(p.url("/backend/delay/3000"), timeout=10)
    assert (r.status_code, r.content) == (504, b"stream timeout")
    assert 0.25 <= time.monotonic() - t0 < 2
    assert " 504 SI " in wait_access_lines(p, 1)[0][0]
    assert requests.get(p.url("/backend/delay/100"), timeout=10).status_code == 200  # active: fine


def test_idle_timeout_while_the_request_body_stalls_is_408(processes, tmp_path, quote_backend):
    p = start_portico(processes, tmp_path,
                      basic_config(quote_backend.port, timeout_ms=5000, idle_timeout_ms=300))
    with RawConn(p.port) as c:
        c.send(b"POST /backend/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345")
        r = c.read_response()
        assert (r.status, r.body) == (408, b"stream timeout")


def test_idle_timeout_after_the_response_head_closes(processes, tmp_path):
    """A response that stops half-way is cut once it stays idle: the client sees the close."""
    class Stalling(ClosingBackend):
        def serve(self, conn):
            super().serve(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
            time.sleep(3)

    backend = Stalling()
    try:
        p = start_portico(processes, tmp_path, basic_config(backend.port, idle_timeout_ms=300))
        s = socket.create_connection(("127.0.0.1", p.port), timeout=5)
        s.sendall(b"GET /backend/ HTTP/1.1\r\nHost: x\r\n\r\n")
        data, t0 = b"", time.monotonic()
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"partial")
        assert time.monotonic() - t0 < 2
        assert " 200 SI " in wait_access_lines(p, 1)[0][0]
    finally:
        backend.close()


def test_service_without_endpoints_is_503_no_healthy_upstream(processes, tmp_path):
    p = start_portico(processes, tmp_path, docs(
        listener_yaml(), service_yaml("empty", port=80, target=8080),
        endpoints_yaml("empty", []), mapping_yaml("quote", "empty")))
    t0 = time.monotonic()
    r = requests.get(p.url("/backend/"), timeout=10)
    assert r.status_code == 503
    assert r.content == b"no healthy upstream"
    assert r.headers["content-type"] == "text/plain"
    assert time.monotonic() - t0 < 1.0


# ---------------------------------------------------------------------------------------------
# Robustness

def test_200_concurrent_connections_20_requests_each(processes, tmp_path):
    backend = start_quote(processes, threads=2)
    p = start_portico(processes, tmp_path, basic_config(backend.port))

    def client(i):
        codes = []
        with RawConn(p.port, timeout=20) as c:
            for j in range(20):
                c.request("GET", f"/backend/echo/{i}/{j}")
                r = c.read_response()
                codes.append((r.status, r.json()["path"] == f"/echo/{i}/{j}"))
        return codes

    with concurrent.futures.ThreadPoolExecutor(max_workers=200) as pool:
        results = list(pool.map(client, range(200), timeout=60))
    flat = [x for codes in results for x in codes]
    assert len(flat) == 4000
    assert all(x == (200, True) for x in flat), [x for x in flat if x != (200, True)][:5]


def test_client_disconnect_mid_response_does_not_hurt(proxy):
    for rst in (False, True, False, True):
        c = RawConn(proxy.port)
        c.request("GET", "/backend/size/5000000")
        c.sock.recv(65536)
        if rst:
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
    time.sleep(0.2)
    for _ in range(5):
        r = requests.get(proxy.url("/backend/size/100000"), timeout=5)
        assert r.status_code == 200 and r.content == pattern(100000)
    assert proxy.proc.running


def test_slowloris_closed_after_header_timeout(processes, tmp_path, quote_backend):
    p = start_portico(processes, tmp_path, basic_config(quote_backend.port),
                      "--header-timeout-ms", "500")
    with RawConn(p.port, timeout=5) as c:
        t0 = time.monotonic()
        for b in b"GET /b":
            c.send(bytes([b]))
            time.sleep(0.05)
        c.sock.settimeout(3)
        try:
            data = c.recv_all()
        except ConnectionResetError:
            data = b""
        elapsed = time.monotonic() - t0
    assert data == b"" or data.startswith(b"HTTP/1.1 408"), data[:100]
    assert 0.45 <= elapsed < 1.5, elapsed
    assert requests.get(p.url("/backend/"), timeout=5).status_code == 200


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_garbage_is_400_or_close(proxy, seed):
    data = random.Random(seed).randbytes(4096)
    with RawConn(proxy.port, timeout=3) as c:
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            got = c.recv_all()
        except ConnectionResetError:
            got = b""
    assert got == b"" or got.startswith(b"HTTP/1.1 400 "), got[:100]
    assert requests.get(proxy.url("/backend/"), timeout=5).status_code == 200


# ---------------------------------------------------------------------------------------------
# Lifecycle (every test's teardown depends on it)

def test_sigterm_on_idle_proxy_exits_promptly(proxy):
    popen = proxy.proc.popen
    t0 = time.monotonic()
    popen.send_signal(signal.SIGTERM)
    try:
        rc = popen.wait(2)
    except subprocess.TimeoutExpired:
        rc = None
    assert rc == 0, f"still running {time.monotonic() - t0:.1f}s after SIGTERM with nothing in flight"
