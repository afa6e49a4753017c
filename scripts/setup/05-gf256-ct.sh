#!/usr/bin/env bash
# libclang for the valgrind client-request bindings (the `crabgrind` dev-dependency generates
# them with bindgen at build time) used by crates/gf256-shamir/tests/ct_valgrind.rs.
# valgrind itself comes from 00-valgrind.sh.
set -euo pipefail
if ls /usr/lib/llvm-*/lib/libclang.so* /usr/lib/x86_64-linux-gnu/libclang-*.so* >/dev/null 2>&1 \
    && ls /usr/lib/llvm-*/lib/clang/*/include/stddef.h >/dev/null 2>&1; then
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends libclang-dev >/dev/null
