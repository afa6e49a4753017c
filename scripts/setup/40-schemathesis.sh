#!/usr/bin/env bash
# schemathesis fuzzes vault-server's HTTP API against its committed OpenAPI document
# (crates/vault-server/tests/integration/fuzz_api.rs runs it against a live server on
# 127.0.0.1). It lives in the project's virtualenv under .tools/ (git-ignored), pinned so that
# every machine fuzzes with the same checks. Idempotent, and quiet unless something fails.
set -euo pipefail
SCHEMATHESIS_VERSION="4.32.5"
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.tools/venv"
if [ -x "$venv/bin/schemathesis" ] \
    && [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" = "$SCHEMATHESIS_VERSION" ]; then
    exit 0
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq python3 python3-venv; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "40-schemathesis.sh: installing python3 and python3-venv failed" >&2
        exit 1
    fi
fi
if ! { python3 -m venv "$venv" \
    && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "schemathesis==$SCHEMATHESIS_VERSION"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "40-schemathesis.sh: installing schemathesis $SCHEMATHESIS_VERSION into $venv failed" >&2
    exit 1
fi
