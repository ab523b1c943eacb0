"""add_request_headers / add_response_headers values with Envoy's %...% operators: rendered per
request (Envoy's header formatter: an unset value leaves the header out, %% is a literal %),
request-side upstream operators unset (no host chosen yet), and a value that would carry CR/LF
never reaching the wire. Bad formats are rejected with file:line by `portico check`."""
import datetime
import json
import socket
import subprocess

import pytest

from conftest import RawConn
from portico import basic_config, echo_headers, start_portico
from portico_cfg import check, doc, dump, line_of, mapping


REQ_HEADERS = {
    "x-client": "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "x-client-full": "%DOWNSTREAM_REMOTE_ADDRESS%",
    "x-client-port": "%DOWNSTREAM_REMOTE_PORT%",
    "x-proto": "%PROTOCOL% is 100%%",
    "x-copy": "%REQ(X-In)%",
    "x-copy-alt": "%REQ(x-none?x-in)%",
    "x-missing": "%REQ(x-none)%",
    "x-around": "<%REQ(x-none)%>",
    "x-cut": "%REQ(x-in):3%",
    "x-year": "%START_TIME(%Y)%",
    "x-lp": "%DOWNSTREAM_LOCAL_PORT%",
    "x-la": "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%",
    "x-up": "%UPSTREAM_REMOTE_ADDRESS%",
    "x-host": "%HOSTNAME%",
    "x-sni": "%REQUESTED_SERVER_NAME%",
    "x-method": "%REQ(:METHOD)% %REQ(:PATH)%",
    "x-newline": "%START_TIME(a%nb)%",
    "x-plain": "just text",
    "x-over": {"value": "%PROTOCOL%", "append": False},
}

RESP_HEADERS = {
    "x-code": "%RESPONSE_CODE%",
    "x-up": "%UPSTREAM_REMOTE_ADDRESS%",
    "x-up-ip": "%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
    "x-up-port": "%UPSTREAM_REMOTE_PORT%",
    "x-in-back": "%REQ(x-in)%",
    "x-ct": "%RESP(content-type)%",
    "x-none": "%RESP(x-never)%",
}


@pytest.fixture
def proxy(processes, tmp_path, quote_backend):
    return start_portico(processes, tmp_path, basic_config(
        quote_backend.port, add_request_headers=REQ_HEADERS, add_response_headers=RESP_HEADERS))


def test_request_header_operators(proxy, quote_backend):
    with RawConn(proxy.port) as c:
        c.request("GET", "/backend/echo", headers=[("X-In", "hello"), ("x-over", "client")])
        r = c.read_response()
        client_port = c.sock.getsockname()[1]
    doc_ = r.json()
    got = {k.lower(): v for k, v in doc_["headers"]}

    def one(name):
        vals = echo_headers(doc_, name)
        assert len(vals) == 1, (name, doc_["headers"])
        return vals[0]

    assert one("x-client") == "127.0.0.1"
    assert one("x-client-full") == f"127.0.0.1:{client_port}"
    assert one("x-client-port") == str(client_port)
    assert one("x-proto") == "HTTP/1.1 is 100%"
    assert one("x-copy") == "hello"
    assert one("x-copy-alt") == "hello"
    assert one("x-around") == "<>"
    assert one("x-cut") == "hel"
    assert one("x-year") == str(datetime.datetime.now(datetime.timezone.utc).year)
    assert one("x-lp") == str(proxy.port)
    assert one("x-la") == "127.0.0.1"
    assert one("x-host") == socket.gethostname()
    assert one("x-method") == "GET /backend/echo"
    assert one("x-plain") == "just text"
    assert echo_headers(doc_, "x-over") == ["HTTP/1.1"]   # append: false replaces the client's
    # Unset values leave the header out (Envoy adds no empty header): a missing request header,
    # no SNI on cleartext, and the upstream address, which request headers cannot know yet.
    for name in ("x-missing", "x-sni", "x-up"):
        assert name not in got, (name, doc_["headers"])
    # A value that renders with a line feed never reaches the wire.
    assert "x-newline" not in got
    assert not any("\n" in v or "\r" in v for _, v in doc_["headers"])


def test_response_header_operators_exact_bytes(proxy, quote_backend):
    with RawConn(proxy.port) as c:
        c.request("GET", "/backend/status/418", headers=[("X-In", "tea")])
        r = c.read_response()
    assert r.status == 418
    added = [(k, v) for k, v in r.headers if k.startswith("x-") and k != "x-envoy-upstream-service-time"]
    assert added == [
        ("x-code", "418"),
        ("x-up", f"127.0.0.1:{quote_backend.port}"),
        ("x-up-ip", "127.0.0.1"),
        ("x-up-port", str(quote_backend.port)),
        ("x-in-back", "tea"),          # kept when the request started
        ("x-ct", "application/json"),  # the upstream's own content-type
    ], r.headers


def test_request_with_body_keeps_values_for_the_response(proxy):
    body = b"z" * 200000  # read after the head: the head's bytes are gone by the response
    with RawConn(proxy.port) as c:
        c.request("POST", "/backend/echo", headers=[("X-In", "kept")], body=body)
        r = c.read_response()
    assert r.status == 200
    assert r.header("x-in-back") == "kept"


@pytest.mark.parametrize("value, needle", [
    ("%BOGUS%", "unknown command operator %BOGUS%"),
    ("%PROTOCOL", "bad syntax"),
    ("100%", "bad syntax"),
    ("%REQ(x-a%", "bad syntax"),
    ('%UPSTREAM_METADATA(["envoy.lb", "k"])%', "%UPSTREAM_METADATA% is not supported"),
    ("%DYNAMIC_METADATA(a:b)%", "%DYNAMIC_METADATA% is not supported"),
    ("%FILTER_STATE(k)%", "%FILTER_STATE% is not supported"),
    ("%PROTOCOL(x)%", "takes no parameter"),
    ("%REQ()%", "needs a parameter"),
])
@pytest.mark.parametrize("field", ["add_request_headers", "add_response_headers"])
def test_bad_formats_rejected_with_file_line(tmp_path, value, needle, field):
    f = tmp_path / "m.yaml"
    f.write_text(dump(doc("Mapping", "bad", {"hostname": "*", "prefix": "/x/", "service": "127.0.0.1:9",
                                             field: {"x-bad": value}}),
                      mapping("good", "/good/", "127.0.0.1:9")))
    r = check(tmp_path)
    lines = [l for l in r.stdout.splitlines() if l.strip()]
    assert r.returncode == 1, r.stdout
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{f}:{line_of(f, 'x-bad')}:"), lines
    assert "Mapping/default/bad: " in lines[0] and needle in lines[0], lines


def test_escaped_percent_and_object_form_accepted(tmp_path):
    (tmp_path / "m.yaml").write_text(dump(doc("Mapping", "ok", {
        "hostname": "*", "prefix": "/x/", "service": "127.0.0.1:9",
        "add_request_headers": {"x-a": "50%% off", "x-b": {"value": "%PROTOCOL%", "append": False}},
        "add_response_headers": {"x-c": "%RESPONSE_CODE%"}})))
    r = check(tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_operators_for_an_http2_client(proxy, quote_backend):
    """The same values for an HTTP/2 client (h2c prior knowledge): %PROTOCOL% is HTTP/2, %REQ%
    reads its header fields, response operators fill the HEADERS frame."""
    out = subprocess.run(["curl", "-s", "-S", "--max-time", "10", "--http2-prior-knowledge", "-D", "-",
                          "-H", "X-In: hello", f"http://127.0.0.1:{proxy.port}/backend/echo"],
                         capture_output=True, timeout=20).stdout.decode("latin-1")
    head, _, body = out.partition("\r\n\r\n")
    assert head.startswith("HTTP/2 200"), head
    doc_ = json.loads(body)
    assert echo_headers(doc_, "x-proto") == ["HTTP/2 is 100%"]
    assert echo_headers(doc_, "x-copy") == ["hello"]
    assert echo_headers(doc_, "x-method") == ["GET /backend/echo"]
    assert echo_headers(doc_, "x-over") == ["HTTP/2"]
    lines = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in head.split("\r\n")[1:]}
    assert lines["x-code"] == "200" and lines["x-in-back"] == "hello"
    assert lines["x-up"] == f"127.0.0.1:{quote_backend.port}"
