"""Configuration cannot inject bytes onto the wire (issue 9, point 7). Every Mapping value that
Portico writes into a head (added header names and values, removed header names, host_rewrite,
the service's host that auto_host_rewrite sends, rewrite, prefix, regex_rewrite) is checked: CR, LF, NUL, non-token names, whitespace a
recipient would strip, and the headers Portico manages (framing, connection, host) are errors
with FILE:LINE: Kind/ns/name, `portico check` exits 1, and `portico run` rejects that Mapping
alone while the rest of the file serves. Upstream pools are shared between namespaces, so this
is a tenant boundary."""

import re
import socket

import pytest

from portico import RecordingBackend, echo_headers
from portico_cfg import Portico, check, doc, dump, line_of, mapping

# (spec added to a Mapping, the line of the file it is reported on (a needle), message)
BAD = [
    ({"add_request_headers": {"x-a\r\nx-b": "v"}}, "x-a",
     'add_request_headers: header name "x-a\\x0d\\x0ax-b" is not a token (RFC 9110 §5.6.2)'),
    ({"add_response_headers": {"x a": "v"}}, "x a",
     'add_response_headers: header name "x a" is not a token (RFC 9110 §5.6.2)'),
    ({"add_request_headers": {"x-a": "v\r\nContent-Length: 0"}}, "x-a",
     'add_request_headers.x-a: value "v\\x0d\\x0aContent-Length: 0" has a byte not allowed in '
     'a field value (CR, LF, NUL and other controls; RFC 9110 §5.5)'),
    ({"add_response_headers": {"x-a": {"value": "v\nSet-Cookie: a=b", "append": False}}}, "x-a",
     'add_response_headers.x-a: value "v\\x0aSet-Cookie: a=b" has a byte not allowed in a '
     'field value (CR, LF, NUL and other controls; RFC 9110 §5.5)'),
    ({"add_request_headers": {"x-a": "v "}}, "x-a",
     'add_request_headers.x-a: value "v " starts or ends with whitespace, which a recipient '
     'strips (RFC 9110 §5.5)'),
    ({"add_request_headers": {"Transfer-Encoding": "chunked"}}, "Transfer-Encoding",
     "add_request_headers: header Transfer-Encoding is managed by Portico and cannot be added "
     "by a Mapping"),
    ({"add_request_headers": {"content-length": "0"}}, "content-length",
     "add_request_headers: header content-length is managed by Portico and cannot be added by "
     "a Mapping"),
    ({"add_response_headers": {"connection": "close"}}, "connection",
     "add_response_headers: header connection is managed by Portico and cannot be added by a "
     "Mapping"),
    ({"add_request_headers": {"Host": "internal.example"}}, "Host",
     "add_request_headers: header Host cannot be set here; use host_rewrite"),
    ({"remove_request_headers": ["x-ok", "te"]}, "- te",
     "remove_request_headers[1]: header te is managed by Portico and cannot be removed by a "
     "Mapping"),
    ({"remove_response_headers": ["upgrade"]}, "- upgrade",
     "remove_response_headers[0]: header upgrade is managed by Portico and cannot be removed "
     "by a Mapping"),
    ({"remove_request_headers": ["keep-alive"]}, "- keep-alive",
     "remove_request_headers[0]: header keep-alive is managed by Portico and cannot be removed "
     "by a Mapping"),
    ({"remove_request_headers": ["proxy-connection"]}, "- proxy-connection",
     "remove_request_headers[0]: header proxy-connection is managed by Portico and cannot be "
     "removed by a Mapping"),
    ({"remove_response_headers": ["x\r\ny"]}, "- \"x",
     'remove_response_headers[0]: header name "x\\x0d\\x0ay" is not a token (RFC 9110 §5.6.2)'),
    ({"host_rewrite": "a.example\r\nX-Injected: 1"}, "host_rewrite",
     'host_rewrite: "a.example\\x0d\\x0aX-Injected: 1" is not a host[:port] (RFC 3986 §3.2.2)'),
    ({"host_rewrite": "a.example/evil"}, "host_rewrite",
     'host_rewrite: "a.example/evil" is not a host[:port] (RFC 3986 §3.2.2)'),
    ({"service": "quote\r\nX-Injected: 1", "auto_host_rewrite": True}, "service",
     'service: "quote\\x0d\\x0aX-Injected: 1" has a byte not allowed in [scheme://]host[:port] '
     '(RFC 3986 §3.2.2)'),
    ({"rewrite": "/x HTTP/1.1\r\nHost: internal\r\n\r\nGET /y"}, "rewrite",
     'rewrite: "/x HTTP/1.1\\x0d\\x0aHost: internal\\x0d\\x0a\\x0d\\x0aGET /y" has a byte not '
     "allowed in a request-target (space, '#', controls, non-ASCII; RFC 9112 §3.2)"),
    ({"rewrite": "/a b"}, "rewrite",
     "rewrite: \"/a b\" has a byte not allowed in a request-target (space, '#', controls, "
     "non-ASCII; RFC 9112 §3.2)"),
    ({"prefix": "/bad/\r\n"}, "prefix",
     'prefix: "/bad/\\x0d\\x0a" has a control character (CR, LF, ...), which no request path '
     'contains'),
    ({"regex_rewrite": {"pattern": "^/bad/(.*)$", "substitution": "/\\1 HTTP/1.1\r\nX: y"}},
     "substitution",
     'regex_rewrite.substitution: "/\\\\1 HTTP/1.1\\x0d\\x0aX: y" has a byte not allowed in a '
     "request-target (space, '#', controls, non-ASCII; RFC 9112 §3.2)"),
    ({"regex_rewrite": {"pattern": "^/bad/\n(.*)$", "substitution": "/\\1"}}, "pattern",
     'regex_rewrite.pattern: "^/bad/\\x0a(.*)$" has a control character (CR, LF, ...), which no '
     'request path contains'),
]


@pytest.mark.parametrize("spec,needle,message", BAD, ids=[m.split(":")[0] + str(i)
                                                          for i, (_, _, m) in enumerate(BAD)])
def test_check_rejects_wire_values(tmp_path, spec, needle, message):
    s = {"prefix": "/bad/", "service": "127.0.0.1:9"}
    s.update(spec)
    f = tmp_path / "m.yaml"
    f.write_text(dump(doc("Mapping", "bad", {"hostname": "*", **s}),
                      mapping("good", "/good/", "127.0.0.1:9")))
    r = check(tmp_path)
    assert r.returncode == 1, r.stdout
    assert r.stdout.splitlines() == [
        f"{f}:{line_of(f, needle)}: Mapping/default/bad: {message}"], r.stdout
    # the message is one line: nothing from the value reached the output unescaped
    assert "\r" not in r.stdout


def test_run_rejects_the_bad_mapping_and_serves_the_good_one(processes, tmp_path,
                                                             quote_backend):
    """In one file: a Mapping whose header value would smuggle a second request onto the pooled
    upstream connection, and a good one. The bad one is not served (404) and reported in the
    log and diag; the good one serves with its added header."""
    svc = f"127.0.0.1:{quote_backend.port}"
    px = Portico(processes, tmp_path)
    f = px.write("routes.yaml", dump(
        mapping("bad", "/bad/", svc, add_request_headers={
            "x-a": "1\r\nContent-Length: 0\r\n\r\nGET /smuggled HTTP/1.1"}),
        mapping("good", "/backend/", svc, add_request_headers={"x-tenant": "good"})))
    px.start()
    assert px.status("/bad/echo") == 404
    r = px.get("/backend/echo")
    assert r.status == 200
    assert echo_headers(r.json(), "x-tenant") == ["good"]
    line = line_of(f, "x-a:")
    want = (f'{f}:{line}: Mapping/default/bad: add_request_headers.x-a: value '
            f'"1\\x0d\\x0aContent-Length: 0\\x0d\\x0a\\x0d\\x0aGET /smuggled HTTP/1.1" has a byte '
            f'not allowed in a field value (CR, LF, NUL and other controls; RFC 9110 §5.5)')
    assert want in px.log()
    assert re.search(r"portico error: " + re.escape(want), px.log())
    errs = px.diag()["errors"]
    assert [(e["location"], e["object"]) for e in errs] == [(f"{f}:{line}", "Mapping/default/bad")]


def _exchange(port, data):
    """Sends <data> on a new connection and returns everything read until the peer closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


def test_header_name_from_a_quoted_yaml_key(processes, tmp_path):
    """YAML can write CR and LF in a double-quoted key: the header name is checked too, and the
    upstream never sees an injected line from the good Mapping next to it."""
    be = RecordingBackend()
    try:
        px = Portico(processes, tmp_path)
        px.write("routes.yaml", '---\n'
                 'apiVersion: getambassador.io/v3alpha1\n'
                 'kind: Mapping\n'
                 'metadata: {name: bad}\n'
                 'spec:\n'
                 '  hostname: "*"\n'
                 '  prefix: /bad/\n'
                 f'  service: 127.0.0.1:{be.port}\n'
                 '  add_request_headers: {"x-a\\r\\nx-injected": v}\n'
                 '---\n'
                 'apiVersion: getambassador.io/v3alpha1\n'
                 'kind: Mapping\n'
                 'metadata: {name: good}\n'
                 'spec:\n'
                 '  hostname: "*"\n'
                 '  prefix: /good/\n'
                 f'  service: 127.0.0.1:{be.port}\n'
                 '  add_request_headers: {x-a: v}\n')
        px.start()
        out = _exchange(px.port, b"GET /bad/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 404 Not Found\r\n"), out
        out = _exchange(px.port, b"GET /good/x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200 "), out
        assert [r for r in be.requests] == ["GET /x HTTP/1.1"], be.requests
        errs = px.diag()["errors"]
        assert [e["message"] for e in errs] == [
            'add_request_headers: header name "x-a\\x0d\\x0ax-injected" is not a token '
            '(RFC 9110 §5.6.2)'], errs
        assert errs[0]["location"].endswith("routes.yaml:9")
    finally:
        be.close()
