"""Accepting connections: a burst is always accepted, running out of file descriptors pauses
accepting instead of spinning, and the per-worker connection limit (issue 9, point 9).
docs/configuration.md section 12 (--max-connections) and 11 (the counters)."""

import errno
import os
import re
import resource
import selectors
import socket
import time

import pytest

from portico_cfg import Portico, poll_until

NOT_FOUND_HEAD = b"HTTP/1.1 404 Not Found\r\n"
REQUEST = b"GET /nothing/here HTTP/1.1\r\nHost: burst.example\r\nConnection: close\r\n\r\n"


def raise_nofile(need):
    """Raises this process's soft RLIMIT_NOFILE to at least <need> (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {need}: raise it (ulimit -Hn)",
                        pytrace=False)
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))


def open_burst(port, n):
    """<n> non-blocking connects to <port>, all started before any is waited for."""
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex(("127.0.0.1", port))
        assert err in (0, errno.EINPROGRESS), os.strerror(err)
        socks.append(s)
    return socks


def exchange(socks, request, timeout):
    """Sends <request> on every socket once it is connected and reads each until the peer closes,
    for at most <timeout> s in all. Returns {socket: bytes received} for the sockets that got
    a complete (peer-closed) answer; the others are left out."""
    sel = selectors.DefaultSelector()
    got, done = {}, {}
    for s in socks:
        sel.register(s, selectors.EVENT_WRITE)
        got[s] = b""
    deadline = time.monotonic() + timeout
    while len(done) < len(socks) and time.monotonic() < deadline:
        for key, ev in sel.select(max(0.0, min(0.2, deadline - time.monotonic()))):
            s = key.fileobj
            if ev & selectors.EVENT_WRITE:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) != 0:
                    sel.unregister(s)
                    continue
                s.send(request)  # a few dozen bytes into an empty send buffer: never partial
                sel.modify(s, selectors.EVENT_READ)
                continue
            try:
                data = s.recv(65536)
            except ConnectionError:
                data = b""
            if data:
                got[s] += data
            else:
                sel.unregister(s)
                done[s] = got[s]
    sel.close()
    return done


def close_all(socks):
    for s in socks:
        s.close()


def test_a_burst_of_1500_connections_is_accepted_by_one_worker(processes, tmp_path):
    """1,500 clients connect at once to one worker, then each sends a request: every one is
    accepted and answered (404: no Mapping) within 15 s. Before, the edge-triggered listener
    accepted at most 64 connections per wake-up and was not re-armed: hundreds stayed in the
    kernel's queue for ever."""
    n = 1500
    raise_nofile(n + 1000)
    px = Portico(processes, tmp_path, workers=1).start()
    socks = open_burst(px.port, n)
    try:
        done = exchange(socks, REQUEST, 15.0)
        answered = [d for d in done.values() if d.startswith(NOT_FOUND_HEAD)]
        assert len(answered) == n, (f"{n - len(answered)} of {n} clients got no answer "
                                    f"({len(done)} closed)")
        assert all(b"\r\ncontent-length: 0\r\n" in d for d in answered), answered[0]
    finally:
        close_all(socks)
    assert px.metric("envoy_listener_downstream_cx_total") >= n
    assert px.metric("envoy_listener_downstream_cx_overflow") == 0


# ---- running out of file descriptors ----

NOFILE = 64  # portico needs about 17 descriptors of its own with one worker and one listener
KEEPALIVE_REQUEST = b"GET /nothing/here HTTP/1.1\r\nHost: burst.example\r\n\r\n"


class LimitedPortico(Portico):
    """Portico started under `prlimit --nofile=N:N` (prlimit execs it: same pid)."""

    def args(self, *extra):
        return ["prlimit", f"--nofile={NOFILE}:{NOFILE}", *super().args(*extra)]


def cpu_seconds(pid):
    """utime + stime of <pid> (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def answered_heads(socks, timeout):
    """Reads every socket for <timeout> s; returns the set of those that received a whole
    response head (keep-alive 404 with content-length 0, so the head is the whole answer)."""
    sel = selectors.DefaultSelector()
    got = {s: b"" for s in socks}
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    done = set()
    while len(done) < len(socks) and time.monotonic() < deadline:
        for key, _ in sel.select(max(0.0, min(0.1, deadline - time.monotonic()))):
            s = key.fileobj
            try:
                data = s.recv(65536)
            except ConnectionError:
                data = b""
            got[s] += data
            if b"\r\n\r\n" in got[s] or not data:
                sel.unregister(s)
                if got[s].startswith(NOT_FOUND_HEAD) and b"\r\n\r\n" in got[s]:
                    done.add(s)
    sel.close()
    return done


def test_out_of_descriptors_pauses_accepting_then_serves_the_queue(processes, tmp_path):
    """Portico with RLIMIT_NOFILE 64 gets 80 keep-alive clients at once: it serves what its
    descriptors allow, warns once (rate-limited), counts the pauses and does not spin while the
    rest wait in the kernel's queue. Once the first clients close, the waiting ones are accepted
    and answered with no new connection to wake the listener (before, they waited for ever)."""
    px = LimitedPortico(processes, tmp_path, workers=1).start()
    pid = px.proc.pid
    socks = open_burst(px.port, 80)
    try:
        for s in socks:
            poll_until(lambda s=s: s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 and
                       s.send(KEEPALIVE_REQUEST) > 0, 5)
        first = answered_heads(socks, 1.5)
        waiting = [s for s in socks if s not in first]
        assert first and waiting, (len(first), len(waiting))
        px.proc.wait_log(r"portico warn: worker 0: accept: Too many open files: not accepting "
                         r"connections for 250 ms", 2)
        cpu0 = cpu_seconds(pid)
        time.sleep(1.0)
        cpu = cpu_seconds(pid) - cpu0
        assert cpu < 0.1, f"{cpu:.2f} s of CPU in 1 s while out of descriptors: spinning"
        assert answered_heads(waiting, 0.1) == set(), "answered while out of descriptors?"
        # the admin server is out of descriptors too: its client waits in the queue
        probe = socket.create_connection(("127.0.0.1", px.admin_port), timeout=5)
        socks.append(probe)
        probe.sendall(b"GET /ambassador/v0/check_alive HTTP/1.1\r\nHost: admin\r\n\r\n")
        time.sleep(0.3)
        for s in first:
            s.close()
        late = answered_heads(waiting, 3.0)
        assert len(late) == len(waiting), f"{len(waiting) - len(late)} queued clients never served"
        probe.settimeout(3.0)
        assert probe.recv(100).startswith(b"HTTP/1.1 200 OK\r\n"), "admin client never served"
    finally:
        close_all(socks)
    ok, _ = poll_until(lambda: px.get("/nothing/").status == 404, 3)
    assert ok, "new connections are not served after the descriptors came back"
    pauses = px.metric("portico_accept_pauses_total")
    assert pauses >= 4, pauses  # one every 250 ms for over a second
    warnings = [ln for ln in px.log().splitlines() if "worker 0: accept: Too many open files" in ln]
    assert len(warnings) == 1, warnings
    assert re.search(r"portico warn: admin: accept: Too many open files: not accepting connections "
                     r"for 250 ms", px.log())


# ---- --max-connections ----

def test_connections_over_max_connections_are_closed_at_once_and_counted(processes, tmp_path):
    """--max-connections 3 with one worker: a fourth client is closed at once without an answer,
    counted in envoy_listener_downstream_cx_overflow (not in downstream_cx_total) and warned about
    once; when a client leaves, the next one is served."""
    px = Portico(processes, tmp_path, workers=1)
    px.args = lambda *extra, _args=px.args: _args("--max-connections", "3", *extra)
    px.start()
    total0 = px.metric("envoy_listener_downstream_cx_total")
    held = open_burst(px.port, 3)
    try:
        for s in held:
            poll_until(lambda s=s: s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0 and
                       s.send(KEEPALIVE_REQUEST) > 0, 5)
        assert len(answered_heads(held, 3.0)) == 3
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", px.port), timeout=3) as s:
                s.sendall(KEEPALIVE_REQUEST)
                try:
                    assert s.recv(100) == b""
                except ConnectionResetError:
                    pass
        held.pop().close()
        ok, _ = poll_until(lambda: px.metric("envoy_listener_downstream_cx_active") == 2, 3)
        assert ok, "the closed client is still counted as open"
        ok, _ = poll_until(lambda: px.get("/nothing/").status == 404, 3)
        assert ok, "not served again after a client left"
    finally:
        close_all(held)
    assert px.metric("envoy_listener_downstream_cx_overflow") == 2
    assert px.metric("envoy_listener_downstream_cx_total") - total0 >= 4
    warnings = [ln for ln in px.log().splitlines() if "(--max-connections)" in ln]
    assert len(warnings) == 1, warnings
    assert "portico warn: worker 0: 3 connections open (--max-connections): new connections " \
           "are closed" in warnings[0], warnings[0]
