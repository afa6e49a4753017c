#!/usr/bin/env bash
# The OS trust store: the `azure` provider of crates/kms-providers trusts it by default (its
# builder refuses to start with an empty store), and its doc examples build such a provider.
# Its tests use a test CA instead and never need it. Idempotent, and quiet unless something fails.
set -euo pipefail
if [ -s /etc/ssl/certs/ca-certificates.crt ]; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && apt-get install -y -qq ca-certificates; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "15-ca-certificates.sh: installing the Debian package ca-certificates failed" >&2
    exit 1
fi
