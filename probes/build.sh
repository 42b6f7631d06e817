#!/bin/sh
# Builds the probe object reproducibly: the same bytes from any checkout
# folder (debug info names the compilation directory as "." and files by
# relative path). CI rebuilds it and compares with assets/nettop.bpf.o.
#   probes/build.sh [OUTPUT]    (default: ../assets/nettop.bpf.o)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$here/../assets/nettop.bpf.o}
case $out in /*) ;; *) out=$(pwd)/$out ;; esac
CLANG=${CLANG:-clang-19}
cd "$here"
"$CLANG" -O2 -g -target bpf -D__TARGET_ARCH_x86 \
    -fdebug-compilation-dir=. -fdebug-prefix-map="$here"=. \
    -Wall -Werror -Wno-unused-function \
    -c nettop.bpf.c -o "$out"
