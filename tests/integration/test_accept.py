"""Accepting connections: a burst is always accepted, running out of file descriptors pauses
accepting instead of spinning, and the per-worker connection limit (issue 9, point 9).
docs/configuration.md section 12 (--max-connections) and 11 (the counters)."""

import errno
import os
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
