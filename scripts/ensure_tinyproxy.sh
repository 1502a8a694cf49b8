#!/usr/bin/env bash
# The proxy tests run Debian's tinyproxy, each test its own on a free port: the
# tinyproxy-bin package is the binary alone, with no machine-wide service started.
set -euo pipefail
command -v tinyproxy >/dev/null 2>&1 && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "The proxy tests need Debian's tinyproxy: run 'sudo apt-get install tinyproxy-bin', then make test again." >&2
  exit 1
fi
echo "installing Debian's tinyproxy-bin for the proxy tests"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tinyproxy-bin >/dev/null
