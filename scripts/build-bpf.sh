#!/usr/bin/env bash
# Compiles the agent's eBPF objects (CO-RE) against this kernel's BTF. Without clang, bpftool or
# /sys/kernel/btf/vmlinux it says so and succeeds: the process sensor then uses the proc connector and the
# network sensor audit connect/accept.
# The .o files are CO-RE (relocated against the running kernel's BTF when loaded), so they are built once and
# committed: a machine without clang runs the shipped ones. objects.sha256 records the sources they were built
# from; `scripts/build-bpf.sh --check` fails when a source changed since (rebuild: `make bpf` with clang).
# vmlinux.h is a build product, never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
src=src/vigil/agent/sensors/bpf
out=build/bpf
stamp="$src/objects.sha256"
sources_hash() { cat "$src"/*.bpf.c "$src"/vigil.bpf.h | sha256sum | cut -d' ' -f1; }
current() { [ -s "$stamp" ] && [ "$(cat "$stamp")" = "$(sources_hash)" ] && ls "$src"/*.bpf.o >/dev/null 2>&1; }
if [ "${1:-}" = "--check" ]; then
  current || { echo "bpf: the shipped objects in $src are stale or missing: run make bpf (needs clang) and commit them" >&2; exit 1; }
  echo "bpf: shipped objects are current"
  exit 0
fi
missing=()
command -v clang >/dev/null || missing+=(clang)
command -v bpftool >/dev/null || missing+=(bpftool)
[ -r /sys/kernel/btf/vmlinux ] || missing+=("/sys/kernel/btf/vmlinux (kernel BTF)")
[ -r /usr/include/bpf/bpf_helpers.h ] || missing+=("libbpf-dev headers")
if ((${#missing[@]})) && current; then
  echo "bpf: using the shipped objects in $src (no ${missing[*]} here to rebuild them)"
  exit 0
fi
if ((${#missing[@]})); then
  echo "bpf: skipped, missing ${missing[*]} (apt-get install clang bpftool libbpf-dev); the process sensor will use the proc connector, the network sensor audit" >&2
  exit 0
fi
case "$(uname -m)" in
  x86_64) arch=x86 ;;
  aarch64) arch=arm64 ;;
  *) arch="$(uname -m)" ;;
esac
mkdir -p "$out"
if [ ! -s "$out/vmlinux.h" ]; then
  bpftool btf dump file /sys/kernel/btf/vmlinux format c > "$out/vmlinux.h.tmp"
  mv "$out/vmlinux.h.tmp" "$out/vmlinux.h"
fi
for c in "$src"/*.bpf.c; do
  o="${c%.c}.o"
  if [ ! -e "$o" ] || [ "$c" -nt "$o" ] || [ "$src/vigil.bpf.h" -nt "$o" ]; then
    echo "bpf: compiling $o"
    clang -O2 -g -Wall -Werror -target bpf -D__TARGET_ARCH_"$arch" -I "$out" -c "$c" -o "$o.tmp"
    # DWARF is not needed to load; .BTF and .BTF.ext (CO-RE relocations) stay.
    if command -v llvm-strip >/dev/null; then llvm-strip -g "$o.tmp"; fi
    mv "$o.tmp" "$o"
  fi
done
sources_hash > "$stamp"
