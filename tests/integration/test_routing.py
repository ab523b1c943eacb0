"""Route matching, ordering, rewrites and service resolution, end to end: real portico, real
backends (build/portico-quote --echo, so the JSON reply says which backend got the request and
with which path), real HTTP clients. Semantics: reference/emissary.md §3 and DESIGN.md."""

import collections
import http.client
import json

import pytest

import seed
from conftest import binary, start_quote
from portico_cfg import (Portico, backend_name, dump, endpoints, mapping, poll_until,
                         same_port_two_addrs, service)


def echo(processes, name):
    return start_quote(processes, "--echo", name=name)


def svc(b):
    return f"127.0.0.1:{b.port}"


@pytest.fixture
def ab(processes):
    """Two echo backends named A and B."""
    return echo(processes, "A"), echo(processes, "B")


def started(processes, tmp_path, *docs, **kw):
    px = Portico(processes, tmp_path, **kw)
    px.write("routes.yaml", dump(*docs))
    return px.start()


def who(px, path, **kw):
    r = px.get(path, **kw)
    return backend_name(r) if r.status == 200 else r.status


# ---- prefix matching and ordering ----

def test_longest_prefix_wins(processes, tmp_path, ab):
    a, b = ab
    px = started(processes, tmp_path,
                 mapping("short", "/a/", svc(a)),
                 mapping("long", "/a/b/", svc(b)))
    assert who(px, "/a/b/x") == "B"
    assert who(px, "/a/b/") == "B"
    assert who(px, "/a/x") == "A"
    assert who(px, "/a/bx") == "A"
    assert who(px, "/nothing") == 404


def test_prefix_is_not_segment_aware(processes, tmp_path, ab):
    # Envoy prefix semantics: /foo matches /foobar.
    a, _ = ab
    px = started(processes, tmp_path, mapping("m", "/foo", svc(a)))
    assert who(px, "/foobar") == "A"
    assert who(px, "/fo") == 404


def test_order_in_file_does_not_matter(processes, tmp_path, ab):
    a, b = ab
    px = started(processes, tmp_path,
                 mapping("long", "/a/b/", svc(b)),
                 mapping("short", "/a/", svc(a)))
    assert who(px, "/a/b/x") == "B"
    assert who(px, "/a/x") == "A"


def test_precedence_overrides_prefix_length(processes, tmp_path, ab):
    a, b = ab
    px = started(processes, tmp_path,
                 mapping("short", "/a/", svc(a), precedence=10),
                 mapping("long", "/a/b/", svc(b)))
    assert who(px, "/a/b/x") == "A"
    assert who(px, "/a/x") == "A"


def test_negative_precedence_loses(processes, tmp_path, ab):
    a, b = ab
    px = started(processes, tmp_path,
                 mapping("catchall", "/", svc(a), precedence=-1),
                 mapping("other", "/", svc(b), headers={"x-b": "1"}))
    assert who(px, "/x", headers={"x-b": "1"}) == "B"
    assert who(px, "/x") == "A"


def test_prefix_exact(processes, tmp_path, ab):
    a, b = ab
    px = started(processes, tmp_path,
                 mapping("exact", "/exact", svc(a), prefix_exact=True),
                 mapping("rest", "/ex", svc(b)))
    assert who(px, "/exact") == "A"
    assert who(px, "/exact/") == "B"
    assert who(px, "/exactly") == "B"
    assert who(px, "/exact?q=1") == "A"  # the query is not part of the path


def test_prefix_regex_matches_the_whole_path(processes, tmp_path, ab):
    a, _ = ab
    px = started(processes, tmp_path,
                 mapping("re", "/re/[0-9]+", svc(a), prefix_regex=True))
    assert who(px, "/re/123") == "A"
    assert who(px, "/re/123?x=y") == "A"
    assert who(px, "/re/abc") == 404
    assert who(px, "/re/123/more") == 404  # safe_regex must match the entire path
    assert who(px, "/x/re/123") == 404


def test_case_sensitive_by_default(processes, tmp_path, ab):
    a, _ = ab
    px = started(processes, tmp_path, mapping("m", "/Sens/", svc(a)))
    assert who(px, "/Sens/x") == "A"
    assert who(px, "/SENS/x") == 404
    assert who(px, "/sens/x") == 404


def test_case_sensitive_false(processes, tmp_path, ab):
    a, _ = ab
    px = started(processes, tmp_path, mapping("m", "/Case/", svc(a), case_sensitive=False))
    for p in ("/Case/x", "/CASE/x", "/case/x", "/cAsE/"):
        assert who(px, p) == "A", p
    assert who(px, "/cas/") == 404


def test_method(processes, tmp_path, ab):
    a, b = ab
    px = started(processes, tmp_path,
                 mapping("post", "/m/", svc(a), method="POST"),
                 mapping("put", "/m/", svc(b), method="PUT"))
    assert who(px, "/m/x", method="POST") == "A"
    assert who(px, "/m/x", method="PUT") == "B"
    assert who(px, "/m/x", method="GET") == 404


def test_headers_exact_match(processes, tmp_path, ab):
    a, b = ab
    px = started(processes, tmp_path,
                 mapping("prod", "/h/", svc(a), headers={"x-env": "prod"}),
                 mapping("plain", "/h/", svc(b)))
    assert who(px, "/h/", headers={"X-Env": "prod"}) == "A"
    assert who(px, "/h/", headers={"X-Env": "production"}) == "B"
    assert who(px, "/h/", headers={"X-Env": "Prod"}) == "B"
    assert who(px, "/h/") == "B"


def test_headers_more_constraints_win(processes, tmp_path, ab):
    a, b = ab
    px = started(processes, tmp_path,
                 mapping("one", "/h/", svc(b), headers={"x-a": "1"}),
                 mapping("two", "/h/", svc(a), headers={"x-a": "1", "x-b": "2"}))
    assert who(px, "/h/", headers={"x-a": "1", "x-b": "2"}) == "A"
    assert who(px, "/h/", headers={"x-a": "1"}) == "B"
    assert who(px, "/h/", headers={"x-b": "2"}) == 404


def test_regex_headers(processes, tmp_path, ab):
    a, _ = ab
    px = started(processes, tmp_path,
                 mapping("rx", "/rx/", svc(a), regex_headers={"x-ver": "^v[0-9]+$"}))
    assert who(px, "/rx/", headers={"x-ver": "v12"}) == "A"
    assert who(px, "/rx/", headers={"x-ver": "v12b"}) == 404
    assert who(px, "/rx/", headers={"x-ver": "x"}) == 404
    assert who(px, "/rx/") == 404


def test_header_presence(processes, tmp_path, ab):
    # Emissary: `headers: {x-tour-mode: true}` tests for presence.
    a, b = ab
    px = started(processes, tmp_path,
                 mapping("present", "/p/", svc(a), headers={"x-canary": True}),
                 mapping("plain", "/p/", svc(b)))
    assert who(px, "/p/", headers={"x-canary": "anything"}) == "A"
    assert who(px, "/p/", headers={"x-canary": ""}) == "A"
    assert who(px, "/p/") == "B"


def test_query_parameters(processes, tmp_path, ab):
    a, b = ab
    px = started(processes, tmp_path,
                 mapping("q", "/q/", svc(a), query_parameters={"version": "2"}),
                 mapping("plain", "/q/", svc(b)))
    assert who(px, "/q/x?version=2") == "A"
    assert who(px, "/q/x?a=b&version=2") == "A"
    assert who(px, "/q/x?version=3") == "B"
    assert who(px, "/q/x?version=22") == "B"
    assert who(px, "/q/x?xversion=2") == "B"
    assert who(px, "/q/x") == "B"


def test_regex_query_parameters(processes, tmp_path, ab):
    a, b = ab
    px = started(processes, tmp_path,
                 mapping("q", "/q/", svc(a), regex_query_parameters={"v": "^[0-9]+$"}),
                 mapping("plain", "/q/", svc(b)))
    assert who(px, "/q/?v=42") == "A"
    assert who(px, "/q/?v=4x") == "B"


# ---- hostname ----

def test_hostname_globs(processes, tmp_path):
    a, b = echo(processes, "A"), echo(processes, "B")
    c = echo(processes, "C")
    px = started(processes, tmp_path,
                 mapping("wild", "/h/", svc(a), hostname="*.example.com"),
                 mapping("exact", "/h/", svc(b), hostname="exact.example.org"),
                 mapping("any", "/h/", svc(c), hostname="*"))
    assert who(px, "/h/", host="a.example.com") == "A"
    assert who(px, "/h/", host="deep.sub.example.com") == "A"
    assert who(px, "/h/", host="exact.example.org") == "B"
    assert who(px, "/h/", host="other.example.org") == "C"
    assert who(px, "/h/", host="example.com") == "C"  # *.example.com needs a label
    assert who(px, "/h/", host="anything") == "C"


def test_hostname_glob_alone_restricts_by_host(processes, tmp_path, ab):
    a, _ = ab
    px = started(processes, tmp_path,
                 mapping("wild", "/w/", svc(a), hostname="*.example.com"),
                 mapping("exact", "/e/", svc(a), hostname="exact.example.org"))
    assert who(px, "/w/", host="x.example.com") == "A"
    assert who(px, "/w/", host="x.example.net") == 404
    assert who(px, "/e/", host="exact.example.org") == "A"
    assert who(px, "/e/", host="exact.example.org.evil") == 404
    assert who(px, "/e/", host="EXACT.Example.ORG") == "A"  # host names are case-insensitive


def test_mapping_without_hostname_matches_nothing(processes, tmp_path, ab):
    # v3alpha1: a Mapping with neither hostname nor host matches no Host (emissary.md §3).
    a, _ = ab
    px = started(processes, tmp_path,
                 mapping("nohost", "/nohost/", svc(a), hostname=None),
                 mapping("ok", "/ok/", svc(a)))
    assert who(px, "/ok/") == "A"
    assert who(px, "/nohost/") == 404
    assert who(px, "/nohost/", host="anything.example.com") == 404


# ---- canary ----

def test_canary_weights_split_traffic(processes, tmp_path, ab):
    a, b = ab
    px = started(processes, tmp_path,
                 mapping("canary", "/c/", svc(a), weight=10),
                 mapping("main", "/c/", svc(b), weight=90))
    seen = collections.Counter(who(px, f"/c/{i}") for i in range(400))
    assert set(seen) <= {"A", "B"}, seen
    # Expected 40 ± 6 (sd); allow ~4 sd either way.
    assert 15 <= seen["A"] <= 70, seen


def test_canary_weight_only_on_one_mapping(processes, tmp_path, ab):
    # Emissary: mappings without a weight share what is left (here 100 - 30 = 70).
    a, b = ab
    px = started(processes, tmp_path,
                 mapping("canary", "/c/", svc(a), weight=30),
                 mapping("main", "/c/", svc(b)))
    seen = collections.Counter(who(px, f"/c/{i}") for i in range(300))
    assert set(seen) <= {"A", "B"}, seen
    assert 60 <= seen["A"] <= 120, seen


# ---- rewrites ----

def upstream_path(px, path):
    r = px.get(path)
    assert r.status == 200, r
    return r.json()["path"]


def test_rewrite_default_is_slash(processes, tmp_path, ab):
    a, _ = ab
    px = started(processes, tmp_path, mapping("m", "/foo/", svc(a)))
    assert upstream_path(px, "/foo/bar/baz?x=1") == "/bar/baz?x=1"
    assert upstream_path(px, "/foo/") == "/"
    r = px.get("/foo/bar")
    assert ["x-envoy-original-path", "/foo/bar"] in r.json()["headers"]


def test_rewrite_to_other_prefix(processes, tmp_path, ab):
    a, _ = ab
    px = started(processes, tmp_path, mapping("m", "/foo/", svc(a), rewrite="/bar/"))
    assert upstream_path(px, "/foo/x?y=z") == "/bar/x?y=z"


def test_rewrite_empty_disables_rewriting(processes, tmp_path, ab):
    a, _ = ab
    px = started(processes, tmp_path, mapping("m", "/foo/", svc(a), rewrite=""))
    assert upstream_path(px, "/foo/x?y=z") == "/foo/x?y=z"


def test_regex_rewrite(processes, tmp_path, ab):
    a, _ = ab
    px = started(processes, tmp_path,
                 mapping("m", "/foo/", svc(a),
                         regex_rewrite={"pattern": "^/foo/([a-z]+)/(.*)$",
                                        "substitution": "/v2/\\2/\\1"}))
    assert upstream_path(px, "/foo/abc/def?q=1") == "/v2/def/abc?q=1"
    assert upstream_path(px, "/foo/123") == "/foo/123"  # no match: path untouched


# ---- service resolution ----

def test_seed_quote_mapping_through_service_and_endpoints(processes, tmp_path):
    # seed/istio-integration.md: `service: quote`, the Service with port 80 and the Endpoints
    # naming the pod address (DESIGN.md "Resolution of service:").
    q = start_quote(processes, name="quote-pod")
    px = Portico(processes, tmp_path)
    px.write("quote.yaml", dump(service("quote", 80, q.port), endpoints("quote", ["127.0.0.1"], q.port)))
    px.write("mapping.yaml", seed.QUOTE_MAPPING_PLAIN)
    px.start()
    r = px.get("/backend/")
    assert r.status == 200, r
    doc = r.json()
    assert doc["server"] == "quote-pod"
    assert len(doc["quote"]) > 10


def test_service_with_explicit_port_80(processes, tmp_path):
    q = start_quote(processes, name="quote-pod")
    px = Portico(processes, tmp_path)
    px.write("quote.yaml", dump(service("quote", 80, q.port),
                                endpoints("quote", ["127.0.0.1"], q.port),
                                mapping("m", "/backend/", "quote:80"),
                                mapping("m2", "/ns/", "quote.default:80"),
                                mapping("m3", "/http/", "http://quote")))
    px.start()
    for p in ("/backend/", "/ns/", "/http/"):
        r = px.get(p)
        assert r.status == 200, (p, r)
        assert backend_name(r) == "quote-pod"


def test_bare_service_name_is_qualified_with_the_mapping_namespace(processes, tmp_path, ab):
    a, b = ab
    px = Portico(processes, tmp_path)
    px.write("svc.yaml", dump(
        service("quote", 80, a.port), endpoints("quote", ["127.0.0.1"], a.port),
        service("quote", 80, b.port, namespace="ns1"),
        endpoints("quote", ["127.0.0.1"], b.port, namespace="ns1"),
        mapping("in-default", "/d/", "quote"),
        mapping("in-ns1", "/n/", "quote", namespace="ns1"),
        mapping("cross", "/x/", "quote.ns1", namespace="default")))
    px.start()
    assert who(px, "/d/") == "A"
    assert who(px, "/n/") == "B"
    assert who(px, "/x/") == "B"


def test_round_robin_across_endpoints(processes, tmp_path):
    port = same_port_two_addrs()
    for addr, name in (("127.0.0.1", "one"), ("127.0.0.2", "two")):
        processes.start([binary("portico-quote"), "--port", port, "--bind", addr,
                         "--name", name, "--echo"], name=f"quote-{name}", port=port, host=addr)
    px = Portico(processes, tmp_path)
    px.write("svc.yaml", dump(service("rr", 80, port),
                              endpoints("rr", ["127.0.0.1", "127.0.0.2"], port),
                              mapping("rr", "/rr/", "rr")))
    px.start()
    seen = collections.Counter(who(px, f"/rr/{i}") for i in range(40))
    assert set(seen) == {"one", "two"}, seen
    assert min(seen.values()) >= 14, seen


def test_round_robin_on_one_keepalive_connection(processes, tmp_path):
    # One downstream connection stays on one worker: round robin must still alternate.
    port = same_port_two_addrs()
    for addr, name in (("127.0.0.1", "one"), ("127.0.0.2", "two")):
        processes.start([binary("portico-quote"), "--port", port, "--bind", addr,
                         "--name", name, "--echo"], name=f"quote-{name}", port=port, host=addr)
    px = Portico(processes, tmp_path)
    px.write("svc.yaml", dump(service("rr", 80, port),
                              endpoints("rr", ["127.0.0.1", "127.0.0.2"], port),
                              mapping("rr", "/rr/", "rr")))
    px.start()
    conn = http.client.HTTPConnection("127.0.0.1", px.port, timeout=5)
    names = []
    for i in range(20):
        conn.request("GET", f"/rr/{i}")
        r = conn.getresponse()
        names.append(json.loads(r.read())["server"])
    conn.close()
    c = collections.Counter(names)
    assert c["one"] == c["two"] == 10, names


def test_round_robin_goes_on_across_reloads(processes, tmp_path):
    # A reload that leaves a cluster's endpoints as they were keeps its turn (cluster/lb.h):
    # one keep-alive connection on one worker alternates across eight reloads. Before, each
    # reload restarted the turn at a random endpoint (the order broke with probability 1/2).
    port = same_port_two_addrs()
    for addr, name in (("127.0.0.1", "one"), ("127.0.0.2", "two")):
        processes.start([binary("portico-quote"), "--port", port, "--bind", addr,
                         "--name", name, "--echo"], name=f"quote-{name}", port=port, host=addr)
    px = Portico(processes, tmp_path, workers=1)
    px.write("svc.yaml", dump(service("rr", 80, port),
                              endpoints("rr", ["127.0.0.1", "127.0.0.2"], port),
                              mapping("rr", "/rr/", "rr")))
    px.write("probe.yaml", dump(mapping("probe", "/p0/", f"127.0.0.1:{port}")))
    px.start()
    conn = http.client.HTTPConnection("127.0.0.1", px.port, timeout=5)
    names = []

    def one(i):
        conn.request("GET", f"/rr/{i}")
        r = conn.getresponse()
        names.append(json.loads(r.read())["server"])

    for k in range(1, 9):
        one(2 * k)
        one(2 * k + 1)
        # another cluster's Mapping moves: the worker adopts a snapshot where "rr" is the same
        px.write("probe.yaml", dump(mapping("probe", f"/p{k}/", f"127.0.0.1:{port}")))
        ok, _ = poll_until(lambda: px.status(f"/p{k}/x") == 200, 5.0, 0.01)
        assert ok, f"reload {k} not applied"
    one(99)
    conn.close()
    assert all(a != b for a, b in zip(names, names[1:])), names


def test_service_localhost_port_via_dns(processes, tmp_path, ab):
    a, _ = ab
    px = started(processes, tmp_path, mapping("m", "/l/", f"localhost:{a.port}"))
    got = [who(px, f"/l/{i}") for i in range(10)]
    assert got == ["A"] * 10, got


def test_service_hostname_from_etc_hosts(processes, tmp_path, ab):
    # A name that /etc/hosts maps to 127.0.0.1 only (not special-cased like localhost).
    names = [l.split() for l in open("/etc/hosts") if l.strip() and not l.startswith("#")]
    v4 = [n for parts in names if parts[0] == "127.0.0.1" for n in parts[1:]
          if n != "localhost" and "localhost" not in n]
    v6 = {n for parts in names if ":" in parts[0] for n in parts[1:]}
    v4 = [n for n in v4 if n not in v6]
    if not v4:
        pytest.skip("no IPv4-only name for 127.0.0.1 in /etc/hosts")
    a, _ = ab
    px = started(processes, tmp_path, mapping("m", "/l/", f"{v4[0]}:{a.port}"))
    got = [who(px, f"/l/{i}") for i in range(6)]
    assert got == ["A"] * 6, (v4[0], got)


def test_unresolvable_service_is_503_not_a_hang(processes, tmp_path, ab):
    a, _ = ab
    px = started(processes, tmp_path,
                 mapping("bad", "/bad/", "no-such-service.invalid:80"),
                 mapping("ok", "/ok/", svc(a)))
    assert who(px, "/ok/") == "A"
    r = px.get("/bad/", timeout=8)
    assert r.status == 503, r


# ---- host / host_regex (older fields), path normalisation ----

def test_host_exact_and_host_regex(processes, tmp_path, ab):
    a, b = ab
    px = started(processes, tmp_path,
                 mapping("exact", "/h/", svc(a), hostname=None, host="exact.example.com"),
                 mapping("rx", "/h/", svc(b), hostname=None, host="^quote[2-9]\\.example\\.com$",
                         host_regex=True))
    assert who(px, "/h/", host="exact.example.com") == "A"
    assert who(px, "/h/", host="quote3.example.com") == "B"
    assert who(px, "/h/", host="quote1.example.com") == 404
    assert who(px, "/h/", host="other.example.com") == 404


def test_path_is_normalised_before_matching(processes, tmp_path, ab):
    # t_mappingtests_plain.SimpleMapping routes need-normalization/../<name>/
    a, _ = ab
    px = started(processes, tmp_path, mapping("m", "/backend/", svc(a)))
    r = px.get("/need-normalization/../backend/x")
    assert r.status == 200, r
    assert r.json()["path"] == "/x"
    assert upstream_path(px, "/backend/./y") == "/y"
    assert upstream_path(px, "/backend/a/../b") == "/b"
    assert px.status("/backend/../secret") == 404
