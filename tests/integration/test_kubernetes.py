"""`portico run --kubernetes` against tests/integration/fake_apiserver.py (TLS with its own CA,
bearer tokens, LIST + chunked WATCH, bookmarks, 410 Gone, restarts): configuration from the API
follows every change within 100 ms, survives 410s and API server restarts without losing an
update or a request, batches bursts, and reports API errors in diag without crashing."""

import json
import re
import subprocess
import threading
import time

import pytest
import requests

from conftest import RawConn, free_port, start_quote, binary
from fake_apiserver import RESOURCES, FakeApiServer

AMB = "getambassador.io/v3alpha1"
FOLLOW_S = 0.1   # a change is live this soon after the API server has it


# ---- objects ----

def listener(port, name="http"):
    return {"apiVersion": AMB, "kind": "Listener", "metadata": {"name": name, "namespace": "default"},
            "spec": {"port": port, "protocol": "HTTP", "securityModel": "XFP",
                     "hostBinding": {"namespace": {"from": "ALL"}}}}


def mapping(name, prefix, service="quote", ns="default", **spec):
    spec = {"hostname": "*", "prefix": prefix, "service": service, **spec}
    return {"apiVersion": AMB, "kind": "Mapping", "metadata": {"name": name, "namespace": ns}, "spec": spec}


def service(name, port, ns="default"):
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "type": "ClusterIP",
                     "ports": [{"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}]}}


def endpoints(name, port, ns="default", ip="127.0.0.1"):
    return {"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": name, "namespace": ns},
            "subsets": [{"addresses": [{"ip": ip}], "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}]}


def endpointslice(name, service_name, port, ip="127.0.0.1", ns="default", ready=True):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [ip], "conditions": {"ready": ready}}],
            "ports": [{"name": "http", "port": port, "protocol": "TCP"}]}


# ---- harness ----

class Edge:
    """A running `portico run --kubernetes` with its ports."""

    def __init__(self, proc, http, admin):
        self.proc = proc
        self.http = http
        self.admin = admin

    def get(self, path="/backend/", headers=None):
        return requests.get(f"http://127.0.0.1:{self.http}{path}", headers=headers, timeout=5)

    def ready(self):
        try:
            return requests.get(f"http://127.0.0.1:{self.admin}/ambassador/v0/check_ready", timeout=2).status_code
        except requests.RequestException:
            return None

    def diag(self):
        return requests.get(f"http://127.0.0.1:{self.admin}/ambassador/v0/diag/?json=true", timeout=5).json()

    def compiles(self):
        return len(self.compile_lines())

    def compile_lines(self):
        return re.findall(r"snapshot \d+ compiled in [\d.]+ ms \((\d+) mappings", self.proc.log())

    def wait_compiled(self, mappings, after, timeout=20):
        """Waits for a compile of <mappings> Mappings among the compiles after the first <after>."""
        wait_until(f"a snapshot with {mappings} mappings",
                   lambda: str(mappings) in self.compile_lines()[after:], timeout)


def wait_until(what, fn, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})", pytrace=False)


def follow(conn, path, want, what):
    """Polls <path> on keep-alive <conn> until want(response); returns the seconds it took."""
    t0 = time.monotonic()
    deadline = t0 + 5
    while True:
        conn.request("GET", path)
        r = conn.read_response()
        if want(r):
            return time.monotonic() - t0
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: still {r.status} {r.body[:80]!r} after 5 s", pytrace=False)
        time.sleep(0.002)


def server_name(r):
    try:
        return json.loads(r.body)["server"]
    except (ValueError, KeyError, TypeError):
        return None


@pytest.fixture
def api():
    with FakeApiServer(bookmark_interval=0.5) as a:
        yield a


def start_edge(processes, tmp_path, api=None, env=None, kubeconfig=None, wait_ready=True, http=None):
    """Starts portico on a kubeconfig for <api> (or <kubeconfig>)."""
    admin = free_port()
    kc = kubeconfig if kubeconfig is not None else api.kubeconfig(tmp_path / "kubeconfig")
    e = {"KUBECONFIG": str(kc), "KUBERNETES_SERVICE_HOST": "", "AMBASSADOR_NAMESPACE": "default"}
    e.update(env or {})
    proc = processes.start([binary("portico"), "run", "--kubernetes", "--admin-port", admin, "--workers", 2],
                           name="portico", port=admin, env=e)
    edge = Edge(proc, http, admin)
    if wait_ready:
        wait_until("check_ready 200", lambda: edge.ready() == 200)
    return edge


def seed(api, backend, http):
    api.apply_many([listener(http), service("quote", backend.port), endpoints("quote", backend.port),
                    mapping("backend", "/backend/")])


@pytest.fixture
def edge(processes, tmp_path, api, quote_backend):
    http = free_port()
    seed(api, quote_backend, http)
    e = start_edge(processes, tmp_path, api, http=http)
    wait_until("the first route", lambda: e.get().status_code == 200)
    return e


# ---- traffic follows the API ----

def test_routes_follow_mappings_and_endpoints_within_100ms(processes, api, edge, quote_backend):
    assert server_name_of(edge.get()) == "quote-test"
    assert edge.diag()["kubernetes"] == {"state": "watching", "last_error": ""}
    other = start_quote(processes, name="quote-b")
    with RawConn(edge.http) as c:
        # a Mapping changes its prefix
        api.apply(mapping("backend", "/moved/"))
        took = follow(c, "/moved/", lambda r: r.status == 200, "the moved prefix")
        assert took < FOLLOW_S, f"the Mapping update took {took * 1000:.0f} ms"
        c.request("GET", "/backend/")
        assert c.read_response().status == 404
        # the Endpoints move to another backend
        api.apply(endpoints("quote", other.port))
        took = follow(c, "/moved/", lambda r: server_name(r) == "quote-b", "the new endpoints")
        assert took < FOLLOW_S, f"the Endpoints update took {took * 1000:.0f} ms"
        # the Mapping is deleted
        api.delete("Mapping", "default", "backend")
        took = follow(c, "/moved/", lambda r: r.status == 404, "the deleted Mapping")
        assert took < FOLLOW_S, f"the delete took {took * 1000:.0f} ms"
    resources = {(r["kind"], r["name"]) for r in edge.diag()["resources"]}
    assert ("Mapping", "backend") not in resources and ("Listener", "http") in resources


def server_name_of(resp):
    return resp.json()["server"]


def test_big_kinds_are_listed_in_pages(processes, tmp_path, api, quote_backend):
    """1,200 Mappings come in LIST pages of 500 with continue tokens; a token that expired mid-way
    (410) starts that list again; every Mapping routes."""
    http = free_port()
    seed(api, quote_backend, http)
    api.apply_many([mapping(f"m{i:04d}", f"/p{i:04d}/") for i in range(1200)])
    api.expire_next_continue = True
    e = start_edge(processes, tmp_path, api, http=http)
    wait_until("the last Mapping", lambda: e.get("/p1199/").status_code == 200)
    assert e.get("/p0000/").status_code == 200
    pages = [p for _, m, p, code in api.requests if m == "GET" and "/mappings?" in p and "watch" not in p]
    assert all("limit=500" in p for p in pages)
    continued = [p for p in pages if "continue=" in p]
    # first page, a 410 on its continue, then the three pages again
    assert len(pages) == 5 and len(continued) == 3, pages
    assert not api.expire_next_continue


def test_endpointslices_win_over_endpoints(processes, api, edge, quote_backend):
    """With EndpointSlices for a Service (Kubernetes writes both kinds), its addresses come from
    the slices; a slice whose endpoint is not ready gives none; without slices, Endpoints again."""
    other = start_quote(processes, name="quote-b")
    with RawConn(edge.http) as c:
        api.apply(endpointslice("quote-x1", "quote", other.port))
        follow(c, "/backend/", lambda r: server_name(r) == "quote-b", "the slice's address")
        api.apply(endpointslice("quote-x1", "quote", other.port, ready=False))
        follow(c, "/backend/", lambda r: r.status == 503, "no ready endpoint")
        api.delete("EndpointSlice", "default", "quote-x1")
        follow(c, "/backend/", lambda r: server_name(r) == "quote-test", "back to the Endpoints")
    kinds = {r["kind"] for r in edge.diag()["resources"]}
    assert "Endpoints" in kinds


@pytest.mark.parametrize("gone_as_http", [False, True], ids=["error-event", "http-410"])
def test_410_relists_and_loses_no_update(api, edge, gone_as_http):
    """The history is compacted while the watches are down, so the changes made meanwhile are
    only found by listing again: 410 (as a watch ERROR event or as HTTP 410) must relist."""
    api.gone_as_http = gone_as_http
    # a 410 on open watches
    api.expire()
    api.apply(mapping("second", "/second/"))
    wait_until("the Mapping made right after the 410", lambda: edge.get("/second/").status_code == 200, 5)
    # changes while the watches are broken, then the history is gone
    lists_before = sum(1 for _, m, p, _ in list(api.requests) if m == "GET" and "watch=" not in p)
    api.stop()
    api.apply(mapping("third", "/third/"))
    api.delete("Mapping", "default", "second")
    api.expire()
    api.start()
    wait_until("the Mapping made while the watch was down",
               lambda: edge.get("/third/").status_code == 200 and edge.get("/second/").status_code == 404, 10)
    wait_until("every kind listed again", lambda: sum(
        1 for _, m, p, _ in list(api.requests) if m == "GET" and "watch=" not in p) >= lists_before + len(RESOURCES) - 1, 10)
    assert "is gone (410): listing again" in edge.proc.log()
    assert edge.get().status_code == 200
    wait_until("state watching", lambda: edge.diag()["kubernetes"]["state"] == "watching", 10)


def _load(port, deadline, results):
    conn = None
    while time.monotonic() < deadline:
        try:
            if conn is None:
                conn = RawConn(port, timeout=5)
            conn.request("GET", "/backend/")
            r = conn.read_response()
            ok = r.status == 200 and server_name(r) == "quote-test"
            results.append((ok, None if ok else f"{r.status} {r.body[:100]!r}"))
        except (OSError, ConnectionError, ValueError) as e:
            results.append((False, f"{type(e).__name__}: {e}"))
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()


def test_apiserver_restart_mid_watch_fails_no_request(api, edge):
    results = []
    deadline = time.monotonic() + 3.0
    clients = [threading.Thread(target=_load, args=(edge.http, deadline, results)) for _ in range(2)]
    for t in clients:
        t.start()
    try:
        time.sleep(0.5)
        api.stop()
        wait_until("diag reports the outage",
                   lambda: edge.diag()["kubernetes"]["state"] == "reconnecting", 5)
        assert edge.ready() == 200  # the last configuration keeps serving
        assert "Couldn't connect" in edge.diag()["kubernetes"]["last_error"] or \
            "transfer closed" in edge.diag()["kubernetes"]["last_error"]
        time.sleep(0.8)
        api.start()
    finally:
        for t in clients:
            t.join(10)
    failures = [d for ok, d in results if not ok]
    assert len(results) >= 100, f"only {len(results)} requests in 3 s"
    assert failures == [], f"{len(failures)}/{len(results)} failed: {failures[:5]}"
    # the watches are back: a change applies again
    api.apply(mapping("after", "/after/"))
    wait_until("a change after the restart", lambda: edge.get("/after/").status_code == 200, 10)
    wait_until("state watching", lambda: edge.diag()["kubernetes"]["state"] == "watching", 10)
    assert edge.proc.running


def test_burst_of_1000_mappings_compiles_a_few_times(api, edge):
    before = edge.compiles()
    t0 = time.monotonic()
    api.apply_many([mapping(f"m{i}", f"/m{i}/") for i in range(1000)])
    made = time.monotonic() - t0
    edge.wait_compiled(1001, before)
    compiles = edge.compiles() - before
    assert compiles <= 20, f"{compiles} compiles for 1000 Mappings made in {made * 1000:.0f} ms"
    assert edge.get("/m999/").status_code == 200
    assert edge.get("/m0/").status_code == 200
    # and deleting them is a burst too
    before = edge.compiles()
    for i in range(1000):
        api.delete("Mapping", "default", f"m{i}")
    edge.wait_compiled(1, before)
    assert edge.compiles() - before <= 20
    assert edge.get("/m5/").status_code == 404


# ---- failures at start ----

def test_wrong_token_is_reported_in_diag(processes, tmp_path, api, quote_backend):
    http = free_port()
    seed(api, quote_backend, http)
    kc = api.kubeconfig(tmp_path / "kubeconfig", token="not-the-token")
    edge = start_edge(processes, tmp_path, kubeconfig=kc, wait_ready=False, http=http)
    k = wait_until("the 401 in diag", lambda: (lambda d: d if "401" in d["last_error"] else None)(
        edge.diag()["kubernetes"]))
    assert k["state"] == "error"
    assert "Unauthorized" in k["last_error"]
    assert edge.ready() == 503
    time.sleep(0.5)
    assert edge.proc.running and edge.ready() == 503
    # the token becomes valid (say, RBAC fixed): Portico recovers on its own
    api.set_token("not-the-token")
    wait_until("ready once the token is accepted", lambda: edge.ready() == 200, 20)
    wait_until("the route", lambda: edge.get().status_code == 200)


def test_unreachable_apiserver_at_start_stays_unready_until_it_is_up(processes, tmp_path, quote_backend):
    port = free_port()
    http = free_port()
    with FakeApiServer(port=port, bookmark_interval=0.5) as api:
        kc = api.kubeconfig(tmp_path / "kubeconfig")
        seed(api, quote_backend, http)
        api.stop()
        edge = start_edge(processes, tmp_path, kubeconfig=kc, wait_ready=False, http=http)
        k = wait_until("the connection error in diag", lambda: (lambda d: d if d["last_error"] else None)(
            edge.diag()["kubernetes"]))
        assert k["state"] == "error" and "connect" in k["last_error"].lower(), k
        for _ in range(10):
            assert edge.ready() == 503
            time.sleep(0.1)
        assert edge.diag()["ready"] is False
        api.start()
        wait_until("ready once the API server is up", lambda: edge.ready() == 200, 20)
        wait_until("the route", lambda: edge.get().status_code == 200)
        assert edge.diag()["kubernetes"]["state"] == "watching"


# ---- where objects come from ----

def test_in_cluster_service_account_with_rotating_token(processes, tmp_path, api, quote_backend):
    sa = tmp_path / "serviceaccount"
    sa.mkdir()
    (sa / "token").write_text(api.token)
    (sa / "ca.crt").write_bytes(api.ca_pem)
    (sa / "namespace").write_text("default")
    http = free_port()
    seed(api, quote_backend, http)
    edge = start_edge(processes, tmp_path, kubeconfig="", http=http, env={
        "KUBECONFIG": "", "HOME": str(tmp_path), "PORTICO_SERVICEACCOUNT_DIR": str(sa),
        "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(api.port)})
    wait_until("the route", lambda: edge.get().status_code == 200)
    assert "in-cluster service account" in edge.proc.log()
    # the kubelet rotates the token; the old one stops working
    (sa / "token").write_text("rotated-token\n")
    api.set_token("rotated-token")
    api.drop_watches()
    api.apply(mapping("after", "/after/"))
    wait_until("a change after the rotation", lambda: edge.get("/after/").status_code == 200, 10)
    assert "401" not in edge.diag()["kubernetes"]["last_error"]


def test_single_namespace_watches_only_its_namespace(processes, tmp_path, api, quote_backend):
    http = free_port()
    api.apply_many([listener(http) | {"metadata": {"name": "http", "namespace": "team"}},
                    service("quote", quote_backend.port, ns="team"), endpoints("quote", quote_backend.port, ns="team"),
                    mapping("mine", "/backend/", ns="team"), mapping("theirs", "/theirs/", ns="other")])
    api.apply({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1",
               "metadata": {"name": "sh.helm.release.v1.x.v1", "namespace": "team"}, "data": {"release": "eA=="}})
    edge = start_edge(processes, tmp_path, api, http=http,
                      env={"AMBASSADOR_SINGLE_NAMESPACE": "true", "AMBASSADOR_NAMESPACE": "team"})
    wait_until("the route", lambda: edge.get().status_code == 200)
    assert edge.get("/theirs/").status_code == 404
    paths = [p for _, _, p, _ in list(api.requests)]
    assert paths and all("/namespaces/team/" in p for p in paths), paths[:3]
    assert any(p.startswith("/api/v1/namespaces/team/secrets?limit=500&fieldSelector=type%21%3Dhelm.sh")
               for p in paths)


def test_missing_crd_is_an_empty_kind(processes, tmp_path, api, quote_backend):
    api.uninstall("tracingservices")
    http = free_port()
    seed(api, quote_backend, http)
    edge = start_edge(processes, tmp_path, api, http=http)
    wait_until("the route", lambda: edge.get().status_code == 200)
    assert edge.diag()["kubernetes"]["state"] == "watching"
    assert "CRD not installed" in edge.proc.log()


def test_periodic_resync_heals_a_lost_event(processes, tmp_path, api, quote_backend):
    http = free_port()
    seed(api, quote_backend, http)
    edge = start_edge(processes, tmp_path, api, http=http, env={"PORTICO_KUBERNETES_RESYNC_S": "2"})
    wait_until("the route", lambda: edge.get().status_code == 200)
    api.apply(mapping("lost", "/lost/"), notify=False)  # no watch event: only a relist finds it
    wait_until("the Mapping whose event was lost", lambda: edge.get("/lost/").status_code == 200, 8)


def test_no_credentials_exits_2(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "KUBECONFIG": str(tmp_path / "missing")}
    r = subprocess.run([binary("portico"), "run", "--kubernetes", "--admin-port", str(free_port()),
                        "--workers", "1"], env=env, capture_output=True, text=True, timeout=10)
    assert r.returncode == 2
    assert "no kubeconfig found" in r.stdout + r.stderr


def test_only_referenced_secrets_enter_the_configuration(api, edge):
    """Every Secret of the namespace is watched, but only those a TLSContext or Host names are
    read into the configuration (and listed in diag)."""
    def secret(name):
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": "default"}, "data": {"k": "dmFsdWU="}}
    ctx = {"apiVersion": AMB, "kind": "TLSContext", "metadata": {"name": "up", "namespace": "default"},
           "spec": {"ca_secret": "used-ca"}}
    api.apply_many([secret("used-ca"), secret("unrelated"), ctx])

    def secrets():
        return {r["name"] for r in edge.diag()["resources"] if r["kind"] == "Secret"}
    wait_until("the referenced Secret in diag", lambda: "used-ca" in secrets())
    assert "unrelated" not in secrets()
    api.delete("TLSContext", "default", "up")
    wait_until("the Secret gone once nothing names it", lambda: "used-ca" not in secrets())


# ---- kinds Portico does not implement (issue 9, point 11) ----

def test_every_getambassador_kind_is_watched(api, edge):
    """Emissary's CRDs are all listed and watched, so none is silently unseen."""
    wanted = set(RESOURCES)
    wait_until("a LIST of every kind", lambda: wanted <= {
        p.split("?")[0].rsplit("/", 1)[-1] for _, m, p, _ in list(api.requests) if m == "GET"})
    for res in ("authservices", "ratelimitservices", "logservices", "tcpmappings",
                "kubernetesendpointresolvers", "kubernetesserviceresolvers", "consulresolvers",
                "devportals"):
        assert res in wanted


def test_auth_and_ratelimit_services_from_the_api(processes, api, edge):
    """An AuthService and a RateLimitService from the API take effect like the other kinds
    (real peers behind them), and stop when deleted. A TCPMapping is a notice naming its kind."""
    from policy_peer import start_authz, start_ratelimit
    authz, rls = start_authz(processes), start_ratelimit(processes)
    labels = {"ambassador": [{"g": [{"request_headers": {"key": "k", "header_name": "x-limit"}}]}]}
    api.apply_many([mapping("open", "/open/", bypass_auth=True, labels=labels),
                    {"apiVersion": AMB, "kind": "TCPMapping",
                     "metadata": {"name": "tcp", "namespace": "default"},
                     "spec": {"port": 9000, "service": "quote:80"}}])
    wait_until("the open Mapping", lambda: edge.get("/open/").status_code == 200)
    api.apply_many([{"apiVersion": AMB, "kind": "AuthService",
                     "metadata": {"name": "auth", "namespace": "default"},
                     "spec": {"auth_service": f"127.0.0.1:{authz.port}", "proto": "grpc",
                              "protocol_version": "v3"}},
                    {"apiVersion": AMB, "kind": "RateLimitService",
                     "metadata": {"name": "rl", "namespace": "default"},
                     "spec": {"service": f"127.0.0.1:{rls.port}", "protocol_version": "v3",
                              "timeout_ms": 1000}}])
    deny = {"x-auth-decision": "deny"}
    wait_until("the AuthService", lambda: edge.get("/backend/", headers=deny).status_code == 403, 5)
    assert edge.get("/backend/").status_code == 200
    assert edge.get("/open/", headers=deny).status_code == 200  # bypass_auth
    wait_until("the RateLimitService",
               lambda: edge.get("/open/", headers={"x-limit": "over"}).status_code == 429, 5)
    assert authz.records() and rls.records()
    d = edge.diag()
    assert d["errors"] == [], d["errors"]
    assert any(n["object"] == "TCPMapping/default/tcp" and
               n["message"] == "TCPMapping is not supported by this build; ignored"
               for n in d["notices"]), d["notices"]
    api.delete("AuthService", "default", "auth")
    api.delete("RateLimitService", "default", "rl")
    wait_until("the AuthService gone", lambda: edge.get("/backend/", headers=deny).status_code == 200, 5)
    wait_until("the RateLimitService gone",
               lambda: edge.get("/open/", headers={"x-limit": "over"}).status_code == 200, 5)
