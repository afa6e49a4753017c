#!/usr/bin/env bash
# SoftHSM2 backs the PKCS#11 provider's tests and benchmarks (crates/kms-providers). The tests
# create their own token in a temporary directory; this only installs the module and
# softhsm2-util. Idempotent, and quiet unless something fails.
set -euo pipefail
module_present() {
    for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/*-linux-gnu/softhsm/libsofthsm2.so; do
        [ -f "$m" ] && return 0
    done
    return 1
}
if command -v softhsm2-util >/dev/null 2>&1 && module_present; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && apt-get install -y -qq softhsm2; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "10-softhsm2.sh: installing the Debian package softhsm2 failed" >&2
    exit 1
fi
