#!/usr/bin/env bash
# Starts Debian's docker-registry (OCI distribution v2) on 127.0.0.1:PORT with storage in a
# temp dir, signs the first-party components with registry-fixtures/keys/test.key and pushes
# them as oci://127.0.0.1:PORT/helios/NAME:VERSION. Prints the trust root to configure.
# Usage: registry-fixtures/run-registry.sh [PORT]   (Ctrl-C stops the registry)
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${1:-5000}
DATA=$(mktemp -d)
trap 'kill "$REG" 2>/dev/null; rm -rf "$DATA"' EXIT
cat >"$DATA/config.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $DATA/data
http:
  addr: 127.0.0.1:$PORT
YML
docker-registry serve "$DATA/config.yml" &
REG=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$PORT) 2>/dev/null && break; sleep 0.1; done
CARGO_TARGET_DIR=target/wasm cargo build -q --profile wasm --target wasm32-wasip2 -p helios-router -p helios-llm-guardrail
cargo build -q -p helios-plugin
CLI=target/debug/helios-plugin
VERSION=$(grep -m1 '^version' Cargo.toml | cut -d'"' -f2)
for spec in router:route llm-guardrail:validate; do
    name=${spec%%:*}; hooks=${spec##*:}
    art="$DATA/$name.tar.gz"
    "$CLI" pack --wasm "target/wasm/wasm32-wasip2/wasm/helios_${name//-/_}.wasm" --name "$name" \
        --version "$VERSION" --hooks "$hooks" --out "$art"
    "$CLI" sign --key registry-fixtures/keys/test.key "$art"
    "$CLI" push --insecure "$art" "oci://127.0.0.1:$PORT/helios/$name:$VERSION"
done
echo "registry on 127.0.0.1:$PORT; trust root: $(pwd)/registry-fixtures/trust"
echo 'set [plugin_runtime] trust_root to it and insecure_registries = ["127.0.0.1:'"$PORT"'"]'
wait "$REG"
