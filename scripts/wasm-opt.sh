#!/usr/bin/env bash
# Optimises the module cargo built, in place, with Binaryen's wasm-opt
# (`make wasm`); `--raw` puts cargo's own build back (`make wasm WASM_OPT=0`).
#
#   scripts/wasm-opt.sh MODULE.wasm [wasm-opt flags...]
#   scripts/wasm-opt.sh --raw MODULE.wasm
#
# Keeps cargo's output as MODULE.raw.wasm and the optimised one as
# MODULE.opt.wasm (what made it in MODULE.opt.stamp) beside
# it, so a `make wasm` with nothing to rebuild does not optimise again
# (wasm-opt takes half a minute).
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
stamp=${wasm%.wasm}.opt.stamp

# Cargo writes MODULE as a hard link to its own copy under deps/: replace the
# file, never write through it, so cargo's copy stays what it built.
replace() {
    rm -f "$wasm"
    cp "$1" "$wasm"
}

if [ "$raw_only" = 1 ]; then
    if [ -f "$opt" ] && [ -f "$raw" ] && cmp -s "$wasm" "$opt"; then
        replace "$raw"
    fi
    exit 0
fi
if ! { [ -f "$opt" ] && [ -f "$raw" ] && cmp -s "$wasm" "$opt"; }; then
    # Cargo's module: just built, or put back by --raw.
    if ! cmp -s "$wasm" "$raw"; then
        cp "$wasm" "$raw.tmp" && mv "$raw.tmp" "$raw"
    fi
fi
# The optimised module is made again when cargo's or the flags changed.
want="$(sha256sum < "$raw" | cut -d' ' -f1) $*"
if [ ! -f "$opt" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    wasm-opt "$@" "$raw" -o "$opt.tmp"
    mv "$opt.tmp" "$opt"
    printf '%s' "$want" > "$stamp"
fi
if ! cmp -s "$wasm" "$opt"; then
    replace "$opt"
fi
