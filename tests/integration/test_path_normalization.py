"""Request paths normalized as Emissary's Envoy does (`normalize_path: true`, always set by
Emissary; Module `merge_slashes` and `reject_requests_with_escaped_slashes`), end to end: exact
request bytes on a raw socket, and what the quote backend's echo says it received. Two echo
backends: A behind `prefix: /backend/` and ADMIN behind `prefix: /admin`, both with `rewrite: ""`
so that the backend sees the normalized path itself. The case table of the normalizer is
tests/unit/test_path.c; here: that matching, forwarding, the log and retries use its result."""

import json

import pytest

from conftest import RawConn, start_quote
from portico import (StaleKeepAliveBackend, basic_config, docs, listener_yaml, mapping_yaml,
                     start_portico, wait_access_lines)

MODULE = """apiVersion: getambassador.io/v3alpha1
kind: Module
metadata: {{name: ambassador}}
spec:
  config: {config}
"""


def start(processes, tmp_path, module=None, **a_spec):
    a = start_quote(processes, "--echo", name="A")
    admin = start_quote(processes, "--echo", name="ADMIN")
    parts = [listener_yaml(),
             mapping_yaml("a", f"127.0.0.1:{a.port}", prefix="/backend/",
                          **({"rewrite": ""} | a_spec)),
             mapping_yaml("admin", f"127.0.0.1:{admin.port}", prefix="/admin", rewrite="")]
    if module is not None:
        parts.append(MODULE.format(config=json.dumps(module)))
    return start_portico(processes, tmp_path, docs(*parts), workers=1)


def send(px, target, conn=None):
    """GET <target> as exact bytes; returns the response."""
    c = conn or RawConn(px.port)
    try:
        c.send(f"GET {target} HTTP/1.1\r\nHost: a.example\r\n\r\n".encode("latin-1"))
        return c.read_response()
    finally:
        if conn is None:
            c.close()


def received(px, target):
    """(backend name, path and query the backend received) for GET <target>."""
    r = send(px, target)
    assert r.status == 200, r
    doc = r.json()
    return doc["server"], doc["path"]


def test_escaped_dot_segments_cannot_leave_the_prefix(processes, tmp_path):
    px = start(processes, tmp_path)
    assert received(px, "/backend/%2e%2e/admin") == ("ADMIN", "/admin")
    assert received(px, "/backend/%2E%2E/admin") == ("ADMIN", "/admin")
    assert received(px, "/backend/.%2e/admin") == ("ADMIN", "/admin")
    assert received(px, "/backend/%2e./admin/x") == ("ADMIN", "/admin/x")
    assert received(px, "/backend/..\\admin") == ("ADMIN", "/admin")
    assert received(px, "/backend/x/%2e%2e/y") == ("A", "/backend/y")
    assert send(px, "/backend/%2e%2e/elsewhere").status == 404


def test_dot_segments_above_the_root_stay_at_the_root(processes, tmp_path):
    # Envoy: "/../a/b" is "/a/b" (today's Portico answered 400)
    px = start(processes, tmp_path)
    assert received(px, "/../backend/x") == ("A", "/backend/x")
    assert received(px, "/%2e%2e/%2e%2e/admin") == ("ADMIN", "/admin")


def test_unreserved_escapes_are_decoded_and_others_kept(processes, tmp_path):
    px = start(processes, tmp_path)
    assert received(px, "/backend/%7euser/%41%2d%5F") == ("A", "/backend/~user/A-_")
    assert received(px, "/%61dmin") == ("ADMIN", "/admin")
    assert received(px, "/backend/a%20b%3A%2f%25") == ("A", "/backend/a%20b%3A%2f%25")
    # bytes Envoy percent-encodes
    assert received(px, "/backend/a|b{c}") == ("A", "/backend/a%7Cb%7Bc%7D")


def test_query_is_never_touched(processes, tmp_path):
    px = start(processes, tmp_path, module={"merge_slashes": True})
    assert received(px, "/backend/%2e%2e/backend//x?a=%2e%2e/../&b=//%41") == \
        ("A", "/backend/x?a=%2e%2e/../&b=//%41")
    assert received(px, "/backend/x?/../admin") == ("A", "/backend/x?/../admin")


def test_escaped_slashes_are_kept_by_default(processes, tmp_path):
    px = start(processes, tmp_path)
    assert received(px, "/backend/a%2Fb%2f%5C%5c") == ("A", "/backend/a%2Fb%2f%5C%5c")
    assert received(px, "/backend/a%2F..%2F..%2Fadmin") == ("A", "/backend/a%2F..%2F..%2Fadmin")


@pytest.mark.parametrize("target", ["/backend/a%2Fb", "/backend/a%2fb", "/backend/a%5Cb",
                                    "/backend/a%5cb", "/backend/x/../%2F"])
def test_escaped_slashes_rejected_by_the_module(processes, tmp_path, target):
    px = start(processes, tmp_path, module={"reject_requests_with_escaped_slashes": True})
    with RawConn(px.port) as c:
        r = send(px, target, c)
        assert (r.status, r.body, r.header("content-length")) == (400, b"", "0")
        assert r.header("connection") is None
        # the connection stays usable, and a path without escaped slashes still passes
        r = send(px, "/backend/a%2e/b%41", c)
        assert r.status == 200 and r.json()["path"] == "/backend/a./bA"
    assert [m["path"] for _, m in wait_access_lines(px, 2)][:1] == [target]


def test_nul_escape_is_rejected(processes, tmp_path):
    # Envoy's PathUtilityTest.InvalidPaths
    px = start(processes, tmp_path)
    for target in ("/backend/.%00../x", "/backend/%00"):
        r = send(px, target)
        assert (r.status, r.body, r.header("content-length")) == (400, b"", "0"), target


def test_merge_slashes_off_keeps_them(processes, tmp_path):
    px = start(processes, tmp_path)
    assert received(px, "/backend//x///y/") == ("A", "/backend//x///y/")
    assert send(px, "//backend/x").status == 404


def test_merge_slashes_on(processes, tmp_path):
    px = start(processes, tmp_path, module={"merge_slashes": True})
    assert received(px, "/backend//x///y/") == ("A", "/backend/x/y/")
    assert received(px, "//backend///x") == ("A", "/backend/x")
    assert received(px, "//%61dmin//") == ("ADMIN", "/admin/")
    # merging comes after dot segments, as in Envoy: ".." takes the empty segment first
    assert received(px, "/backend/x//../y") == ("A", "/backend/x/y")


def test_rewrite_and_original_path_see_the_normalized_path(processes, tmp_path):
    # default rewrite "/": x-envoy-original-path is the normalized path (Envoy sets it from
    # :path after normalization), and the rewrite applies to the normalized path
    px = start(processes, tmp_path, rewrite="/")
    r = send(px, "/backend/%7e/x/../y?q=%2e")
    assert r.status == 200, r
    doc = r.json()
    assert doc["path"] == "/~/y?q=%2e"
    assert [v for k, v in doc["headers"] if k.lower() == "x-envoy-original-path"] == \
        ["/backend/~/y?q=%2e"]


def test_access_log_shows_the_normalized_path(processes, tmp_path):
    # Emissary's format logs %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%: the path after normalization
    px = start(processes, tmp_path)
    assert received(px, "/backend/%2e%2e/admin?x=%2e") == ("ADMIN", "/admin?x=%2e")
    assert received(px, "/backend/a|b") == ("A", "/backend/a%7Cb")
    lines = wait_access_lines(px, 2)
    assert [m["path"] for _, m in lines] == ["/admin?x=%2e", "/backend/a%7Cb"]


def test_pipelined_requests_keep_their_own_paths(processes, tmp_path):
    px = start(processes, tmp_path)
    with RawConn(px.port) as c:
        c.send(b"GET /backend/%2e%2e/admin HTTP/1.1\r\nHost: a\r\n\r\n"
               b"GET /backend/./%41?q HTTP/1.1\r\nHost: a\r\n\r\n"
               b"GET /backend/plain HTTP/1.1\r\nHost: a\r\n\r\n")
        got = [(d["server"], d["path"]) for d in (c.read_response().json() for _ in range(3))]
    assert got == [("ADMIN", "/admin"), ("A", "/backend/A?q"), ("A", "/backend/plain")]


def test_normalized_request_is_retried_on_a_stale_connection(processes, tmp_path):
    """A GET whose path was normalized is repeated on a new connection when the pooled one was
    closed by the backend, like any other (the normalized path lives in the request's head)."""
    backend = StaleKeepAliveBackend()
    try:
        px = start_portico(processes, tmp_path, basic_config(backend.port), workers=1)
        for i in range(3):
            r = send(px, f"/backend/./%41/../{i}")
            assert (r.status, r.body) == (200, b"ok"), r
        assert backend.connections == 3 and backend.heads == 5
    finally:
        backend.close()
