#!/usr/bin/env bash
# moto in server mode is the AWS KMS the `aws` provider's tests talk to on 127.0.0.1
# (crates/kms-providers/tests/integration/aws.rs starts `moto_server` on a free port per test
# binary). It lives in the project's virtualenv under .tools/ (git-ignored, shared with
# 40-schemathesis.sh), pinned so that every machine tests against the same emulator.
# Idempotent, and quiet unless something fails.
set -euo pipefail
MOTO_VERSION="5.2.5"
root="$(cd "$(dirname "$0")/../.." && pwd)"
venv="$root/.tools/venv"
if [ -x "$venv/bin/moto_server" ] \
    && [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null)" = "$MOTO_VERSION" ]; then
    exit 0
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq python3 python3-venv; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "20-moto.sh: installing python3 and python3-venv failed" >&2
        exit 1
    fi
fi
# `python3 -m venv` on an existing virtualenv keeps its packages, so this never undoes
# another setup script's work.
if ! { python3 -m venv "$venv" \
    && "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        "moto[server]==$MOTO_VERSION"; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "20-moto.sh: installing moto[server] $MOTO_VERSION into $venv failed" >&2
    exit 1
fi
