#!/usr/bin/env bash
# Installs every Debian package trellis needs to build, test, benchmark and
# run its demo. Idempotent: when everything is already installed it does not
# touch apt at all, so `make` targets can call it on every run.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  clang libclang-rt-14-dev clang-format
  libasio-dev nlohmann-json3-dev libmsgpack-cxx-dev libcli11-dev libspdlog-dev
  libfmt-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-dev pybind11-dev python3-pybind11
  python3-numpy python3-pandas python3-pytest python3-sklearn python3-msgpack
  redis-server python3-redis
  python3-yaml python3-distributed python3-cloudpickle python3-kubernetes python3-jsonschema
  procps util-linux
  etcd-server etcd-client libcurl4-openssl-dev iperf3 iproute2 iputils-ping
  libcpp-httplib-dev libssl-dev zlib1g-dev libbrotli-dev
  chromium prometheus python3-prometheus-client
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]} (run as root to install them)" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
