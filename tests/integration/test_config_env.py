"""Environment variables that select resources, as in Emissary: AMBASSADOR_ID,
AMBASSADOR_SINGLE_NAMESPACE with AMBASSADOR_NAMESPACE (DESIGN.md "Environment")."""

from portico_cfg import Portico, dump, listener, mapping


def with_id(d, ids):
    if ids is not None:
        d["spec"]["ambassador_id"] = ids
    return d


def in_ns(d, ns):
    d["metadata"]["namespace"] = ns
    return d


def start(processes, tmp_path, docs, env):
    px = Portico(processes, tmp_path, with_listener=False, env=env)
    px.write("all.yaml", dump(*docs(px.port)))
    return px.start()


def test_ambassador_id_selects_resources(processes, tmp_path, quote_backend):
    svc = f"127.0.0.1:{quote_backend.port}"
    px = start(processes, tmp_path, lambda port: [
        with_id(listener(port), ["foo"]),
        with_id(mapping("mine", "/mine/", svc), ["foo"]),
        with_id(mapping("mine-str", "/mine-str/", svc), "foo"),
        with_id(mapping("multi", "/multi/", svc), ["bar", "foo"]),
        mapping("no-id", "/no-id/", svc),
        with_id(mapping("other", "/other/", svc), ["bar"]),
        with_id(mapping("default-id", "/default-id/", svc), ["default"]),
    ], env={"AMBASSADOR_ID": "foo"})
    assert px.status("/mine/") == 200
    assert px.status("/mine-str/") == 200
    assert px.status("/multi/") == 200
    assert px.status("/no-id/") == 404
    assert px.status("/other/") == 404
    assert px.status("/default-id/") == 404
    names = {r["name"] for r in px.diag()["resources"]}
    assert {"mine", "mine-str", "multi"} <= names
    assert not names & {"no-id", "other", "default-id"}, names


def test_default_ambassador_id(processes, tmp_path, quote_backend):
    # Without AMBASSADOR_ID the id is "default": resources without an id, or listing
    # "default", apply; those for another id do not.
    svc = f"127.0.0.1:{quote_backend.port}"
    px = start(processes, tmp_path, lambda port: [
        listener(port),
        mapping("no-id", "/no-id/", svc),
        with_id(mapping("default-id", "/default-id/", svc), ["default"]),
        with_id(mapping("foo", "/foo/", svc), ["foo"]),
    ], env={})
    assert px.status("/no-id/") == 200
    assert px.status("/default-id/") == 200
    assert px.status("/foo/") == 404


def test_single_namespace(processes, tmp_path, quote_backend):
    svc = f"127.0.0.1:{quote_backend.port}"
    px = start(processes, tmp_path, lambda port: [
        in_ns(listener(port), "ns1"),
        mapping("a", "/a/", svc, namespace="ns1"),
        mapping("b", "/b/", svc, namespace="ns2"),
        mapping("c", "/c/", svc),                       # no namespace: it is in "default"
        mapping("d", "/d/", svc, namespace="default"),
    ], env={"AMBASSADOR_SINGLE_NAMESPACE": "true", "AMBASSADOR_NAMESPACE": "ns1"})
    assert px.status("/a/") == 200
    assert px.status("/b/") == 404
    assert px.status("/c/") == 404
    assert px.status("/d/") == 404
    seen = {(r["namespace"], r["name"]) for r in px.diag()["resources"]}
    assert ("ns1", "a") in seen
    assert not any(ns != "ns1" for ns, _ in seen), seen


def test_without_single_namespace_all_namespaces_apply(processes, tmp_path, quote_backend):
    svc = f"127.0.0.1:{quote_backend.port}"
    px = start(processes, tmp_path, lambda port: [
        listener(port),
        mapping("a", "/a/", svc, namespace="ns1"),
        mapping("b", "/b/", svc, namespace="ns2"),
        mapping("c", "/c/", svc),
    ], env={"AMBASSADOR_NAMESPACE": "ns1"})
    for p in ("/a/", "/b/", "/c/"):
        assert px.status(p) == 200, p


def test_single_namespace_service_resolution_stays_in_namespace(processes, tmp_path):
    from conftest import start_quote
    from portico_cfg import backend_name, endpoints, service
    a = start_quote(processes, name="A")
    b = start_quote(processes, name="B")
    px = start(processes, tmp_path, lambda port: [
        in_ns(listener(port), "ns1"),
        service("quote", 80, a.port, namespace="ns1"),
        endpoints("quote", ["127.0.0.1"], a.port, namespace="ns1"),
        service("quote", 80, b.port),                 # default namespace: ignored
        endpoints("quote", ["127.0.0.1"], b.port),
        mapping("m", "/m/", "quote", namespace="ns1"),
    ], env={"AMBASSADOR_SINGLE_NAMESPACE": "true", "AMBASSADOR_NAMESPACE": "ns1"})
    r = px.get("/m/")
    assert r.status == 200 and backend_name(r) == "A"
