#!/usr/bin/env bash
# PostgreSQL for vault-server's storage tests (crates/vault-server/tests/integration/pg.rs): the
# tests run their own throwaway cluster in a temporary directory with initdb and pg_ctl, as the
# `postgres` system user the package creates; this only installs the server binaries. It never
# starts or configures the distribution's own cluster. Idempotent, and quiet unless it fails.
set -euo pipefail
have_binaries() {
    for dir in /usr/lib/postgresql/*/bin; do
        [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/pg_dump" ] \
            && [ -x "$dir/pg_restore" ] && return 0
    done
    return 1
}
if have_binaries && id -u postgres >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { apt-get update -qq && apt-get install -y -qq postgresql; } >"$log" 2>&1; then
    cat "$log" >&2
    echo "50-postgresql.sh: installing the Debian package postgresql failed" >&2
    exit 1
fi
