"""The getambassador.io YAML of seed/istio-integration.md, the guide Portico was made from, as the
guide writes it, for the tests that run it. test_istio_seed.py checks every block against the
guide when the guide is beside the repository. `$productNamespace$` stays as written:
`in_namespace()` fills it in."""

TLSCONTEXT = """\
apiVersion: getambassador.io/v3alpha1
kind: TLSContext
metadata:
  name: istio-upstream
  namespace: $productNamespace$
spec:
  secret: istio-certs     # This Secret name cannot currently be changed.
  alpn_protocols: istio   # This is required for Istio.
"""

MTLS_MAPPING = """\
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata:
  name: mtls-mapping
spec:
  hostname: my-secret-host.example.com   # Make sure this matches a configured Host!
  prefix: /my-secret-mapping/
  tls: istio-upstream
"""

TRACING = """\
apiVersion: getambassador.io/v3alpha1
kind:  TracingService
metadata:
  name:  tracing
  namespace: $productNamespace$
spec:
  service: "zipkin:9411"
  driver: zipkin
  config: {}
  tag_headers:
    - ":authority"
    - ":path"
"""

QUOTE_MAPPING_PLAIN = """\
apiVersion: getambassador.io/v3alpha1
kind: Mapping
metadata:
  name: quote-backend
spec:
  hostname: "*"
  prefix: /backend/
  service: quote
"""

QUOTE_MAPPING_MTLS = QUOTE_MAPPING_PLAIN + "  tls: istio-upstream\n"

# in the guide's order
BLOCKS = (TLSCONTEXT, MTLS_MAPPING, TRACING, QUOTE_MAPPING_PLAIN, QUOTE_MAPPING_MTLS)


def in_namespace(text, namespace):
    """<text> with the guide's `$productNamespace$` replaced by <namespace>."""
    return text.replace("$productNamespace$", namespace)


def documents(*blocks, namespace="ambassador"):
    """<blocks> as one multi-document YAML text, each starting with `---`."""
    return "".join("---\n" + in_namespace(b, namespace) for b in blocks)
