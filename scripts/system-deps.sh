#!/usr/bin/env bash
# Installs what the tests need beyond Python packages, and starts PostgreSQL if it is down.
# Safe to run repeatedly: each step checks first.
set -euo pipefail

need=()
command -v chromium >/dev/null || need+=(chromium)
command -v nft >/dev/null || need+=(nftables)
# Node.js runs the OpenID provider the single sign-on tests sign in through (tests/oidc).
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
# The process sensor's eBPF object is compiled at build time (scripts/build-bpf.sh).
command -v clang >/dev/null || need+=(clang)
command -v bpftool >/dev/null || need+=(bpftool)
[ -r /usr/include/bpf/bpf_helpers.h ] || need+=(libbpf-dev)
# The detection engine's C hot path (src/vigil/detect/_speedups.c) is built by pip: a C compiler and Python's headers.
command -v cc >/dev/null || need+=(gcc)
python3 -c 'import os, sysconfig; raise SystemExit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need+=(python3-dev)
if ((${#need[@]})); then
  if [ "$(id -u)" -ne 0 ]; then
    echo "system-deps: missing ${need[*]}; run as root or install them (apt-get install -y ${need[*]})" >&2
  else
    echo "system-deps: installing ${need[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null \
      || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}" >/dev/null; }
  fi
fi

if command -v pg_ctlcluster >/dev/null && ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "system-deps: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
