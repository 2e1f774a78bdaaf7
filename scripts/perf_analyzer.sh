#!/usr/bin/env bash
# NVIDIA's perf_analyzer 2.51.0 (the NGC 24.10 line), the referee beside `maas bench`'s own load
# generator. PyPI's `perf-analyzer` is an empty placeholder; the binary ships inside the
# manylinux wheel of tritonclient==2.51.0. It links libcudart.so.12 (PyPI's CUDA runtime wheel;
# no GPU needed) and Debian's libb64.so.0d, which is unpacked into the cache from the .deb when
# the system lacks it (no root needed). Made once in the cache, then reused; arguments go to
# perf_analyzer.
set -euo pipefail
tritonclient=2.51.0
cudart=12.9.79
home="${MAAS_CACHE:-$HOME/.cache/maas}/tools/perf_analyzer-$tritonclient"
mkdir -p "$(dirname "$home")"
(
  flock 9  # one install at a time; a second caller waits for the first
  if [ ! -f "$home/.installed" ]; then
    rm -rf "$home"
    mkdir -p "$home/lib"
    python3.11 -m venv "$home/venv" 2>/dev/null || python3 -m venv "$home/venv"
    "$home/venv/bin/python" -m pip install --quiet --no-deps \
      "tritonclient==$tritonclient" "nvidia-cuda-runtime-cu12==$cudart" ||
      { rm -rf "$home"; echo "error: installing perf_analyzer (tritonclient==$tritonclient) failed" >&2; exit 1; }
    if ! /sbin/ldconfig -p 2>/dev/null | grep -q 'libb64\.so\.0d'; then
      fetch() { apt-get download libb64-0d >/dev/null 2>&1; }
      # a fresh machine may have no package lists yet; root can fetch them
      (cd "$home/lib" && { fetch || { [ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null 2>&1 && fetch; }; } &&
        dpkg-deb -x libb64-0d_*.deb unpacked && cp unpacked/usr/lib/*/libb64.so.0d . &&
        rm -rf unpacked ./*.deb) ||
        { rm -rf "$home"; echo "error: libb64.so.0d is missing and 'apt-get download libb64-0d' failed (Debian/Ubuntu: apt install libb64-0d)" >&2; exit 1; }
    fi
    touch "$home/.installed"
  fi
) 9>"$home.lock"
site=$(echo "$home"/venv/lib/python3*/site-packages)
binary=$(echo "$home"/venv/bin/perf_analyzer)
[ -x "$binary" ] || binary=$(find "$home/venv" -name perf_analyzer -type f | head -1)
export LD_LIBRARY_PATH="$home/lib:$site/nvidia/cuda_runtime/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec "$binary" "$@"
