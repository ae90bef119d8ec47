#!/usr/bin/env bash
# Compiles the agent's eBPF objects (CO-RE) against this kernel's BTF. Without clang, bpftool or
# /sys/kernel/btf/vmlinux it says so and succeeds: the process sensor then uses the proc connector and the
# network sensor audit connect/accept.
# vmlinux.h and the .o files are build products, never committed.
set -euo pipefail
cd "$(dirname "$0")/.."
src=src/vigil/agent/sensors/bpf
out=build/bpf
missing=()
command -v clang >/dev/null || missing+=(clang)
command -v bpftool >/dev/null || missing+=(bpftool)
[ -r /sys/kernel/btf/vmlinux ] || missing+=("/sys/kernel/btf/vmlinux (kernel BTF)")
[ -r /usr/include/bpf/bpf_helpers.h ] || missing+=("libbpf-dev headers")
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
    mv "$o.tmp" "$o"
  fi
done
