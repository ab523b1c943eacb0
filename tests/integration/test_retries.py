"""A Mapping's (and the Module's) retry_policy, as Envoy's router retries (issue 13 point 1):
retry_on 5xx / gateway-error / connect-failure / retriable-status-codes, num_retries (default
1), per_try_timeout, the jittered back-off, request bodies sent again, the response of the last
try given to the client, and Envoy's counters (upstream_rq_retry, _retry_success,
_retry_limit_exceeded, _per_try_timeout) and flags (URX). Real failing backends: a Python
backend that answers 503 to its first N requests, the quote backend's /delay/, and a port with
nothing listening."""

import re
import time

import pytest
import requests

from conftest import RawConn, free_port, start_quote
from portico import (ACCESS_RX, ClosingBackend, _ThreadedServer, docs, listener_yaml, mapping_yaml,
                     recv_head, start_portico, wait_access_lines)

FAILED = b"upstream connect error or disconnect/reset before headers. "


class FlakyBackend(_ThreadedServer):
    """Answers its first <fails> requests (over all connections) with <status>, then 200 "ok";
    keeps each request's body (framed by Content-Length or chunked) in .bodies."""

    def __init__(self, fails, status=503, extra=b""):
        self.fails, self.status, self.extra = fails, status, extra
        self.bodies = []
        super().__init__()

    def serve(self, conn):
        data = b""
        while True:
            got = recv_head(conn, data)
            if got is None:
                return
            head, data = got
            lines = head.decode("latin-1").split("\r\n")
            hdrs = {k.strip().lower(): v.strip() for k, _, v in (l.partition(":") for l in lines[1:])}
            body = b""
            if hdrs.get("transfer-encoding", "").lower() == "chunked":
                while True:
                    while b"\r\n" not in data:
                        data += conn.recv(65536)
                    size_line, _, data = data.partition(b"\r\n")
                    size = int(size_line.split(b";")[0], 16)
                    while len(data) < size + 2:
                        data += conn.recv(65536)
                    body += data[:size]
                    data = data[size + 2:]
                    if size == 0:
                        break
            else:
                n = int(hdrs.get("content-length", "0"))
                while len(data) < n:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                body, data = data[:n], data[n:]
            self.bodies.append(body)
            if len(self.bodies) <= self.fails:
                msg = b"nope"
                conn.sendall(b"HTTP/1.1 %d Oops\r\ncontent-length: 4\r\n%s\r\n%s" % (self.status, self.extra, msg))
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")


def metric(portico, name):
    """The value of envoy_cluster_<name> summed over the page's series (one cluster here)."""
    text = requests.get(portico.admin_url("/metrics"), timeout=5).text
    total, found = 0.0, False
    for line in text.splitlines():
        m = re.match(r"^envoy_cluster_%s\{[^}]*\} (\S+)$" % re.escape(name), line)
        if m:
            total += float(m.group(1))
            found = True
    assert found, f"no envoy_cluster_{name} on /metrics"
    return total


def get(portico, path="/backend/x", method="GET", body=b"", headers=None):
    with RawConn(portico.port) as c:
        c.request(method, path, headers=headers, body=body)
        return c.read_response()


def last_access(portico, n):
    lines = wait_access_lines(portico, n)
    assert len(lines) >= n, lines
    m = lines[n - 1][1]
    assert m, lines[n - 1][0]
    return m


def start(processes, tmp_path, service, module=None, **spec):
    parts = [listener_yaml(), mapping_yaml("quote", service, **spec)]
    if module is not None:
        parts.append("apiVersion: getambassador.io/v3alpha1\nkind: Module\nmetadata: {name: ambassador}\n"
                     "spec:\n  config:\n" + "".join(f"    {line}\n" for line in module.splitlines()))
    return start_portico(processes, tmp_path, docs(*parts), workers=1)


def test_5xx_retried_until_success(processes, tmp_path):
    be = FlakyBackend(fails=2)
    try:
        p = start(processes, tmp_path, f"127.0.0.1:{be.port}",
                  retry_policy={"retry_on": "5xx", "num_retries": 3})
        t0 = time.monotonic()
        r = get(p)
        assert (r.status, r.body) == (200, b"ok")
        assert time.monotonic() - t0 < 1.0  # two back-offs of less than 25 and 50 ms
        assert len(be.bodies) == 3
        assert metric(p, "upstream_rq_retry") == 2
        assert metric(p, "upstream_rq_retry_success") == 1
        assert metric(p, "upstream_rq_retry_limit_exceeded") == 0
        assert metric(p, "upstream_rq_total") == 3  # each try is an upstream request
        assert metric(p, "circuit_breakers_default_rq_retry_open") == 0
        m = last_access(p, 1)
        assert (m["code"], m["flags"]) == ("200", "-")
    finally:
        be.close()


def test_retries_run_out_last_response_passes(processes, tmp_path):
    """num_retries defaults to 1: two tries, then the upstream's own 503 with URX."""
    be = FlakyBackend(fails=100)
    try:
        p = start(processes, tmp_path, f"127.0.0.1:{be.port}", retry_policy={"retry_on": "gateway-error"})
        r = get(p)
        assert (r.status, r.body) == (503, b"nope")
        assert len(be.bodies) == 2
        assert metric(p, "upstream_rq_retry") == 1
        assert metric(p, "upstream_rq_retry_limit_exceeded") == 1
        assert metric(p, "upstream_rq_retry_success") == 0
        m = last_access(p, 1)
        assert (m["code"], m["flags"]) == ("503", "URX")
    finally:
        be.close()


def test_no_policy_no_retry(processes, tmp_path):
    be = FlakyBackend(fails=1)
    try:
        p = start(processes, tmp_path, f"127.0.0.1:{be.port}")
        r = get(p)
        assert (r.status, r.body) == (503, b"nope")
        assert len(be.bodies) == 1
        assert metric(p, "upstream_rq_retry") == 0
    finally:
        be.close()


def test_module_retry_policy_is_the_default(processes, tmp_path):
    be = FlakyBackend(fails=1, status=409)
    try:
        p = start(processes, tmp_path, f"127.0.0.1:{be.port}",
                  module="retry_policy: {retry_on: retriable-4xx, num_retries: 2}")
        r = get(p)
        assert (r.status, r.body) == (200, b"ok")
        assert len(be.bodies) == 2
        assert metric(p, "upstream_rq_retry") == 1
    finally:
        be.close()


def test_retriable_status_codes(processes, tmp_path):
    be = FlakyBackend(fails=1, status=418)
    try:
        p = start(processes, tmp_path, f"127.0.0.1:{be.port}",
                  retry_policy={"retry_on": "retriable-status-codes", "retriable_status_codes": [418]})
        assert get(p).status == 200
        assert len(be.bodies) == 2
    finally:
        be.close()


def test_overloaded_answer_not_retried(processes, tmp_path):
    be = FlakyBackend(fails=1, extra=b"x-envoy-overloaded: true\r\n")
    try:
        p = start(processes, tmp_path, f"127.0.0.1:{be.port}", retry_policy={"retry_on": "5xx"})
        assert get(p).status == 503
        assert len(be.bodies) == 1
    finally:
        be.close()


def test_connect_failure_retried_then_urx(processes, tmp_path):
    dead = free_port()
    p = start(processes, tmp_path, f"127.0.0.1:{dead}",
              retry_policy={"retry_on": "connect-failure", "num_retries": 2})
    r = get(p)
    assert r.status == 503
    assert r.body == (FAILED + b"retried and the latest reset reason: remote connection failure, "
                      b"transport failure reason: delayed connect error: Connection refused")
    assert metric(p, "upstream_rq_retry") == 2
    assert metric(p, "upstream_rq_retry_limit_exceeded") == 1
    assert metric(p, "upstream_cx_connect_fail") == 3
    m = last_access(p, 1)
    assert (m["code"], m["flags"]) == ("503", "UF,URX")


def test_connect_failure_policy_does_not_retry_a_reset(processes, tmp_path):
    be = ClosingBackend()
    try:
        p = start(processes, tmp_path, f"127.0.0.1:{be.port}", retry_policy={"retry_on": "connect-failure"})
        r = get(p)
        assert r.status == 503
        assert r.body == FAILED + b"reset reason: connection termination"
        assert be.connections == 1
        assert metric(p, "upstream_rq_retry") == 0
        m = last_access(p, 1)
        assert m["flags"] == "UC"
    finally:
        be.close()


def test_reset_retried_with_5xx(processes, tmp_path):
    be = ClosingBackend()
    try:
        p = start(processes, tmp_path, f"127.0.0.1:{be.port}", retry_policy={"retry_on": "5xx", "num_retries": 2})
        r = get(p)
        assert r.body == FAILED + b"retried and the latest reset reason: connection termination"
        assert be.connections == 3
        assert last_access(p, 1)["flags"] == "UC,URX"
    finally:
        be.close()


@pytest.mark.parametrize("chunked", [False, True])
def test_post_body_sent_again(processes, tmp_path, chunked):
    be = FlakyBackend(fails=1)
    body = bytes(range(256)) * 40  # 10 KiB
    try:
        p = start(processes, tmp_path, f"127.0.0.1:{be.port}", retry_policy={"retry_on": "5xx"})
        if chunked:
            wire = b"1000\r\n" + body[:4096] + b"\r\n" + b"%x\r\n" % (len(body) - 4096) + body[4096:] + b"\r\n0\r\n\r\n"
            r = get(p, method="POST", body=wire, headers=[("Transfer-Encoding", "chunked")])
        else:
            r = get(p, method="POST", body=body)
        assert (r.status, r.body) == (200, b"ok")
        assert be.bodies == [body, body]
    finally:
        be.close()


def test_body_over_the_bound_not_retried(processes, tmp_path):
    be = FlakyBackend(fails=1)
    body = b"x" * (1024 * 1024 + 1)
    try:
        p = start(processes, tmp_path, f"127.0.0.1:{be.port}", retry_policy={"retry_on": "5xx"})
        r = get(p, method="POST", body=body)
        assert (r.status, r.body) == (503, b"nope")
        assert len(be.bodies) == 1 and len(be.bodies[0]) == len(body)
        assert metric(p, "upstream_rq_retry") == 0
    finally:
        be.close()


def test_per_try_timeout(processes, tmp_path):
    q = start_quote(processes)
    p = start(processes, tmp_path, f"127.0.0.1:{q.port}",
              retry_policy={"retry_on": "5xx", "per_try_timeout": "0.15s"})
    t0 = time.monotonic()
    r = get(p, "/backend/delay/1000")
    took = time.monotonic() - t0
    assert (r.status, r.body) == (504, b"upstream request timeout")
    assert 0.3 <= took < 0.9, took  # two tries of 150 ms and a back-off, not the 3 s route timeout
    assert metric(p, "upstream_rq_per_try_timeout") == 2
    assert metric(p, "upstream_rq_retry") == 1
    assert metric(p, "upstream_rq_timeout") == 0
    assert last_access(p, 1)["flags"] == "UT,URX"


def test_route_timeout_bounds_all_tries(processes, tmp_path):
    be = FlakyBackend(fails=10 ** 6)
    try:
        p = start(processes, tmp_path, f"127.0.0.1:{be.port}", timeout_ms=300,
                  retry_policy={"retry_on": "5xx", "num_retries": 200})
        t0 = time.monotonic()
        r = get(p)
        assert (r.status, r.body) == (504, b"upstream request timeout")
        assert time.monotonic() - t0 < 1.0
        assert len(be.bodies) > 2
        assert last_access(p, 1)["flags"] == "UT"
    finally:
        be.close()


@pytest.mark.parametrize("policy,message", [
    ({"retry_on": "sometimes"}, "retry_policy.retry_on: expected 5xx"),
    ({"retry_on": "5xx", "per_try_timeout": "soon"}, "retry_policy.per_try_timeout: expected a duration"),
    ({"num_retries": 2}, "retry_policy.retry_on: expected 5xx"),
])
def test_bad_policy_rejects_the_mapping(processes, tmp_path, policy, message):
    be = FlakyBackend(fails=0)
    try:
        p = start(processes, tmp_path, f"127.0.0.1:{be.port}", retry_policy=policy)
        assert message in p.log()
        assert get(p).status == 404  # the Mapping is not served
    finally:
        be.close()
