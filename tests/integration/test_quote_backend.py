"""Black-box tests of build/portico-quote, the example backend that proxy tests and benchmarks
stand on: if it lies about what it received, every proxy test built on /echo lies too."""

import json
import random
import re
import signal
import socket
import threading
import time

import pytest
import requests

from conftest import RawConn, binary, free_port, start_quote

TIME_RX = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$")


def get(backend, path="/", **kw):
    return requests.get(backend.url + path, timeout=5, **kw)


# ---- the quote ----

def test_quote_json_shape(quote_backend):
    r = get(quote_backend)
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert list(doc) == ["server", "quote", "time"]
    assert doc["server"] == "quote-test"
    assert len(doc["quote"]) > 10
    assert TIME_RX.match(doc["time"]), doc["time"]
    assert 70 <= len(r.content) <= 200
    assert b" " not in r.content.split(b'"quote"')[0]  # compact JSON
    assert "date" in r.headers


def test_quotes_rotate_and_any_path_answers(quote_backend):
    quotes = {get(quote_backend, f"/any/path/{i}?q={i}").json()["quote"] for i in range(25)}
    assert len(quotes) >= 10


def test_default_name_is_host_name(processes):
    backend = start_quote(processes, name=None)
    assert get(backend).json()["server"] == socket.gethostname()


def test_name_is_json_escaped(processes):
    backend = start_quote(processes, name='we"ird\\name')
    assert get(backend).json()["server"] == 'we"ird\\name'


# ---- /echo ----

def test_echo_describes_the_request(quote_backend):
    r = requests.post(quote_backend.url + "/echo/sub?x=1&y=2", data=b"hello world",
                      headers={"X-Test": "abc", "X-Empty": ""}, timeout=5)
    assert r.status_code == 200
    doc = r.json()
    assert doc["server"] == "quote-test"
    assert doc["method"] == "POST"
    assert doc["path"] == "/echo/sub?x=1&y=2"
    assert doc["version"] == "HTTP/1.1"
    assert doc["client"].startswith("127.0.0.1:")
    assert ["X-Test", "abc"] in doc["headers"]
    assert ["X-Empty", ""] in doc["headers"]
    assert ["Content-Length", "11"] in doc["headers"]
    assert doc["headers"][0][0] == "Host"
    assert doc["body_length"] == 11
    assert doc["body_chunked"] is False
    assert doc["body_prefix"] == "hello world"


def test_echo_keeps_header_order_duplicates_and_odd_bytes(quote_backend):
    with RawConn(quote_backend.port) as c:
        c.send(b"GET /echo HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-a: 2\r\nX-Bin: caf\xe9 \"q\"\t\r\n\r\n")
        doc = c.read_response().json()
    assert doc["headers"] == [["Host", "h"], ["X-A", "1"], ["x-a", "2"], ["X-Bin", 'caf\u00e9 "q"']]
    assert doc["path"] == "/echo"


def test_echo_body_prefix_is_64_bytes(quote_backend):
    body = bytes(range(256)) * 40
    r = requests.put(quote_backend.url + "/echo", data=body, timeout=5)
    doc = r.json()
    assert doc["method"] == "PUT"
    assert doc["body_length"] == len(body)
    assert doc["body_prefix"].encode("latin-1") == body[:64]


def test_echo_chunked_request_body(quote_backend):
    with RawConn(quote_backend.port) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"5;ext=1\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: t\r\n\r\n")
        doc = c.read_response().json()
        assert doc["body_length"] == 11
        assert doc["body_chunked"] is True
        assert doc["body_prefix"] == "hello world"
        # the connection is still usable after a chunked body
        c.request("GET", "/status/201")
        assert c.read_response().status == 201


def test_large_request_body_is_counted(quote_backend):
    body = b"x" * (8 * 1024 * 1024 + 3)
    r = requests.post(quote_backend.url + "/echo", data=body, timeout=30)
    assert r.json()["body_length"] == len(body)


def test_echo_flag_echoes_every_path(processes):
    backend = start_quote(processes, "--echo")
    doc = get(backend, "/backend/x?y").json()
    assert doc["path"] == "/backend/x?y"


def test_echo_absolute_form_target(quote_backend):
    with RawConn(quote_backend.port) as c:
        c.send(b"GET http://example.com/echo/x HTTP/1.1\r\nHost: example.com\r\n\r\n")
        doc = c.read_response().json()
    assert doc["path"] == "http://example.com/echo/x"


# ---- /status, /delay, /size, /chunked ----

@pytest.mark.parametrize("code", [200, 201, 302, 404, 418, 500, 503, 599])
def test_status(quote_backend, code):
    r = get(quote_backend, f"/status/{code}", allow_redirects=False)
    assert r.status_code == code
    assert r.json() == {"server": "quote-test", "status": code}


def test_status_without_body(quote_backend):
    with RawConn(quote_backend.port) as c:
        for code in (204, 304):
            c.request("GET", f"/status/{code}")
            r = c.read_response()
            assert r.status == code
            assert r.header("content-length") is None
        c.request("GET", "/status/200/trailing/part")
        assert c.read_response().status == 200


@pytest.mark.parametrize("path", ["/status/abc", "/status/99", "/status/600", "/status/",
                                  "/delay/x", "/size/-1", "/size/99999999999999999999",
                                  "/chunked/1x"])
def test_bad_numbers_are_400(quote_backend, path):
    with RawConn(quote_backend.port) as c:
        c.request("GET", path)
        r = c.read_response()
        assert r.status == 400
        assert r.header("connection") == "close"
        assert c.closed_by_peer()


def test_delay_does_not_block_the_loop(quote_backend):
    results = {}

    def slow():
        t0 = time.monotonic()
        results["slow"] = (get(quote_backend, "/delay/600").status_code, time.monotonic() - t0)

    th = threading.Thread(target=slow)
    th.start()
    time.sleep(0.1)
    t0 = time.monotonic()
    assert get(quote_backend).status_code == 200
    fast = time.monotonic() - t0
    th.join()
    assert results["slow"][0] == 200
    assert 0.55 <= results["slow"][1] < 3.0
    assert fast < 0.3


def test_delay_zero(quote_backend):
    assert get(quote_backend, "/delay/0").status_code == 200


@pytest.mark.parametrize("n", [0, 1, 100, 70000, 3 * 1024 * 1024 + 7])
def test_size(quote_backend, n):
    r = get(quote_backend, f"/size/{n}")
    assert r.status_code == 200
    assert r.headers["content-length"] == str(n)
    assert len(r.content) == n
    assert r.content == (b"abcdefghijklmnopqrstuvwxyz" * (n // 26 + 1))[:n]


@pytest.mark.parametrize("n", [0, 1, 10, 1000, 200000])
def test_chunked_response(quote_backend, n):
    with RawConn(quote_backend.port) as c:
        c.request("GET", f"/chunked/{n}")
        r = c.read_response()
        assert r.header("transfer-encoding") == "chunked"
        assert r.header("content-length") is None
        assert len(r.body) == n
        assert r.body == (b"abcdefghijklmnopqrstuvwxyz" * (n // 26 + 1))[:n]
        if n >= 4:
            assert len(r.chunks) >= 4
        c.request("GET", "/status/202")
        assert c.read_response().status == 202


def test_chunked_to_http10_uses_content_length(quote_backend):
    with RawConn(quote_backend.port) as c:
        c.send(b"GET /chunked/100 HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.header("content-length") == "100"
        assert r.header("transfer-encoding") is None
        assert len(r.body) == 100


# ---- HTTP/1.1 connection handling ----

def test_head_has_length_but_no_body(quote_backend):
    with RawConn(quote_backend.port) as c:
        for path in ("/", "/size/5000", "/echo", "/chunked/50", "/status/503"):
            c.request("HEAD", path)
            r = c.read_response(head=True)
            assert r.status in (200, 503)
            assert r.header("content-length") or r.header("transfer-encoding") == "chunked"
        # if a body had been sent, this response would not parse
        c.request("GET", "/status/201")
        assert c.read_response().status == 201


def test_keep_alive_many_requests(quote_backend):
    with RawConn(quote_backend.port) as c:
        for i in range(100):
            c.request("GET", f"/echo/{i}")
            r = c.read_response()
            assert r.json()["path"] == f"/echo/{i}"
            assert r.header("connection") is None


def test_pipelining_keeps_order(quote_backend):
    with RawConn(quote_backend.port) as c:
        req = b"".join(f"GET {p} HTTP/1.1\r\nHost: h\r\n\r\n".encode()
                       for p in ("/delay/150", "/status/201", "/echo/3", "/size/100000",
                                 "/status/202"))
        c.send(req + b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc")
        assert c.read_response().json()["quote"]
        assert c.read_response().status == 201
        assert c.read_response().json()["path"] == "/echo/3"
        assert len(c.read_response().body) == 100000
        assert c.read_response().status == 202
        assert c.read_response().json()["body_length"] == 3


def test_pipelining_many_small_requests_in_one_write(quote_backend):
    n = 2000
    with RawConn(quote_backend.port, timeout=10) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n" * n)
        for _ in range(n):
            assert c.read_response().status == 200


def test_request_split_byte_by_byte(quote_backend):
    with RawConn(quote_backend.port) as c:
        req = (b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
               b"3\r\nabc\r\n0\r\n\r\n")
        for b in req:
            c.send(bytes([b]))
            time.sleep(0.001)
        doc = c.read_response().json()
        assert doc["body_length"] == 3


def test_expect_100_continue(quote_backend):
    with RawConn(quote_backend.port) as c:
        c.send(b"PUT /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response()
        assert r.status == 100
        c.send(b"data")
        r = c.read_response()
        assert r.status == 200
        assert r.json()["body_length"] == 4


def test_expect_other_is_417(quote_backend):
    with RawConn(quote_backend.port) as c:
        c.send(b"PUT / HTTP/1.1\r\nHost: h\r\nExpect: something\r\n\r\n")
        assert c.read_response().status == 417


def test_connection_close(quote_backend):
    with RawConn(quote_backend.port) as c:
        c.request("GET", "/", headers=[("Connection", "close")])
        r = c.read_response()
        assert r.status == 200
        assert r.header("connection") == "close"
        assert c.closed_by_peer()


def test_http10(quote_backend):
    with RawConn(quote_backend.port) as c:
        c.send(b"GET / HTTP/1.0\r\n\r\n")
        r = c.read_response()
        assert r.status == 200 and r.header("connection") == "close"
        assert c.closed_by_peer()
    with RawConn(quote_backend.port) as c:
        for _ in range(3):
            c.send(b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
            r = c.read_response()
            assert r.header("connection") == "keep-alive"


def test_close_flag(processes):
    backend = start_quote(processes, "--close")
    with RawConn(backend.port) as c:
        c.request("GET", "/")
        r = c.read_response()
        assert r.status == 200 and r.header("connection") == "close"
        assert c.closed_by_peer()
    # the second of two pipelined requests is not answered
    with RawConn(backend.port) as c:
        c.send(b"GET /status/201 HTTP/1.1\r\nHost: h\r\n\r\n" * 2)
        assert c.read_response().status == 201
        assert c.closed_by_peer()


def test_half_closed_client_still_gets_answers(quote_backend):
    with RawConn(quote_backend.port) as c:
        c.send(b"GET /status/201 HTTP/1.1\r\nHost: h\r\n\r\nGET /status/202 HTTP/1.1\r\nHost: h\r\n\r\n")
        c.sock.shutdown(socket.SHUT_WR)
        assert c.read_response().status == 201
        assert c.read_response().status == 202
        assert c.closed_by_peer()


# ---- malformed input: 400 (or the precise status) and close, never a crash ----

BAD = [
    (b"GARBAGE\r\n\r\n", 400),
    (b"\x00\x01\x02\x03", 400),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),  # a TLS ClientHello
    (b"GET / HTTP/1.1\nHost: h\n\n", 400),                  # bare LF
    (b"GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 400),
    (b"GET noslash HTTP/1.1\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),                       # no Host
    (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nBad Header\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX : y\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 1\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
    (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X-Big: " + b"a" * 70000 + b"\r\n\r\n", 431),
    (b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: h\r\n" + b"X: y\r\n" * 200 + b"\r\n", 431),
]


@pytest.mark.parametrize("data,status", BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_malformed_requests(quote_backend, data, status):
    with RawConn(quote_backend.port) as c:
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before all of it was sent
        r = c.read_response()
        assert r.status == status
        assert r.header("connection") == "close"
        assert r.json()["status"] == status
        assert c.closed_by_peer()
    assert get(quote_backend).status_code == 200


def test_leading_empty_lines_are_skipped(quote_backend):
    with RawConn(quote_backend.port) as c:
        c.send(b"\r\n\r\nGET /status/201 HTTP/1.1\r\nHost: h\r\n\r\n")
        assert c.read_response().status == 201


def test_random_garbage_never_kills_it(quote_backend):
    rnd = random.Random(1234)
    seeds = [b"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
             b"POST /echo HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
             b"PUT /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\nabc"]
    for i in range(300):
        data = bytearray(rnd.choice(seeds))
        for _ in range(rnd.randint(1, 6)):
            pos = rnd.randrange(len(data))
            op = rnd.randrange(3)
            if op == 0:
                data[pos] = rnd.randrange(256)
            elif op == 1:
                del data[pos]
            else:
                data[pos:pos] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
        with socket.create_connection(("127.0.0.1", quote_backend.port), timeout=5) as s:
            s.sendall(bytes(data))
            s.shutdown(socket.SHUT_WR)
            out = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                out += chunk
        assert out == b"" or out.startswith(b"HTTP/1.1 "), (data, out[:200])
    assert quote_backend.proc.running
    assert get(quote_backend).status_code == 200


# ---- process ----

def test_sigterm_exits_zero(quote_backend):
    with RawConn(quote_backend.port) as c:  # an open idle connection must not block exit
        c.request("GET", "/")
        c.read_response()
        assert quote_backend.proc.stop(signal.SIGTERM) == 0
    assert "listening on http://127.0.0.1:" in quote_backend.proc.log()


def test_threads_share_the_port(processes):
    backend = start_quote(processes, threads=4)
    conns = [RawConn(backend.port) for _ in range(16)]
    for c in conns:
        c.request("GET", "/")
    for c in conns:
        assert c.read_response().status == 200
        c.close()


def test_ipv6(processes):
    try:
        free_port("::1")
    except OSError:
        pytest.skip("no IPv6 loopback")
    backend = start_quote(processes, host="::1")
    with RawConn(backend.port, host="::1") as c:
        c.request("GET", "/echo")
        assert c.read_response().json()["client"].startswith("[::1]:")


def test_bad_arguments():
    import subprocess
    for args in (["--port", "70000"], ["--threads", "0"], ["--bogus"], ["extra"]):
        r = subprocess.run([binary("portico-quote")] + args, capture_output=True, timeout=5)
        assert r.returncode == 2, args
    r = subprocess.run([binary("portico-quote"), "--help"], capture_output=True, timeout=5)
    assert r.returncode == 0 and b"--threads" in r.stdout


def test_port_in_use_fails(processes):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    port = s.getsockname()[1]
    try:
        import subprocess
        r = subprocess.run([binary("portico-quote"), "--port", str(port)], capture_output=True,
                           timeout=5)
        assert r.returncode == 1
        assert b"Address already in use" in r.stderr
    finally:
        s.close()


def test_json_stays_valid_for_all_quotes(quote_backend):
    for _ in range(40):
        json.loads(get(quote_backend).content)
