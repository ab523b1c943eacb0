"""CORS (issue 13, point 6): a Mapping's `cors`, or the Module's as the default of Mappings
without one, applied as Envoy's CORS filter applies a route's CorsPolicy (cors_filter.cc, as
Emissary's ircors.py configures it). A preflight (OPTIONS with Origin and
Access-Control-Request-Method) from an allowed Origin is answered at the edge with 200 and the
Access-Control-Allow-* fields, never forwarded; from another Origin it goes to the upstream
unchanged. Any other request from an allowed Origin is forwarded, and whatever answers it (the
upstream, or a local reply) gets Access-Control-Allow-Origin (the Origin echoed), -Allow-
Credentials when set and -Expose-Headers when set. Cases of Emissary's KAT t_cors.GlobalCORSTest
and t_optiontests.CORS are included."""

import re
import socket

import pytest

from portico import _ThreadedServer, recv_head, wait_access_lines
from portico_cfg import Portico, check, doc, dump, line_of, mapping

DATE_RX = re.compile(rb"\r\ndate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n")
UST_RX = re.compile(rb"\r\nx-envoy-upstream-service-time: \d+\r\n")

UPSTREAM = (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\naccess-control-allow-origin: upstream\r\n"
            b"x-up: 1\r\naccess-control-allow-origin: again\r\n\r\nok")


class Backend(_ThreadedServer):
    """Answers every request (no body) with UPSTREAM; records the request lines and Origin."""

    def __init__(self):
        self.requests = []
        super().__init__()

    def serve(self, conn):
        data = b""
        while True:
            got = recv_head(conn, data)
            if got is None:
                return
            head, data = got
            self.requests.append(head.split(b"\r\n", 1)[0].decode())
            conn.sendall(UPSTREAM)


@pytest.fixture
def backend():
    b = Backend()
    yield b
    b.close()


def exchange(port, request):
    """<request> on a new connection: the response (framed by content-length), with the values
    of date and x-envoy-upstream-service-time replaced by DATE and UST."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        m = re.search(rb"\r\ncontent-length: (\d+)", head, re.I)
        while m and len(body) < int(m.group(1)):
            chunk = s.recv(65536)
            if not chunk:
                break
            body += chunk
    out = DATE_RX.sub(b"\r\ndate: DATE\r\n", head + b"\r\n\r\n" + body)
    return UST_RX.sub(b"\r\nx-envoy-upstream-service-time: UST\r\n", out)


def req(method, path, *fields):
    return (f"{method} {path} HTTP/1.1\r\nHost: a.example\r\n" +
            "".join(f"{f}\r\n" for f in fields) + "\r\n").encode()


def preflight(path, origin, method="PUT", *more):
    return req("OPTIONS", path, f"Origin: {origin}", f"Access-Control-Request-Method: {method}",
               *more)


def module(**config):
    return doc("Module", "ambassador", {"config": config})


FULL = {"origins": ["http://a.example", "https://b.example:8443"], "methods": ["GET", "POST"],
        "headers": ["x-one", "content-type"], "exposed_headers": ["x-up"], "credentials": True,
        "max_age": "86400"}

PREFLIGHT_FULL = (b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\ndate: DATE\r\nserver: envoy\r\n"
                  b"access-control-allow-origin: https://b.example:8443\r\n"
                  b"access-control-allow-credentials: true\r\n"
                  b"access-control-allow-methods: GET, POST\r\n"
                  b"access-control-allow-headers: x-one, content-type\r\n"
                  b"access-control-max-age: 86400\r\n"
                  b"access-control-expose-headers: x-up\r\n\r\n")

# the upstream's answer as the client sees it without CORS
PLAIN = (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\naccess-control-allow-origin: upstream\r\n"
         b"x-up: 1\r\naccess-control-allow-origin: again\r\n"
         b"x-envoy-upstream-service-time: UST\r\nserver: envoy\r\n\r\nok")


@pytest.fixture
def full(processes, tmp_path, backend):
    px = Portico(processes, tmp_path)
    px.write("m.yaml", dump(mapping("c", "/c/", f"127.0.0.1:{backend.port}", cors=FULL)))
    px.start()
    return px


def test_preflight_answered_at_the_edge(full, backend):
    assert exchange(full.port, preflight("/c/x", "https://b.example:8443")) == PREFLIGHT_FULL
    assert backend.requests == []
    ((_, m),) = wait_access_lines(full, 1)
    assert (m["method"], m["code"], m["flags"], m["upstream"]) == ("OPTIONS", "200", "-", "-")


def test_preflight_from_other_origin_is_forwarded(full, backend):
    """Envoy's forward_not_matching_preflights (default true): the upstream answers, and
    nothing is added."""
    for origin in ("http://evil.example", "HTTP://A.EXAMPLE", "http://a.example:80"):
        assert exchange(full.port, preflight("/c/x", origin)) == PLAIN
    assert backend.requests == ["OPTIONS /x HTTP/1.1"] * 3  # rewrite "/" (Emissary's default)


def test_simple_request_from_allowed_origin(full, backend):
    """The Origin is echoed in place of the upstream's first Access-Control-Allow-Origin (the
    later one is dropped), credentials and exposed headers are appended (Envoy's setInline)."""
    got = exchange(full.port, req("GET", "/c/x", "Origin: http://a.example"))
    assert got == (b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n"
                   b"access-control-allow-origin: http://a.example\r\nx-up: 1\r\n"
                   b"x-envoy-upstream-service-time: UST\r\nserver: envoy\r\n"
                   b"access-control-allow-credentials: true\r\n"
                   b"access-control-expose-headers: x-up\r\n\r\nok")
    assert backend.requests == ["GET /x HTTP/1.1"]


def test_requests_that_change_nothing(full, backend):
    """No Origin, an empty one, another Origin, two Origin fields: the upstream's answer as is.
    An OPTIONS from an allowed Origin without Access-Control-Request-Method is no preflight: it
    is forwarded, and its answer gets the fields."""
    assert exchange(full.port, req("GET", "/c/x")) == PLAIN
    assert exchange(full.port, req("GET", "/c/x", "Origin:")) == PLAIN
    assert exchange(full.port, req("GET", "/c/x", "Origin: http://c.example")) == PLAIN
    assert exchange(full.port, req("GET", "/c/x", "Origin: http://a.example",
                                   "Origin: http://a.example")) == PLAIN
    got = exchange(full.port, req("OPTIONS", "/c/x", "Origin: http://a.example"))
    assert b"\r\naccess-control-allow-origin: http://a.example\r\n" in got
    assert b"access-control-allow-methods" not in got
    assert len(backend.requests) == 5


def test_local_replies_get_the_fields(processes, tmp_path):
    """Envoy's CORS filter also sees the router's own replies: a 503 for a cluster without
    endpoints carries the echoed Origin."""
    px = Portico(processes, tmp_path)
    px.write("m.yaml", dump(mapping("c", "/c/", "127.0.0.1:9", cors={"origins": "http://a.example"})))
    px.start()
    got = exchange(px.port, req("GET", "/c/x", "Origin: http://a.example"))
    assert got.startswith(b"HTTP/1.1 503 Service Unavailable\r\n"), got
    head = got.split(b"\r\n\r\n")[0]
    assert head.endswith(b"\r\nserver: envoy\r\naccess-control-allow-origin: http://a.example"), got


def test_module_default_and_mapping_override(processes, tmp_path, backend):
    """Emissary's KAT t_cors.GlobalCORSTest: the Module's policy applies to /foo/, /bar/'s own
    replaces it (it does not merge)."""
    svc = f"127.0.0.1:{backend.port}"
    px = Portico(processes, tmp_path)
    px.write("m.yaml", dump(
        module(cors={"origins": ["http://foo.example.com"], "methods": ["POST", "GET", "OPTIONS"]}),
        mapping("foo", "/foo/", svc),
        mapping("bar", "/bar/", svc, cors={"origins": ["http://bar.example.com"],
                                           "methods": ["POST", "GET", "OPTIONS"]})))
    px.start()

    def acao(path, origin=None):
        got = exchange(px.port, req("GET", path, *([f"Origin: {origin}"] if origin else [])))
        return re.findall(rb"\r\naccess-control-allow-origin: ([^\r]*)", got)

    assert acao("/foo/") == [b"upstream", b"again"]
    assert acao("/foo/", "http://foo.example.com") == [b"http://foo.example.com"]
    assert acao("/foo/", "http://wrong.example.com") == [b"upstream", b"again"]
    assert acao("/bar/", "http://bar.example.com") == [b"http://bar.example.com"]
    assert acao("/bar/", "http://foo.example.com") == [b"upstream", b"again"]
    assert exchange(px.port, preflight("/foo/", "http://foo.example.com")) == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\ndate: DATE\r\nserver: envoy\r\n"
        b"access-control-allow-origin: http://foo.example.com\r\n"
        b"access-control-allow-methods: POST, GET, OPTIONS\r\n\r\n")


def test_star_origin_and_echoed_methods(processes, tmp_path, backend):
    """origins ["*"] (Emissary's KAT t_optiontests.CORS) allows and echoes any Origin;
    methods "*" / headers "*" echo the preflight's own; origins as one comma-separated string
    (Emissary's v2 form) is a list."""
    svc = f"127.0.0.1:{backend.port}"
    px = Portico(processes, tmp_path)
    px.write("m.yaml", dump(
        mapping("any", "/any/", svc, cors={"origins": ["*"], "methods": "*", "headers": "*"}),
        mapping("list", "/list/", svc, cors={"origins": "http://a.example, http://b.example"})))
    px.start()
    assert exchange(px.port, preflight("/any/", "https://www.test-cors.org", "DELETE",
                                       "Access-Control-Request-Headers: x-a, x-b")) == (
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\ndate: DATE\r\nserver: envoy\r\n"
        b"access-control-allow-origin: https://www.test-cors.org\r\n"
        b"access-control-allow-methods: DELETE\r\n"
        b"access-control-allow-headers: x-a, x-b\r\n\r\n")
    got = exchange(px.port, req("GET", "/any/", "Origin: https://www.test-cors.org"))
    assert b"\r\naccess-control-allow-origin: https://www.test-cors.org\r\nx-up: 1\r\n" in got
    for origin in ("http://a.example", "http://b.example"):
        got = exchange(px.port, preflight("/list/", origin))
        assert got.endswith(f"\r\naccess-control-allow-origin: {origin}\r\n\r\n".encode()), got
    assert exchange(px.port, preflight("/list/", "http://a.example, http://b.example")) == PLAIN
    assert backend.requests == ["GET / HTTP/1.1", "OPTIONS / HTTP/1.1"]


def test_preflight_over_http2(processes, tmp_path, backend):
    from h2raw import H2Raw
    px = Portico(processes, tmp_path)
    px.write("m.yaml", dump(mapping("c", "/c/", f"127.0.0.1:{backend.port}", cors=FULL)))
    px.start()
    with H2Raw(px.port) as c:
        r = c.wait_response(c.request("/c/x", method="OPTIONS", authority="a.example", headers=[
            ("origin", "http://a.example"), ("access-control-request-method", "POST")]))
    assert [(k, v) for k, v in r.headers if k != "date"] == [
        (":status", "200"), ("content-length", "0"), ("server", "envoy"),
        ("access-control-allow-origin", "http://a.example"),
        ("access-control-allow-credentials", "true"),
        ("access-control-allow-methods", "GET, POST"),
        ("access-control-allow-headers", "x-one, content-type"),
        ("access-control-max-age", "86400"),
        ("access-control-expose-headers", "x-up")], r
    assert backend.requests == []


# ---- portico check ----------------------------------------------------------------------------

@pytest.mark.parametrize("cors,needle,message", [
    ("yes", "cors", "cors: expected a mapping"),
    ({"origins": "*", "methods": ["GET", "PO ST "]}, "PO ST",
     "cors.methods[1]: value \"PO ST \" starts or ends with whitespace, which a recipient strips "
     "(RFC 9110 §5.5)"),
    ({"origins": "*", "credentials": "maybe"}, "credentials", "cors.credentials: expected true or false"),
], ids=["not-a-map", "bad-value", "bad-bool"])
def test_check_rejects_bad_cors(tmp_path, cors, needle, message):
    f = tmp_path / "c.yaml"
    f.write_text(dump(mapping("bad", "/bad/", "127.0.0.1:9", cors=cors),
                      mapping("good", "/good/", "127.0.0.1:9", cors={"origins": "*"})))
    r = check(tmp_path)
    assert r.returncode == 1, r.stdout
    assert r.stdout.splitlines() == [f"{f}:{line_of(f, needle)}: Mapping/default/bad: {message}"]


def test_check_module_cors(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(dump(module(cors={"origins": "*", "max_age": "1\n2"})))
    r = check(tmp_path)
    assert r.returncode == 1, r.stdout
    assert len(r.stdout.splitlines()) == 1
    assert r.stdout.startswith(f"{f}:{line_of(f, 'max_age')}: Module/default/ambassador: "
                               f"config.cors.max_age: "), r.stdout
