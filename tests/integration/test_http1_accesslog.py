"""Emissary's default access log (reference/envoy-compat.md section 2.3), written by the real
build/portico to stdout: one line per request, flushed within half a second."""

import re
import time

import pytest
import requests

from conftest import RawConn, free_port
from portico import (REFUSED_BODY, UUID_RX, basic_config, echo, echo_headers, start_portico,
                     wait_access_lines)


@pytest.fixture
def proxy(processes, tmp_path, quote_backend):
    """Portico on a free port: Mapping /backend/ -> the quote backend (rewrite "/")."""
    p = start_portico(processes, tmp_path, basic_config(quote_backend.port))
    p.backend = quote_backend
    return p


ACCESS_ONE = (r'^ACCESS \[\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\] "GET /backend/ HTTP/1\.1" 200 - 0 '
              r'(?P<tx>\d+) (?P<dur>\d+) (?P<ust>\d+) "(?P<xff>[^"]*)" "test-agent/1\.0" '
              r'"(?P<rid>[0-9a-f-]{36})" "127\.0\.0\.1:{port}" "127\.0\.0\.1:{bport}"$')


def test_access_log_line_per_request(proxy):
    t0 = time.monotonic()
    sizes = []
    for _ in range(3):
        r = requests.get(proxy.url("/backend/"), headers={"User-Agent": "test-agent/1.0"},
                         timeout=5)
        sizes.append(len(r.content))
    lines = wait_access_lines(proxy, 3, timeout=2.0)
    assert time.monotonic() - t0 < 2.0
    rx = re.compile(ACCESS_ONE.replace("{port}", str(proxy.port))
                    .replace("{bport}", str(proxy.backend.port)))
    assert len(lines) == 3, proxy.log()
    matches = [rx.match(line) for line, _ in lines]
    assert all(matches), [line for line, _ in lines]
    # body bytes, as Envoy's %BYTES_SENT%; two workers may write their lines in any order
    assert sorted(int(m["tx"]) for m in matches) == sorted(sizes)
    assert all(UUID_RX.match(m["rid"]) for m in matches)


def test_access_log_flushed_within_half_a_second(proxy):
    requests.get(proxy.url("/backend/"), timeout=5)
    t0 = time.monotonic()
    assert wait_access_lines(proxy, 1, timeout=1.5)
    assert time.monotonic() - t0 < 0.9


def test_access_log_has_the_forwarded_request_id_and_original_path(proxy):
    doc = echo(proxy, "/backend/echo?q=1", headers={"X-Request-Id": "rid-123"})
    assert echo_headers(doc, "x-request-id") == ["rid-123"]
    (line, m), = wait_access_lines(proxy, 1)
    assert m, line
    assert m["path"] == "/backend/echo?q=1"
    assert m["rid"] == "rid-123"
    assert m["upstream"] == f"127.0.0.1:{proxy.backend.port}"


def test_access_log_xff_is_the_forwarded_value(proxy):
    """%REQ(X-FORWARDED-FOR)% is read from the request headers after the connection manager
    appended the client address, so Envoy logs what the upstream received."""
    doc = echo(proxy)
    (line, m), = wait_access_lines(proxy, 1)
    assert m, line
    assert [m["xff"]] == echo_headers(doc, "x-forwarded-for")


def test_access_log_local_replies(processes, tmp_path):
    p = start_portico(processes, tmp_path, basic_config(free_port()))
    requests.get(p.url("/nowhere"), timeout=5)
    requests.get(p.url("/backend/"), timeout=5)
    lines = wait_access_lines(p, 2)
    assert len(lines) == 2
    assert all(m for _, m in lines), lines
    # two workers: the lines may come in any order
    m404, m503 = sorted((m for _, m in lines), key=lambda m: m["code"])
    assert (m404["code"], m404["flags"], m404["tx"], m404["upstream"]) == ("404", "NR", "0", "-")
    assert (m503["code"], m503["flags"], m503["tx"]) == ("503", "UF", str(len(REFUSED_BODY)))


def test_access_log_for_protocol_error(proxy):
    with RawConn(proxy.port) as c:
        c.send(b"GET /backend/ HTTP/1.1\r\nHost: h\r\nX-A: a\x00b\r\n\r\n")
        assert c.read_response().status == 400
    (line, _), = wait_access_lines(proxy, 1)
    m = re.match(r'^ACCESS \[(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z\] "[^"]*" 400 DPE 0 11 \d+ - ',
                 line)
    assert m, line
    logged = time.mktime(time.strptime(m[1][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    assert abs(logged - time.time()) < 60, line
