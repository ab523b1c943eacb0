"""Property test for request framing (issue 9, point 13): whatever bytes a client sends, either
Portico rejects the request (a 4xx/5xx local reply, and the backend receives nothing for it), or
the backend receives exactly the request Portico parsed: read with the same strict parser
(build/tests/h1parse, Portico's pt_h1_parse_request and chunked decoder), one request with the
same method, target, end-to-end headers in order and body bytes, and nothing left over that
could be read as another request.

The corpus (framing_corpus.py, fixed seed) holds the classes of issue 9, the smuggling classes
of test_http1_parser.py and random mutations of valid requests; each is sent alone on its own
connection, and then pipelined pairs. The backend (RawRecorder) is a Python socket server that
records every byte per connection and answers each request it can parse with a fixed response.

What "the same" means, computed from the client's bytes as Portico parses them:
- headers: the client's minus the hop-by-hop ones (Connection, Keep-Alive, Proxy-Connection, TE,
  Transfer-Encoding, Upgrade) and those any Connection header names, except Host,
  Content-Length, Transfer-Encoding, TE and Upgrade, which a Connection option cannot remove;
  Content-Length and Transfer-Encoding are compared as the body (Portico writes the framing);
  what Portico sets itself (x-forwarded-for, x-forwarded-proto, x-request-id, expect,
  x-envoy-original-path, x-envoy-expected-rq-timeout-ms, x-envoy-internal,
  x-envoy-external-address) is left out on both sides.
- Host: the client's, or the authority of an absolute-form target (RFC 9112 §3.2.2); any when
  the client sent none (HTTP/1.0).
- target: origin-form; both sides compared after Envoy's path normalization (unreserved
  %XX decoded, dot segments removed), which Portico may or may not have applied.
"""

import json
import re
import socket
import subprocess
import threading
import time
from collections import OrderedDict
from urllib.parse import unquote_to_bytes

import pytest
import requests

from conftest import RawConn, binary
from framing_corpus import corpus, pairs
from portico import docs, listener_yaml, mapping_yaml, start_portico

# Connection: close, so that Portico never reuses a backend connection: bytes one case leaves
# on a connection (a smuggled request) can then not be answered in the next case's place, and
# every connection's bytes belong to one case. The backend keeps reading until Portico closes.
BACKEND_REPLY = (b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n"
                 b"X-Recorder: ok\r\n\r\nrecorded")
BACKEND_REPLY_HEAD = (b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n"
                      b"X-Recorder: ok\r\n\r\n")
BACKEND_BAD = (b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n"
               b"X-Recorder: bad\r\n\r\n")

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "transfer-encoding",
              "upgrade"}
PORTICO_SETS = {"x-forwarded-for", "x-forwarded-proto", "x-request-id", "expect",
                "x-envoy-original-path", "x-envoy-expected-rq-timeout-ms", "x-envoy-internal",
                "x-envoy-external-address"}
FRAMING = {"content-length", "transfer-encoding"}
UNREMOVABLE = {"host", "content-length", "transfer-encoding", "te", "upgrade"}
TIME_BUDGET = 60.0  # seconds for the exchange loop; the test stops and fails beyond it


def h1parse(data):
    """Portico's parser on one byte stream: {"requests": [...], "status", "rest"}."""
    out = subprocess.run([str(binary("tests/h1parse"))], input=data, capture_output=True,
                         timeout=10, check=True).stdout
    return json.loads(out)


def h1parse_batch(items):
    blob = b"".join(b"%d\n" % len(d) + d for d in items)
    out = subprocess.run([str(binary("tests/h1parse")), "--batch"], input=blob,
                         capture_output=True, timeout=30, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def b(s):
    return s.encode("latin-1")


class RawRecorder:
    """A backend that records every byte it receives, per connection, until the peer closes,
    and answers the first request of each connection it parses (with h1parse) with
    BACKEND_REPLY; bytes h1parse rejects get BACKEND_BAD. ``events``: (connection number,
    bytes) in arrival order; ``last``: time of the last."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.events = []
        self.accepted = 0
        self.last = time.monotonic()
        self.conns = []
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        n = 0
        while not self.closing:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            n += 1
            with self.lock:
                self.accepted = n
            self.conns.append(conn)
            threading.Thread(target=self._serve, args=(conn, n), daemon=True).start()

    def _serve(self, conn, cid):
        buf, answered = b"", False
        try:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                with self.lock:
                    self.events.append((cid, data))
                    self.last = time.monotonic()
                if answered:
                    continue
                buf += data
                res = h1parse(buf)
                if res["requests"]:
                    r = res["requests"][0]
                    conn.sendall(BACKEND_REPLY_HEAD if r["method"] == "HEAD" else BACKEND_REPLY)
                    answered = True
                elif res["status"] in ("badmsg", "toobig"):
                    conn.sendall(BACKEND_BAD)
                    answered = True
        except OSError:
            return
        finally:
            conn.close()

    def mark(self):
        """Where the next case starts: the events so far, and the connections accepted so far
        (every case reaches the backend on connections of its own, since the backend closes
        each after one answer, so late bytes of an earlier case are never counted)."""
        with self.lock:
            return len(self.events), self.accepted

    def settle(self, quiet=0.02, cap=0.3):
        """Waits until nothing has arrived for <quiet> seconds (at most <cap>)."""
        end = time.monotonic() + cap
        while time.monotonic() < end:
            with self.lock:
                idle = time.monotonic() - self.last
            if idle >= quiet:
                return
            time.sleep(quiet - idle)

    def since(self, mark):
        """The bytes received since <mark>, per connection, in order of first arrival."""
        with self.lock:
            evs = self.events[mark[0]:]
        per = OrderedDict()
        for cid, data in evs:
            if cid > mark[1]:
                per[cid] = per.get(cid, b"") + data
        return per

    def close(self):
        self.closing = True
        self.sock.close()
        for c in self.conns:
            try:
                c.close()
            except OSError:
                pass


# ---- what the backend must receive ----

UNRESERVED = re.compile(rb"%([0-9A-Fa-f]{2})")


def normalize_target(t):
    """Envoy's normalize_path on the path part: unreserved %XX decoded, other %xx upper-cased,
    dot segments removed (RFC 3986 §5.2.4). The query is left alone."""
    path, sep, query = t.partition(b"?")

    def dec(m):
        c = bytes([int(m.group(1), 16)])
        return c if re.fullmatch(rb"[A-Za-z0-9._~-]", c) else b"%" + m.group(1).upper()
    path = UNRESERVED.sub(dec, path)
    out = []
    for seg in path.split(b"/")[1:] if path.startswith(b"/") else path.split(b"/"):
        if seg == b".":
            continue
        if seg == b"..":
            if out:
                out.pop()
            continue
        out.append(seg)
    trailing = path.endswith((b"/.", b"/..")) and out
    path = b"/" + b"/".join(out) + (b"/" if trailing else b"")
    return path + sep + query


def origin_form(req):
    """The target as forwarded: an absolute-form target without scheme and authority."""
    t = b(req["target"])
    m = re.match(rb"^[A-Za-z][A-Za-z0-9+.-]*://[^/?]*", t)
    if not m:
        return t
    rest = t[m.end():]
    return rest if rest.startswith(b"/") else b"/" + rest


def connection_options(headers):
    return {tok.strip().lower() for n, v in headers if n.lower() == "connection"
            for tok in v.split(",") if tok.strip()}


def expected(req):
    """(method, target, host or None for any, [(name, value)], body) as Portico must forward."""
    headers = req["headers"]
    named = connection_options(headers) - UNREMOVABLE
    drop = HOP_BY_HOP | PORTICO_SETS | FRAMING | named | {"host"}
    kept = [(n.lower(), v) for n, v in headers if n.lower() not in drop]
    hosts = [v for n, v in headers if n.lower() == "host"]
    host = req["authority"] if req["authority"] else (hosts[0] if hosts else None)
    return (req["method"], normalize_target(origin_form(req)), host, kept, req["body"])


def received(req):
    """The same view of a request the backend received."""
    headers = req["headers"]
    drop = HOP_BY_HOP | PORTICO_SETS | FRAMING | {"host"}
    kept = [(n.lower(), v) for n, v in headers if n.lower() not in drop]
    hosts = [v for n, v in headers if n.lower() == "host"]
    return (req["method"], normalize_target(b(req["target"])), hosts, kept, req["body"])


def differences(want, got):
    method, target, host, headers, body = want
    g_method, g_target, g_hosts, g_headers, g_body = got
    diffs = []
    if method != g_method:
        diffs.append(f"method {g_method!r} instead of {method!r}")
    if target != g_target:
        diffs.append(f"target {g_target!r} instead of {target!r}")
    if host is not None and g_hosts != [host]:
        diffs.append(f"host {g_hosts!r} instead of [{host!r}]")
    elif host is None and len(g_hosts) > 1:
        diffs.append(f"hosts {g_hosts!r}")
    if headers != g_headers:
        diffs.append(f"headers {g_headers!r} instead of {headers!r}")
    if body != g_body:
        diffs.append(f"body {b(g_body)[:60]!r} ({len(g_body)} bytes) instead of "
                     f"{b(body)[:60]!r} ({len(body)} bytes)")
    return diffs


# ---- one exchange ----

def exchange(port, data, parsed, timeout=2.0):
    """Sends <data> on a new connection and reads responses: one per complete request Portico
    should see, then (when the rest is incomplete) half-closes and reads to the end. Returns
    the final responses (1xx skipped) and whether a read timed out."""
    reqs = parsed["requests"]
    responses, timed_out = [], False
    c = RawConn(port, timeout=timeout)
    try:
        c.send(data)
        half_closed = False
        while True:
            i = len(responses)
            if i >= len(reqs) and parsed["status"] == "end":
                break
            if i >= len(reqs) and not half_closed:
                # an incomplete (or, before its end, invalid) head or body: Portico may wait
                # for more, so the client says there is none
                c.sock.shutdown(socket.SHUT_WR)
                half_closed = True
            head = i < len(reqs) and reqs[i]["method"] == "HEAD"
            r = c.read_response(head=head)
            if 100 <= r.status < 200 and r.status != 101:
                continue
            responses.append(r)
            if r.status == 101 or i > len(reqs) + 1:
                break
    except socket.timeout:
        timed_out = True
    except (ConnectionError, OSError, ValueError, AssertionError):
        pass
    finally:
        c.close()
    return responses, timed_out


def upstream_cx_total(admin_port):
    """The upstream connections Portico has opened (envoy_cluster_upstream_cx_total)."""
    text = requests.get(f"http://127.0.0.1:{admin_port}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("envoy_cluster_upstream_cx_total{"))


def sync(backend, admin_port, timeout=3.0):
    """Waits until the backend has accepted every connection Portico opened, so that no
    connection of this case is accepted (and counted) during the next one."""
    deadline = time.monotonic() + timeout
    while backend.accepted < upstream_cx_total(admin_port) and time.monotonic() < deadline:
        time.sleep(0.005)


def check_case(backend, port, admin_port, data, parsed):
    """The failures of one case (empty when it holds)."""
    mark = backend.mark()
    responses, timed_out = exchange(port, data, parsed)
    sync(backend, admin_port)
    backend.settle()
    per_conn = backend.since(mark)
    reqs = parsed["requests"]
    problems = []
    if timed_out:
        what = (f"after the client's FIN following {parsed['status']} bytes "
                if len(responses) >= len(reqs) else "")
        problems.append(f"connection neither answered nor closed within 2 s {what}"
                        f"({len(responses)} response(s))")

    want = []
    for i, r in enumerate(responses):
        from_backend = r.header("x-recorder") is not None
        if i >= len(reqs):
            if from_backend:
                problems.append(f"response {i + 1} came from the backend for bytes the strict "
                                f"parser does not read as a complete request "
                                f"({parsed['status']}: {b(parsed['rest'])[:80]!r})")
            elif r.status < 400:
                problems.append(f"local reply {r.status} to an invalid request")
            continue
        if from_backend:
            want.append(expected(reqs[i]))
        elif r.status < 400:
            problems.append(f"local reply {r.status} (neither a rejection nor the backend's)")

    got = []
    for cid, raw in per_conn.items():
        res = h1parse(raw)
        got.extend(received(q) for q in res["requests"])
        incomplete_ok = (res["status"] == "again" and parsed["status"] == "again"
                         and cid == next(reversed(per_conn)))
        if res["status"] != "end" and not incomplete_ok:
            # (a body still streaming when the client stopped sending may stay incomplete)
            problems.append(f"backend connection {cid}: {res['status']} after "
                            f"{len(res['requests'])} request(s): left over "
                            f"{b(res['rest'])[:120]!r}")
    if len(got) != len(want):
        problems.append(f"backend received {len(got)} request(s), expected {len(want)}: "
                        f"{[g[:2] for g in got]!r}; raw {list(per_conn.values())!r:.300}")
    else:
        for k, (w, g) in enumerate(zip(want, got)):
            problems += [f"request {k + 1}: {d}" for d in differences(w, g)]
    return problems


@pytest.fixture
def edge(processes, tmp_path):
    backend = RawRecorder()
    cfg = docs(listener_yaml(),
               mapping_yaml("all", f"127.0.0.1:{backend.port}", prefix="/", rewrite=""))
    p = start_portico(processes, tmp_path, cfg, workers=1)
    p.backend = backend
    yield p
    backend.close()


def test_framing_corpus_is_large_and_deterministic():
    singles, combos = corpus(), pairs()
    assert len(singles) >= 300 and len(combos) >= 50
    assert [d for _, d in singles] == [d for _, d in corpus()]
    assert len({d for _, d in singles}) == len(singles)


def test_backend_receives_exactly_what_portico_parsed(edge):
    cases = corpus() + pairs()
    parsed = h1parse_batch([d for _, d in cases])
    failures = OrderedDict()
    start = time.monotonic()
    for (name, data), p in zip(cases, parsed):
        if time.monotonic() - start > TIME_BUDGET:
            failures.setdefault("time", []).append((name, data, [f"over {TIME_BUDGET}s"]))
            break
        problems = check_case(edge.backend, edge.port, edge.admin_port, data, p)
        if problems:
            cls = name.split("/")[0]
            failures.setdefault(cls, []).append((name, data, problems))
        assert edge.proc.running, f"Portico died on {name}: {data!r}"
    if failures:
        lines = [f"{sum(len(v) for v in failures.values())} of {len(cases)} cases failed, "
                 f"in {len(failures)} classes:"]
        for cls, items in failures.items():
            lines.append(f"== {cls}: {len(items)} case(s): "
                         + " ".join(n.split("/", 1)[-1] for n, _, _ in items))
            for name, data, problems in items[:12]:
                lines.append(f"  {name}: {data[:160]!r}")
                lines += [f"    - {p}" for p in problems[:4]]
        pytest.fail("\n".join(lines), pytrace=False)
