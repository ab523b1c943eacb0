"""Host resources and the default Host: routing by Host header, insecure actions (Route,
Redirect, Reject), Listener securityModel XFP. reference/emissary.md §3 (Host, Listener) and
DESIGN.md "When no Host exists"."""

import pytest

from portico_cfg import Portico, backend_name, dump, host, mapping


def configure(processes, tmp_path, backend, *hosts, listener_spec=None, mappings=None):
    px = Portico(processes, tmp_path, listener_spec=listener_spec)
    docs = list(mappings or [mapping("quote", "/backend/", f"127.0.0.1:{backend.port}")])
    px.write("config.yaml", dump(*hosts, *docs))
    return px.start()


def test_no_host_routes_everything_in_cleartext(processes, tmp_path, quote_backend):
    px = configure(processes, tmp_path, quote_backend)
    for h in (None, "foo.example.com", "anything", "10.1.2.3:8080"):
        r = px.get("/backend/", host=h)
        assert r.status == 200, (h, r)
        assert backend_name(r) == "quote-test"


def test_no_host_is_noted_in_diag(processes, tmp_path, quote_backend):
    px = configure(processes, tmp_path, quote_backend)
    d = px.diag()
    assert d["errors"] == []


def test_host_route_only_for_its_hostname(processes, tmp_path, quote_backend):
    px = configure(processes, tmp_path, quote_backend, host("foo", "foo.example.com", "Route"))
    assert px.status("/backend/", host="foo.example.com") == 200
    assert px.status("/backend/", host="FOO.example.com") == 200
    assert px.status("/backend/", host="bar.example.com") == 404
    assert px.status("/backend/", host="example.com") == 404
    # no wildcard Host is synthesised once a Host exists
    assert px.status("/backend/") == 404


def test_wildcard_host(processes, tmp_path, quote_backend):
    px = configure(processes, tmp_path, quote_backend, host("wild", "*.example.com", "Route"))
    assert px.status("/backend/", host="a.example.com") == 200
    assert px.status("/backend/", host="a.b.example.com") == 200
    assert px.status("/backend/", host="example.org") == 404


def test_host_redirect_action(processes, tmp_path, quote_backend):
    px = configure(processes, tmp_path, quote_backend, host("foo", "foo.example.com", "Redirect"))
    r = px.get("/backend/some/path?x=1", host="foo.example.com")
    assert r.status == 301, r
    assert r.headers.get("location") == "https://foo.example.com/backend/some/path?x=1", r.headers
    assert px.status("/backend/", host="bar.example.com") == 404


def test_host_default_action_is_redirect(processes, tmp_path, quote_backend):
    px = configure(processes, tmp_path, quote_backend, host("foo", "foo.example.com"))
    r = px.get("/backend/path", host="foo.example.com")
    assert r.status == 301, r
    assert r.headers.get("location") == "https://foo.example.com/backend/path"


def test_host_reject_action_is_404(processes, tmp_path, quote_backend):
    px = configure(processes, tmp_path, quote_backend,
               host("foo", "foo.example.com", "Reject"),
               host("bar", "bar.example.com", "Route"))
    assert px.status("/backend/", host="foo.example.com") == 404
    assert px.status("/backend/", host="bar.example.com") == 200


def test_per_host_actions(processes, tmp_path, quote_backend):
    # t_hosts.HostCRDDouble: Route / Redirect / Reject per Host → 200 / 301 / 404
    px = configure(processes, tmp_path, quote_backend,
               host("h1", "one.example.com", "Route"),
               host("h2", "two.example.com", "Redirect"),
               host("h3", "three.example.com", "Reject"))
    assert px.status("/backend/", host="one.example.com") == 200
    assert px.status("/backend/", host="two.example.com") == 301
    assert px.status("/backend/", host="three.example.com") == 404


def test_acme_challenge_is_always_routed(processes, tmp_path, quote_backend):
    acme = mapping("acme", "/.well-known/acme-challenge/", f"127.0.0.1:{quote_backend.port}")
    px = configure(processes, tmp_path, quote_backend,
               host("foo", "foo.example.com", "Redirect"),
               mappings=[acme, mapping("quote", "/backend/", f"127.0.0.1:{quote_backend.port}")])
    assert px.status("/.well-known/acme-challenge/tok", host="foo.example.com") == 200
    assert px.status("/backend/", host="foo.example.com") == 301


def test_xfp_https_is_secure_with_l7depth(processes, tmp_path, quote_backend):
    # t_redirect.XFPRedirect: securityModel XFP, l7Depth 1: XFP https → routed, http → 301
    px = configure(processes, tmp_path, quote_backend, host("foo", "foo.example.com", "Redirect"),
               listener_spec={"l7Depth": 1})
    assert px.status("/backend/", host="foo.example.com",
                     headers={"X-Forwarded-Proto": "https"}) == 200
    assert px.status("/backend/", host="foo.example.com",
                     headers={"X-Forwarded-Proto": "http"}) == 301
    assert px.status("/backend/", host="foo.example.com") == 301


def test_xfp_from_untrusted_client_is_not_believed(processes, tmp_path, quote_backend):
    # l7Depth 0 (default): Envoy overwrites an incoming X-Forwarded-Proto (emissary.md §3
    # Listener), so a client cannot skip the HTTPS redirect by sending XFP: https.
    px = configure(processes, tmp_path, quote_backend, host("foo", "foo.example.com", "Redirect"))
    assert px.status("/backend/", host="foo.example.com",
                     headers={"X-Forwarded-Proto": "https"}) == 301


def test_insecure_listener_model_routes_without_xfp(processes, tmp_path, quote_backend):
    px = configure(processes, tmp_path, quote_backend, host("foo", "foo.example.com", "Route"),
               listener_spec={"security_model": "INSECURE"})
    assert px.status("/backend/", host="foo.example.com") == 200


def test_mapping_hostname_must_match_the_host(processes, tmp_path, quote_backend):
    svc = f"127.0.0.1:{quote_backend.port}"
    px = configure(processes, tmp_path, quote_backend,
               host("foo", "foo.example.com", "Route"),
               host("bar", "bar.example.com", "Route"),
               mappings=[mapping("foo-only", "/foo/", svc, hostname="foo.example.com"),
                         mapping("all", "/all/", svc, hostname="*"),
                         mapping("wild", "/wild/", svc, hostname="*.example.com")])
    assert px.status("/foo/", host="foo.example.com") == 200
    assert px.status("/foo/", host="bar.example.com") == 404
    assert px.status("/all/", host="bar.example.com") == 200
    assert px.status("/wild/", host="bar.example.com") == 200
    assert px.status("/wild/", host="foo.example.com") == 200


def test_host_mapping_selector(processes, tmp_path, quote_backend):
    svc = f"127.0.0.1:{quote_backend.port}"
    labelled = mapping("labelled", "/l/", svc)
    labelled["metadata"]["labels"] = {"team": "a"}
    px = configure(processes, tmp_path, quote_backend,
               host("foo", "foo.example.com", "Route",
                    mappingSelector={"matchLabels": {"team": "a"}}),
               mappings=[labelled, mapping("unlabelled", "/u/", svc)])
    # Host with selector and hostname: the Mapping must match both (emissary.md §3)
    assert px.status("/l/", host="foo.example.com") == 200
    assert px.status("/u/", host="foo.example.com") == 404


def test_untrusted_xfp_is_overwritten_upstream(processes, tmp_path):
    from conftest import start_quote
    b = start_quote(processes, "--echo", name="E")
    px = configure(processes, tmp_path, b)
    r = px.get("/backend/", headers={"X-Forwarded-Proto": "https"})
    assert r.status == 200
    xfp = [v for k, v in r.json()["headers"] if k.lower() == "x-forwarded-proto"]
    assert xfp == ["http"], xfp


def test_trusted_xfp_is_kept_upstream(processes, tmp_path):
    from conftest import start_quote
    b = start_quote(processes, "--echo", name="E")
    px = configure(processes, tmp_path, b, listener_spec={"l7Depth": 1})
    r = px.get("/backend/", headers={"X-Forwarded-Proto": "https"})
    assert r.status == 200
    xfp = [v for k, v in r.json()["headers"] if k.lower() == "x-forwarded-proto"]
    assert xfp == ["https"], xfp
