"""error_response_overrides (Module `ambassador` and Mapping; bypass_error_response_overrides):
a response with the rule's status, from the upstream or made locally, gets the rule's body
(text_format, json_format or text_format_source, rendered with Envoy's operators) and content
type instead of its own, as Emissary's response_map filter did. Exact bytes on raw sockets;
bad rules are rejected with file:line by `portico check`."""
import subprocess

import pytest

from conftest import RawConn
from portico import docs, listener_yaml, start_portico
from portico_cfg import check, doc, dump, line_of, mapping


def module(overrides):
    return dump(doc("Module", "ambassador", {"config": {"error_response_overrides": overrides}}))


def config(backend_port, tmp_path):
    page = tmp_path / "page.html"
    page.write_text("<h1>%RESPONSE_CODE%</h1>\n")
    return docs(
        listener_yaml(),
        module([
            {"on_status_code": 404, "body": {"text_format": "nothing at %REQ(:PATH)% (%RESPONSE_CODE%)",
                                             "content_type": "text/html"}},
            {"on_status_code": 503, "body": {"json_format": {"error": "%RESPONSE_CODE%", "path": "%REQ(:PATH)%",
                                                             "x": "%REQ(x-in)%", "missing": "%REQ(x-none)%",
                                                             "n": 7, "on": True}}},
            {"on_status_code": 502, "body": {"text_format_source": {"filename": str(page)}}},
            {"on_status_code": 418, "body": {"text_format": ""}},
        ]),
        dump(mapping("quote", "/backend/", f"127.0.0.1:{backend_port}"),
             mapping("bypass", "/bypass/", f"127.0.0.1:{backend_port}", rewrite="/",
                     bypass_error_response_overrides=True),
             mapping("own", "/own/", f"127.0.0.1:{backend_port}", rewrite="/",
                     error_response_overrides=[{"on_status_code": 500, "body": {"text_format": "own %RESPONSE_CODE%"}}])))


@pytest.fixture
def proxy(processes, tmp_path, quote_backend):
    return start_portico(processes, tmp_path, config(quote_backend.port, tmp_path))


def get(proxy, path, headers=(), method="GET"):
    with RawConn(proxy.port) as c:
        c.request(method, path, headers=list(headers))
        return c.read_response(head=method == "HEAD")


def test_local_reply_gets_the_module_body(proxy):
    r = get(proxy, "/no/such/route")
    assert r.status == 404
    assert r.body == b"nothing at /no/such/route (404)"
    assert r.header("content-type") == "text/html"
    assert r.header("content-length") == str(len(r.body))


def test_upstream_response_body_replaced_json(proxy):
    r = get(proxy, "/backend/status/503", headers=[("x-in", 'a"b')])
    assert r.status == 503
    assert r.body == (b'{"error":503,"missing":null,"n":"7","on":"true","path":"/backend/status/503",'
                      b'"x":"a\\"b"}\n')
    assert r.header("content-type") == "application/json"
    assert r.header("content-length") == str(len(r.body))
    assert [k for k, _ in r.headers].count("content-length") == 1


def test_text_format_source_and_empty_body(proxy):
    r = get(proxy, "/backend/status/502")
    assert (r.status, r.body, r.header("content-type")) == (502, b"<h1>502</h1>\n", "text/plain")
    r = get(proxy, "/backend/status/418")
    assert (r.status, r.body, r.header("content-length"), r.header("content-type")) == (418, b"", "0", "text/plain")


def test_other_statuses_pass_unchanged(proxy):
    r = get(proxy, "/backend/status/500")
    assert r.status == 500 and r.body == b'{"server":"quote-test","status":500}'


def test_bypass_and_mapping_own_rules(proxy):
    r = get(proxy, "/bypass/status/503")
    assert r.status == 503 and r.body == b'{"server":"quote-test","status":503}'
    r = get(proxy, "/own/status/500")             # the Mapping's own rule...
    assert (r.status, r.body) == (500, b"own 500")
    r = get(proxy, "/own/status/503")             # ...replaces all of the Module's
    assert r.status == 503 and r.body == b'{"server":"quote-test","status":503}'


def test_keep_alive_after_a_replaced_body(proxy):
    with RawConn(proxy.port) as c:
        for path, status in (("/backend/status/404", 404), ("/backend/size/70000", 200), ("/backend/status/404", 404)):
            c.request("GET", path)
            r = c.read_response()
            assert r.status == status
        assert r.body == b"nothing at /backend/status/404 (404)"


def test_head_gets_the_length_and_no_body(proxy):
    with RawConn(proxy.port) as c:
        c.request("HEAD", "/backend/status/404")
        r = c.read_response(head=True)
        assert r.status == 404 and r.header("content-length") == str(len("nothing at /backend/status/404 (404)"))
        c.request("GET", "/backend/status/404")   # nothing stray on the connection
        assert c.read_response().body == b"nothing at /backend/status/404 (404)"


@pytest.mark.parametrize("rule, needle", [
    ({"on_status_code": 399, "body": {"text_format": "x"}}, "on_status_code"),
    ({"on_status_code": 600, "body": {"text_format": "x"}}, "on_status_code"),
    ({"body": {"text_format": "x"}}, "on_status_code"),
    ({"on_status_code": 404}, "body"),
    ({"on_status_code": 404, "body": {"text_format": "x", "json_format": {"a": "b"}}}, "only one of"),
    ({"on_status_code": 404, "body": {"content_type": "text/html"}}, "could not find a valid format"),
    ({"on_status_code": 404, "body": {"text_format": "%NOPE%"}}, "unknown command operator %NOPE%"),
    ({"on_status_code": 404, "body": {"json_format": {"a": "%REQ(x"}}}, 'key "a": bad syntax'),
    ({"on_status_code": 404, "body": {"json_format": "text"}}, "json_format field must be an object"),
    ({"on_status_code": 404, "body": {"text_format_source": {"filename": "/nonexistent/x"}}}, "does not exist"),
    ({"on_status_code": 404, "body": {"text_format": "x", "content_type": "a\nb"}}, "content_type"),
])
@pytest.mark.parametrize("where", ["Mapping", "Module"])
def test_bad_rules_rejected_with_file_line(tmp_path, rule, needle, where):
    f = tmp_path / "m.yaml"
    if where == "Mapping":
        f.write_text(dump(doc("Mapping", "bad", {"hostname": "*", "prefix": "/x/", "service": "127.0.0.1:9",
                                                 "error_response_overrides": [rule]}),
                          mapping("good", "/good/", "127.0.0.1:9")))
        obj = "Mapping/default/bad: "
    else:
        f.write_text(module([rule]) + "---\n" + dump(mapping("good", "/good/", "127.0.0.1:9")))
        obj = "Module/default/ambassador: "
    r = check(tmp_path)
    lines = [l for l in r.stdout.splitlines() if l.strip() and obj in l]
    assert r.returncode == 1, r.stdout
    assert lines and lines[0].startswith(f"{f}:"), r.stdout
    assert needle in lines[0], lines


def test_http2_client_gets_the_override(proxy):
    """An HTTP/2 client (h2c prior knowledge) gets the same bodies, framed by HTTP/2, with
    content-length agreeing."""
    for path, status, body in (("/no/such/route", 404, b"nothing at /no/such/route (404)"),
                               ("/backend/status/502", 502, b"<h1>502</h1>\n")):
        out = subprocess.run(["curl", "-s", "-S", "--max-time", "10", "--http2-prior-knowledge", "-D", "-",
                              f"http://127.0.0.1:{proxy.port}{path}"], capture_output=True, timeout=20).stdout
        head, _, got = out.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/2 %d" % status), head
        assert got == body
        assert b"\r\ncontent-length: %d" % len(body) in head
