#!/usr/bin/env bash
# Optimises the module cargo built, in place, with Binaryen's wasm-opt
# (`make wasm`); `--raw` puts cargo's own build back (`make wasm WASM_OPT=0`).
#
#   scripts/wasm-opt.sh MODULE.wasm [wasm-opt flags...]
#   scripts/wasm-opt.sh --raw MODULE.wasm
#
# Keeps cargo's output as MODULE.raw.wasm and the optimised one as
# MODULE.opt.wasm beside it, so a `make wasm` with nothing to rebuild does
# not optimise again (wasm-opt takes half a minute).
set -euo pipefail

raw_only=0
if [ "${1:-}" = "--raw" ]; then
    raw_only=1
    shift
fi
wasm=$1
shift
raw=${wasm%.wasm}.raw.wasm
opt=${wasm%.wasm}.opt.wasm

# Cargo writes MODULE as a hard link to its own copy under deps/: replace the
# file, never write through it, so cargo's copy stays what it built.
replace() {
    rm -f "$wasm"
    cp "$1" "$wasm"
}

if [ -f "$opt" ] && cmp -s "$wasm" "$opt"; then
    # Already the optimised module; cargo had nothing to rebuild.
    if [ "$raw_only" = 1 ]; then
        replace "$raw"
    fi
    exit 0
fi
if [ "$raw_only" = 1 ]; then
    exit 0
fi
if [ ! -f "$opt" ] || ! cmp -s "$wasm" "$raw"; then
    # A module cargo has just built.
    cp "$wasm" "$raw.tmp" && mv "$raw.tmp" "$raw"
    wasm-opt "$@" "$raw" -o "$opt.tmp"
    mv "$opt.tmp" "$opt"
fi
replace "$opt"
