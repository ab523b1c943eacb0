"""load_balancer (issue 13, point 3): Emissary's Mapping (and Module default) field with Envoy's
policies. round_robin (the default), least_request (two random choices, the one with fewer
active requests), ring_hash and maglev with a hash policy on a cookie (a ttl makes Envoy's
cookie and sends it in a Set-Cookie when the request has none), a header, or the source IP.

Ten real backends (portico-quote --name bN on 127.0.0.N, one port) stand behind one Service.
Where a request goes is predicted here with an independent Python copy of Envoy's algorithms
(xxHash64, the ring of ceil(1024/n) points per "ip:port", the 65537-slot Maglev table), so the
tests check the exact endpoint, not only stickiness."""

import collections
import http.client
import json
import re
import socket
import threading
import time
import http.server

import pytest

from conftest import binary
from portico_cfg import (Portico, check, doc, dump, endpoints, line_of, mapping, poll_until,
                         same_port_two_addrs, service)

M64 = (1 << 64) - 1
P1, P2, P3, P4, P5 = (0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9,
                      0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5)


def _rotl(x, r):
    return ((x << r) | (x >> (64 - r))) & M64


def _lane(acc, v):
    return (_rotl((acc + v * P2) & M64, 31) * P1) & M64


def xxh64(data, seed=0):
    """XXH64 of <data> (bytes or str), as the algorithm's description gives it."""
    if isinstance(data, str):
        data = data.encode()
    n, i = len(data), 0
    if n >= 32:
        v = [(seed + P1 + P2) & M64, (seed + P2) & M64, seed, (seed - P1) & M64]
        while i + 32 <= n:
            for k in range(4):
                v[k] = _lane(v[k], int.from_bytes(data[i + 8 * k:i + 8 * k + 8], "little"))
            i += 32
        h = (_rotl(v[0], 1) + _rotl(v[1], 7) + _rotl(v[2], 12) + _rotl(v[3], 18)) & M64
        for k in range(4):
            h = ((h ^ _lane(0, v[k])) * P1 + P4) & M64
    else:
        h = (seed + P5) & M64
    h = (h + n) & M64
    while i + 8 <= n:
        h ^= _lane(0, int.from_bytes(data[i:i + 8], "little"))
        h = (_rotl(h, 27) * P1 + P4) & M64
        i += 8
    if i + 4 <= n:
        h ^= (int.from_bytes(data[i:i + 4], "little") * P1) & M64
        h = (_rotl(h, 23) * P2 + P3) & M64
        i += 4
    while i < n:
        h ^= (data[i] * P5) & M64
        h = (_rotl(h, 11) * P1) & M64
        i += 1
    h ^= h >> 33
    h = (h * P2) & M64
    h ^= h >> 29
    h = (h * P3) & M64
    return h ^ (h >> 32)


def ring(names):
    """Envoy's ring for equally weighted hosts <names> ("ip:port"): sorted (hash, name)."""
    per = -(-1024 // len(names))
    return sorted((xxh64(f"{n}_{i}"), n) for n in names for i in range(per))


def ring_pick(points, h):
    lo, hi = 0, len(points)
    while lo < hi:
        mid = (lo + hi) // 2
        if points[mid][0] < h:
            lo = mid + 1
        else:
            hi = mid
    return points[lo if lo < len(points) else 0][1]


def maglev(names, m=65537):
    """Envoy's Maglev table for equally weighted hosts <names>."""
    perm = [[xxh64(n) % m, xxh64(n, 1) % (m - 1) + 1, 0, n] for n in sorted(names)]
    table, filled = [None] * m, 0
    while filled < m:
        for p in perm:
            if filled == m:
                break
            c = (p[0] + p[1] * p[2]) % m
            while table[c] is not None:
                p[2] += 1
                c = (p[0] + p[1] * p[2]) % m
            table[c] = p[3]
            p[2] += 1
            filled += 1
    return table


def test_xxh64_copy():
    # Envoy's test/common/common/hash_test.cc: the Python copy the predictions use is right
    assert xxh64("foo") == 3728699739546630719
    assert xxh64("lyft") == 4400747396090729504
    assert xxh64("") == 17241709254077376921
    assert xxh64(bytes((i * 7 + 3) & 0xFF for i in range(39)), 1) == 691102098672358306


ADDRS = tuple(f"127.0.0.{i}" for i in range(1, 11))


@pytest.fixture
def ten(processes):
    """Ten quote backends, b1..b10 on 127.0.0.1..10, one port: (port, {"ip:port": name})."""
    port = same_port_two_addrs(ADDRS)
    names = {}
    for i, addr in enumerate(ADDRS, 1):
        processes.start([binary("portico-quote"), "--port", port, "--bind", addr, "--name",
                         f"b{i}", "--echo"], name=f"quote-b{i}", port=port, host=addr)
        names[f"{addr}:{port}"] = f"b{i}"
    return port, names


def lb_config(port, lb, addrs=ADDRS, extra=()):
    return dump(service("lbsvc", 80, port), endpoints("lbsvc", list(addrs), port),
                mapping("sticky", "/s/", "lbsvc", load_balancer=lb), *extra)


def started(processes, tmp_path, text, workers=2):
    px = Portico(processes, tmp_path, workers=workers)
    px.write("lb.yaml", text)
    px.start()
    return px


def served_by(px, path, headers=None, conn=None):
    """The backend that answered GET <path> (a new connection unless <conn>)."""
    if conn is None:
        r = px.get(path, headers=headers)
        assert r.status == 200, r
        return r.json()["server"]
    conn.request("GET", path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    assert r.status == 200, (r.status, body)
    return json.loads(body)["server"]


def keys_map(px, n, conns):
    """Where users u0..u<n-1> (header x-user) go, spread over <conns> keep-alive connections
    (both workers)."""
    return {f"u{k}": served_by(px, f"/s/{k}", {"x-user": f"u{k}"}, conns[k % len(conns)])
            for k in range(n)}


def connections(px, n=4):
    return [http.client.HTTPConnection("127.0.0.1", px.port, timeout=5) for _ in range(n)]


# ---- ring_hash and maglev: exact endpoints, stickiness, reload, loss of an endpoint ----------

@pytest.mark.parametrize("policy", ["ring_hash", "maglev"])
def test_header_hash_goes_where_envoy_would(processes, tmp_path, ten, policy):
    port, names = ten
    px = started(processes, tmp_path, lb_config(port, {"policy": policy, "header": "x-user"}))
    table = ring(list(names)) if policy == "ring_hash" else maglev(list(names))
    pick = (lambda h: ring_pick(table, h)) if policy == "ring_hash" else (lambda h: table[h % 65537])
    conns = connections(px)
    got = keys_map(px, 120, conns)
    want = {k: names[pick(xxh64(k))] for k in got}
    assert got == want
    assert len(set(got.values())) >= 8, collections.Counter(got.values())
    # no x-user: no hash, random picks across the backends
    seen = {served_by(px, "/s/none", conn=conns[0]) for _ in range(40)}
    assert len(seen) >= 4, seen
    for c in conns:
        c.close()


@pytest.mark.parametrize("policy,bound", [("ring_hash", 0.35), ("maglev", 0.2)])
def test_sticky_across_reload_and_endpoint_loss(processes, tmp_path, ten, policy, bound):
    # One of 10 endpoints leaves: its tenth of the keys moves, and a few more (Maglev refills
    # its table; Envoy's ring gives each of 9 endpoints 114 points where each of 10 had 103:
    # 0.13-0.24 moved in all, by the addresses). A modulo would move 9 in 10.
    port, names = ten
    lb = {"policy": policy, "header": "x-user"}
    px = started(processes, tmp_path, lb_config(port, lb))
    conns = connections(px)
    before = keys_map(px, 200, conns)
    # a reload that changes something else: every key stays
    px.write("other.yaml", dump(mapping("probe", "/probe/", f"127.0.0.1:{port}")))
    ok, _ = poll_until(lambda: px.status("/probe/x") == 200, 5.0, 0.01)
    assert ok
    assert keys_map(px, 200, conns) == before
    # b4 (127.0.0.4) leaves the Endpoints: its keys move, few others do
    px.write("lb.yaml", lb_config(port, lb, addrs=[a for a in ADDRS if a != "127.0.0.4"]))
    ok, _ = poll_until(lambda: "b4" not in {served_by(px, f"/s/{k}", {"x-user": k})
                                            for k, v in before.items() if v == "b4"}, 5.0, 0.02)
    assert ok
    for c in conns:
        c.close()
    conns = connections(px)
    after = keys_map(px, 200, conns)
    moved = [k for k in before if after[k] != before[k]]
    assert all(after[k] != "b4" for k in after)
    assert {k for k in before if before[k] == "b4"} <= set(moved)
    share = len(moved) / len(before)
    modulo = sum(xxh64(k) % 10 != xxh64(k) % 9 for k in before) / len(before)
    print(f"{policy}: {share:.3f} of the keys moved; a modulo would move {modulo:.3f}")
    assert share <= bound and modulo >= 0.8, (share, modulo)
    left = {n: v for n, v in names.items() if v != "b4"}
    if policy == "ring_hash":
        pts = ring(list(left))
        assert after == {k: left[ring_pick(pts, xxh64(k))] for k in after}
    else:
        table = maglev(list(left))
        assert after == {k: left[table[xxh64(k) % 65537]] for k in after}
    for c in conns:
        c.close()


# ---- cookie ---------------------------------------------------------------------------------

def raw_get(port, path, extra=b""):
    """GET <path> on a new connection: (the response head as bytes, the client's port, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        cport = s.getsockname()[1]
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n".encode() + extra + b"\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            assert chunk, data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        n = int(re.search(rb"\r\ncontent-length: (\d+)", head).group(1))
        while len(body) < n:
            chunk = s.recv(65536)
            assert chunk
            body += chunk
    return head, cport, body


def test_cookie_with_ttl_sets_envoys_cookie(processes, tmp_path, ten):
    port, names = ten
    px = started(processes, tmp_path, lb_config(
        port, {"policy": "ring_hash", "cookie": {"name": "sticky", "path": "/s/", "ttl": "60s"}}))
    pts = ring(list(names))
    head, cport, body = raw_get(px.port, "/s/a")
    value = f"{xxh64(f'127.0.0.1:{cport}127.0.0.1:{px.port}'):016x}"
    head = re.sub(rb"\r\ndate: [^\r]*", b"\r\ndate: DATE", head)
    head = re.sub(rb"\r\nx-envoy-upstream-service-time: \d+", b"\r\nx-envoy-upstream-service-time: T", head)
    assert head == (b"HTTP/1.1 200 OK\r\ndate: DATE\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\nx-envoy-upstream-service-time: T\r\n"
                    b"set-cookie: sticky=\"%s\"; Max-Age=60; Path=/s/; HttpOnly\r\n"
                    b"server: envoy" % (len(body), value.encode())), head
    assert json.loads(body)["server"] == names[ring_pick(pts, xxh64(value))]
    # the cookie sent back (quoted as given, or bare): the same backend, no new cookie
    for cookie in (f'sticky="{value}"', f"other=1; sticky={value}"):
        h2, _, b2 = raw_get(px.port, "/s/b", f"Cookie: {cookie}\r\n".encode())
        assert b"set-cookie" not in h2.lower(), h2
        assert json.loads(b2)["server"] == names[ring_pick(pts, xxh64(value))]
    # other cookies spread by their own hash
    for k in range(30):
        _, _, b3 = raw_get(px.port, "/s/c", f"Cookie: sticky=k{k}\r\n".encode())
        assert json.loads(b3)["server"] == names[ring_pick(pts, xxh64(f"k{k}"))]


def test_cookie_without_ttl_sets_nothing(processes, tmp_path, ten):
    port, names = ten
    px = started(processes, tmp_path, lb_config(
        port, {"policy": "maglev", "cookie": {"name": "sticky"}},
        extra=[mapping("ttl0", "/z/", "lbsvc", load_balancer={
            "policy": "maglev", "cookie": {"name": "sess", "ttl": "0s"}})]))
    table = maglev(list(names))
    head, _, _ = raw_get(px.port, "/s/a")
    assert b"set-cookie" not in head.lower(), head
    _, _, body = raw_get(px.port, "/s/a", b"Cookie: sticky=abc\r\n")
    assert json.loads(body)["server"] == names[table[xxh64("abc") % 65537]]
    # ttl 0s: a session cookie, without Max-Age or Path
    head, cport, _ = raw_get(px.port, "/z/a")
    value = f"{xxh64(f'127.0.0.1:{cport}127.0.0.1:{px.port}'):016x}"
    assert f'\r\nset-cookie: sess="{value}"; HttpOnly\r\nserver: envoy'.encode() in head, head


def test_source_ip(processes, tmp_path, ten):
    port, names = ten
    px = started(processes, tmp_path, lb_config(port, {"policy": "ring_hash", "source_ip": True}))
    pts = ring(list(names))
    for src in ("127.0.0.1", "127.0.0.7", "127.0.0.23", "127.0.0.42"):
        got = set()
        for _ in range(3):
            c = http.client.HTTPConnection("127.0.0.1", px.port, timeout=5, source_address=(src, 0))
            got.add(served_by(px, "/s/x", conn=c))
            c.close()
        assert got == {names[ring_pick(pts, xxh64(src))]}, (src, got)


# ---- least_request and round_robin ----------------------------------------------------------

class _Slow(http.server.BaseHTTPRequestHandler):
    """Answers every request after 300 ms, as {"server": "slow"}."""
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        time.sleep(0.3)
        body = b'{"server": "slow"}'
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *a):
        pass


def test_least_request_avoids_the_busy_endpoint(processes, tmp_path):
    # One fast backend, one that takes 300 ms, 8 clients at once: least_request sends a new
    # request to the slow one only when both of its random choices are it (1/4), or it has no
    # more requests running than the fast one; round robin sends it half of them.
    port = same_port_two_addrs()
    processes.start([binary("portico-quote"), "--port", port, "--bind", "127.0.0.1", "--name",
                     "fast", "--echo"], name="quote-fast", port=port, host="127.0.0.1")
    slow = http.server.ThreadingHTTPServer(("127.0.0.2", port), _Slow)
    threading.Thread(target=slow.serve_forever, daemon=True).start()
    try:
        shares = {}
        for policy in ("least_request", "round_robin"):
            px = started(processes, tmp_path / policy, lb_config(
                port, {"policy": policy}, addrs=["127.0.0.1", "127.0.0.2"]), workers=1)
            got = collections.Counter()

            def client(n):
                c = http.client.HTTPConnection("127.0.0.1", px.port, timeout=5)
                for i in range(n):
                    got[served_by(px, f"/s/{i}", conn=c)] += 1
                c.close()

            threads = [threading.Thread(target=client, args=(16,)) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(30)
            assert sum(got.values()) == 128, got
            shares[policy] = got["slow"] / 128
            px.stop()
        assert shares["round_robin"] >= 0.45, shares  # 1/2
        assert shares["least_request"] <= 0.4, shares  # about 1/4
    finally:
        slow.shutdown()
        slow.server_close()


def test_round_robin_is_the_default_and_sets_no_cookie(processes, tmp_path, ten):
    port, names = ten
    px = started(processes, tmp_path, lb_config(port, {"policy": "round_robin"}))
    conn = http.client.HTTPConnection("127.0.0.1", px.port, timeout=5)
    got = [served_by(px, f"/s/{i}", {"x-user": "same"}, conn) for i in range(20)]
    assert len(set(got)) == 10, got  # the header means nothing to round robin
    conn.close()
    head, _, _ = raw_get(px.port, "/s/a")
    assert b"set-cookie" not in head.lower()


# ---- clusters keyed by the load balancer, the Module default -------------------------------

def test_policies_make_clusters_of_their_own(processes, tmp_path, ten):
    port, names = ten
    px = started(processes, tmp_path, dump(
        service("lbsvc", 80, port), endpoints("lbsvc", list(ADDRS), port),
        mapping("plain", "/p/", "lbsvc"),
        mapping("rr", "/r/", "lbsvc", load_balancer={"policy": "round_robin"}),
        mapping("hdr", "/h/", "lbsvc", load_balancer={"policy": "ring_hash", "header": "x-user"}),
        mapping("hdr2", "/h2/", "lbsvc", load_balancer={"policy": "ring_hash", "header": "x-user"}),
        mapping("ck", "/c/", "lbsvc", load_balancer={"policy": "maglev", "cookie": {"name": "s"}}),
        mapping("ip", "/i/", "lbsvc", load_balancer={"policy": "maglev", "source_ip": True}),
        mapping("lr", "/l/", "lbsvc", load_balancer={"policy": "least_request"})))
    got = sorted(c["name"] for c in px.diag()["clusters"])
    assert got == sorted([
        "cluster_lbsvc_default", "cluster_lbsvc_default_er_round_robin",
        "cluster_lbsvc_default_er_ring_hash_hdr_x_user", "cluster_lbsvc_default_er_maglev_cookie_s",
        "cluster_lbsvc_default_er_maglev_srcip", "cluster_lbsvc_default_er_least_request"]), got
    for p in ("/p/", "/r/", "/h/", "/h2/", "/c/", "/i/", "/l/"):
        assert px.status(p + "x") == 200, p


def test_module_default(processes, tmp_path, ten):
    port, names = ten
    module = doc("Module", "ambassador", {"config": {"load_balancer": {
        "policy": "maglev", "header": "x-user"}}})
    px = started(processes, tmp_path, dump(
        service("lbsvc", 80, port), endpoints("lbsvc", list(ADDRS), port), module,
        mapping("sticky", "/s/", "lbsvc"),
        mapping("own", "/o/", "lbsvc", load_balancer={"policy": "round_robin"})))
    assert sorted(c["name"] for c in px.diag()["clusters"]) == [
        "cluster_lbsvc_default_er_maglev_hdr_x_user", "cluster_lbsvc_default_er_round_robin"]
    table = maglev(list(names))
    conns = connections(px, 2)
    got = keys_map(px, 40, conns)
    assert got == {k: names[table[xxh64(k) % 65537]] for k in got}
    seen = {served_by(px, f"/o/{i}", {"x-user": "u1"}, conns[0]) for i in range(10)}
    assert len(seen) == 10, seen
    for c in conns:
        c.close()


# ---- invalid load balancers -----------------------------------------------------------------

@pytest.mark.parametrize("lb,needle,message", [
    ({"policy": "random"}, "load_balancer",
     "Invalid load_balancer specified: {'policy': 'random'}, invalidating mapping"),
    ({"policy": "round_robin", "header": "x-user"}, "load_balancer",
     "Invalid load_balancer specified: {'policy': 'round_robin', 'header': 'x-user'}, "
     "invalidating mapping"),
    ({"policy": "ring_hash"}, "load_balancer",
     "Invalid load_balancer specified: {'policy': 'ring_hash'}, invalidating mapping"),
    ({"policy": "maglev", "cookie": {"path": "/"}}, "load_balancer",
     "Invalid load_balancer specified: {'policy': 'maglev', 'cookie': {'path': '/'}}, "
     "invalidating mapping"),
    ({"policy": "maglev", "header": "x-a", "source_ip": True}, "load_balancer",
     "Invalid load_balancer specified: {'policy': 'maglev', 'header': 'x-a', 'source_ip': True}, "
     "invalidating mapping"),
    ({"policy": "ring_hash", "cookie": {"name": "a b"}}, "name: a b",
     "load_balancer.cookie.name: not a cookie name (a token of at most 128 characters)"),
    ({"policy": "ring_hash", "cookie": {"name": "s", "ttl": 60}}, "ttl:",
     "load_balancer.cookie.ttl: expected a duration in seconds such as \"60s\""),
    ({"policy": "ring_hash", "cookie": {"name": "s", "path": "/a;Domain=x"}}, "path:",
     "load_balancer.cookie.path: not a cookie path (no ';', at most 256 characters)"),
    ({"policy": "ring_hash", "header": "x user"}, "header:",
     "load_balancer.header: not a header name"),
    ({"policy": "ring_hash", "source_ip": "maybe"}, "source_ip:",
     "load_balancer.source_ip: expected true or false"),
], ids=["unknown", "hash-on-rr", "no-hash", "cookie-no-name", "two-hashes", "cookie-name",
        "ttl-number", "path-semicolon", "header-name", "source-ip"])
def test_check_rejects_bad_load_balancers(tmp_path, lb, needle, message):
    f = tmp_path / "c.yaml"
    f.write_text(dump(mapping("bad", "/bad/", "x.example", load_balancer=lb),
                      mapping("good", "/good/", "y.example",
                              load_balancer={"policy": "maglev", "source_ip": True})))
    r = check(tmp_path)
    assert r.returncode == 1, r.stdout
    assert r.stdout.splitlines() == [f"{f}:{line_of(f, needle)}: Mapping/default/bad: {message}"]


def test_bad_mapping_is_not_served_the_rest_is(processes, tmp_path, ten):
    port, names = ten
    px = started(processes, tmp_path, dump(
        service("lbsvc", 80, port), endpoints("lbsvc", list(ADDRS), port),
        mapping("bad", "/bad/", "lbsvc", load_balancer={"policy": "ring_hash"}),
        mapping("good", "/good/", "lbsvc", load_balancer={"policy": "ring_hash", "header": "h"})))
    assert px.status("/bad/x") == 404
    assert px.status("/good/x") == 200
    errors = px.diag()["errors"]
    assert len(errors) == 1 and "Invalid load_balancer specified" in json.dumps(errors), errors


def test_check_rejects_bad_module_default(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text(dump(doc("Module", "ambassador", {"config": {"load_balancer": {
        "policy": "least_request", "cookie": {"name": "s"}}}})))
    r = check(tmp_path)
    assert r.returncode == 1, r.stdout
    assert r.stdout.splitlines() == [
        f"{f}:{line_of(f, 'load_balancer')}: Module/default/ambassador: Invalid load_balancer "
        "specified: {'policy': 'least_request', 'cookie': {'name': 's'}}"]
