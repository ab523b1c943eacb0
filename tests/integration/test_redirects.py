"""host_redirect Mappings (issue 13, point 7): Envoy's RedirectAction as Emissary writes it
(v3route.py). The Mapping's service is the host of the Location, the path is the request's,
or path_redirect, or the request's after prefix_redirect / regex_redirect; the query is kept
(Envoy's strip_query false) unless path_redirect has its own; the status is
redirect_response_code (301 default; 302, 303, 307, 308; anything else is a config error). No
cluster is made and no upstream is contacted. Cases [0]-[7] are Emissary's KAT
t_mappingtests_plain.HostRedirectMapping."""

import re
import socket

import pytest

from portico import wait_access_lines
from portico_cfg import Portico, check, dump, host, line_of, mapping

DATE_RX = re.compile(rb"\r\ndate: [A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT\r\n")
REASON = {301: "Moved Permanently", 302: "Found", 303: "See Other", 307: "Temporary Redirect",
          308: "Permanent Redirect"}


def redirect(status, location):
    return (f"HTTP/1.1 {status} {REASON[status]}\r\ncontent-length: 0\r\ndate: DATE\r\n"
            f"server: envoy\r\nlocation: {location}\r\n\r\n").encode()


def exchange(port, request):
    """<request> on a new connection: the response head (and body by content-length), with the
    date's value replaced by DATE."""
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
    return DATE_RX.sub(b"\r\ndate: DATE\r\n", head + b"\r\n\r\n" + body)


def get(path, host="a.example", method="GET"):
    return f"{method} {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


KAT = dump(
    mapping("hr", "/hr/", "foobar.com", host_redirect=True),
    mapping("hr-2", "/hr-2/", "foobar.com", host_redirect=True, case_sensitive=False),
    mapping("hr-3", "/hr-3/foo/", "foobar.com", host_redirect=True, path_redirect="/redirect/",
            redirect_response_code=302),
    mapping("hr-4", "/hr-4/foo/bar/baz", "foobar.com", host_redirect=True,
            prefix_redirect="/foobar/baz", redirect_response_code=307),
    mapping("hr-5", "/hr-5/assets/([a-f0-9]{12})/images", "foobar.com", prefix_regex=True,
            host_redirect=True, regex_redirect={"pattern": "/hr-5/assets/([a-f0-9]{12})/images",
                                                "substitution": "/images/\\1"},
            redirect_response_code=308),
)


@pytest.fixture
def kat(processes, tmp_path):
    px = Portico(processes, tmp_path)
    px.write("m.yaml", KAT)
    px.start()
    return px


@pytest.mark.parametrize("path,want", [
    ("/hr/anything?itworked=true", redirect(301, "http://foobar.com/hr/anything?itworked=true")),
    ("/HR/anything?itworked=true", None),  # case-sensitive: no route
    ("/hr-2/anything?itworked=true", redirect(301, "http://foobar.com/hr-2/anything?itworked=true")),
    ("/HR-2/anything?itworked=true", redirect(301, "http://foobar.com/HR-2/anything?itworked=true")),
    ("/hr-3/foo/anything", redirect(302, "http://foobar.com/redirect/")),
    ("/hr-4/foo/bar/baz/anything", redirect(307, "http://foobar.com/foobar/baz/anything")),
    ("/hr-5/assets/abcd0000f123/images", redirect(308, "http://foobar.com/images/abcd0000f123")),
    ("/hr-5/assets/abcd0000f123/images?itworked=true",
     redirect(308, "http://foobar.com/images/abcd0000f123?itworked=true")),
    # path_redirect keeps the request's query (Envoy's strip_query is false); so does prefix
    ("/hr-3/foo/x?a=1&b=2", redirect(302, "http://foobar.com/redirect/?a=1&b=2")),
    ("/hr-4/foo/bar/baz?q", redirect(307, "http://foobar.com/foobar/baz?q")),
    # the path is normalized before it is matched and redirected, as Envoy's normalize_path
    ("/hr/a/../b/%7e?x", redirect(301, "http://foobar.com/hr/b/~?x")),
], ids=["kat0", "kat1-404", "kat2", "kat3-case", "kat4-path", "kat5-prefix", "kat6-regex",
        "kat7-regex-query", "path-query", "prefix-query", "normalized"])
def test_emissary_kat(kat, path, want):
    got = exchange(kat.port, get(path))
    if want is None:
        assert got.startswith(b"HTTP/1.1 404 Not Found\r\n"), got
    else:
        assert got == want


def test_no_cluster_no_upstream_and_log(kat):
    """The redirect is the answer: no cluster is made for foobar.com (a name nothing resolves
    here), and the access log shows the status, flag "-" and no upstream, as Envoy's direct
    response."""
    assert [c["service"] for c in kat.diag()["clusters"]] == []
    assert kat.diag()["errors"] == []
    assert exchange(kat.port, get("/hr/x")) == redirect(301, "http://foobar.com/hr/x")
    lines = wait_access_lines(kat, 1)
    ((_, m),) = lines
    assert (m["code"], m["flags"], m["upstream"], m["path"]) == ("301", "-", "-", "/hr/x")


def test_head_and_post(kat):
    """HEAD gets the same head; a request with a body gets the redirect too (the connection
    closes, since the body was not read)."""
    assert exchange(kat.port, get("/hr/x", method="HEAD")) == redirect(301, "http://foobar.com/hr/x")
    got = exchange(kat.port, b"POST /hr/x HTTP/1.1\r\nHost: a\r\ncontent-length: 3\r\n\r\nabc")
    assert got.startswith(b"HTTP/1.1 301 Moved Permanently\r\n"), got
    assert b"\r\nlocation: http://foobar.com/hr/x\r\n" in got


def test_scheme_port_and_own_query(processes, tmp_path):
    """A service with https:// and a port: the Location's scheme and authority. A path_redirect
    with its own query drops the request's (Envoy). A path_redirect without '/' gets one."""
    px = Portico(processes, tmp_path)
    px.write("m.yaml", dump(
        mapping("s", "/s/", "https://secure.example:8443", host_redirect=True),
        mapping("q", "/q/", "b.example", host_redirect=True, path_redirect="/new?from=q",
                redirect_response_code=303),
        mapping("n", "/n/", "b.example:8080", host_redirect=True, path_redirect="bare")))
    px.start()
    assert exchange(px.port, get("/s/p?x=1")) == redirect(301, "https://secure.example:8443/s/p?x=1")
    assert exchange(px.port, get("/q/p?x=1")) == redirect(303, "http://b.example/new?from=q")
    assert exchange(px.port, get("/n/p?x=1")) == redirect(301, "http://b.example:8080/bare?x=1")


def test_routing_precedence_and_hosts(processes, tmp_path, quote_backend):
    """Redirect Mappings take part in routing like any other: the longest prefix wins, and a
    Mapping's hostname limits it to that Host."""
    svc = f"127.0.0.1:{quote_backend.port}"
    px = Portico(processes, tmp_path)
    px.write("m.yaml", dump(
        host("a", "a.example", action="Route"), host("b", "b.example", action="Route"),
        mapping("proxy", "/app/", svc, hostname="*"),
        mapping("moved", "/app/old/", "new.example", hostname="*", host_redirect=True,
                prefix_redirect="/app/new/"),
        mapping("onlyb", "/b/", "c.example", hostname="b.example", host_redirect=True),
        mapping("elsewhere", "/b/", svc, hostname="a.example")))
    px.start()
    assert exchange(px.port, get("/app/old/x")) == redirect(301, "http://new.example/app/new/x")
    r = px.get("/app/x", host="a.example")
    assert r.status == 200 and r.json()["server"] == quote_backend.name
    assert exchange(px.port, get("/b/x", host="b.example")) == redirect(301, "http://c.example/b/x")
    r = px.get("/b/x", host="a.example")
    assert r.status == 200 and r.json()["server"] == quote_backend.name


def test_http2_redirect(processes, tmp_path):
    """Over HTTP/2 (prior knowledge), the same status, fields and location."""
    from h2raw import H2Raw
    px = Portico(processes, tmp_path)
    px.write("m.yaml", dump(mapping("hr", "/hr/", "foobar.com", host_redirect=True,
                                    redirect_response_code=307)))
    px.start()
    with H2Raw(px.port) as c:
        r = c.wait_response(c.request("/hr/z?q=1", authority="a.example"))
    assert r.status == 307 and r.body == b"", r
    assert [(k, v) for k, v in r.headers if k != "date"] == [
        (":status", "307"), ("content-length", "0"), ("server", "envoy"),
        ("location", "http://foobar.com/hr/z?q=1")], r


# ---- portico check ----------------------------------------------------------------------------

@pytest.mark.parametrize("extra,needle,message", [
    ({"redirect_response_code": 304}, "redirect_response_code",
     "redirect_response_code: expected one of 301, 302, 303, 307, 308 (got \"304\")"),
    ({"redirect_response_code": "moved"}, "redirect_response_code",
     "redirect_response_code: expected one of 301, 302, 303, 307, 308 (got \"moved\")"),
    ({"path_redirect": "/a b"}, "path_redirect",
     "path_redirect: \"/a b\" has a byte not allowed in a request-target (space, '#', controls, "
     "non-ASCII; RFC 9112 §3.2)"),
    ({"regex_redirect": {"pattern": "/(a", "substitution": "/x"}}, "apiVersion",
     None),
    ({"regex_redirect": {"substitution": "/x"}}, "substitution",
     "regex_redirect.pattern: required"),
], ids=["304", "word", "path-space", "bad-regex", "no-pattern"])
def test_check_rejects_bad_redirects(tmp_path, extra, needle, message):
    f = tmp_path / "c.yaml"
    f.write_text(dump(mapping("bad", "/bad/", "x.example", host_redirect=True, **extra),
                      mapping("good", "/good/", "y.example", host_redirect=True)))
    r = check(tmp_path)
    assert r.returncode == 1, r.stdout
    lines = r.stdout.splitlines()
    assert len(lines) == 1, lines
    if message is None:  # the route builder's PCRE2 message, named for regex_redirect
        assert re.match(rf"{re.escape(str(f))}:{line_of(f, needle)}: Mapping/default/bad: "
                        r"regex_redirect pattern: .+", lines[0]), lines
    else:
        assert lines == [f"{f}:{line_of(f, needle)}: Mapping/default/bad: {message}"]


def test_check_notices(tmp_path):
    """Emissary's exclusions (path_redirect over prefix_redirect over regex_redirect) and the
    redirect fields of a Mapping without host_redirect are notices: the Mapping is served."""
    f = tmp_path / "c.yaml"
    f.write_text(dump(
        mapping("both", "/both/", "x.example", host_redirect=True, path_redirect="/p",
                prefix_redirect="/q"),
        mapping("plain", "/plain/", "127.0.0.1:9", path_redirect="/p",
                redirect_response_code=302)))
    r = check(tmp_path)
    assert r.returncode == 0, r.stdout
    assert r.stdout.splitlines() == [
        f"{f}:{line_of(f, 'prefix_redirect')}: Mapping/default/both: notice: Cannot specify both "
        f"path_redirect and prefix_redirect. Using path_redirect and ignoring prefix_redirect.",
        f"{f}:{line_of(f, 'path_redirect', 2)}: Mapping/default/plain: notice: path_redirect is "
        f"ignored without host_redirect: true",
        f"{f}:{line_of(f, 'redirect_response_code')}: Mapping/default/plain: notice: "
        f"redirect_response_code is ignored without host_redirect: true",
    ]


def test_exclusive_redirect_uses_path(processes, tmp_path):
    px = Portico(processes, tmp_path)
    px.write("m.yaml", dump(mapping("both", "/both/", "x.example", host_redirect=True,
                                    path_redirect="/p", prefix_redirect="/q")))
    px.start()
    assert exchange(px.port, get("/both/z")) == redirect(301, "http://x.example/p")
