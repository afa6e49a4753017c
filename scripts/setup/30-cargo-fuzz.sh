#!/usr/bin/env bash
# cargo-fuzz builds and runs the fuzz targets in fuzz/ for scripts/fuzz-smoke.
#
# Pinned, so a new cargo-fuzz release cannot change the build flags under CI without a commit
# here; `--locked` builds it with the dependency versions it was released with. Building it
# from source takes about a minute on 2 cores. libFuzzer itself is compiled from C++ by the
# libfuzzer-sys crate at fuzz-build time, with the machine's g++.
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2

if command -v cargo-fuzz >/dev/null 2>&1 \
    && [ "$(cargo-fuzz --version 2>/dev/null)" = "cargo-fuzz ${CARGO_FUZZ_VERSION}" ]; then
    exit 0
fi
cargo install cargo-fuzz --version "${CARGO_FUZZ_VERSION}" --locked
