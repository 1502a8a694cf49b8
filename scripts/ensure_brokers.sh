#!/usr/bin/env bash
# The broker tests (tests/brokers.py) run private Mosquitto and RabbitMQ instances from
# Debian's packages (never downloaded builds); install whichever is missing.
set -euo pipefail
missing=()
[ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
if [ ${#missing[@]} = 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "The broker tests need Debian's ${missing[*]}: run 'sudo apt-get install ${missing[*]}', then make test again." >&2
  exit 1
fi
echo "installing Debian's ${missing[*]} for the broker tests"
# A policy-rc.d answering 101 keeps the packages from starting their system services on
# install: the tests start private instances only. One already in place is left alone.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod +x "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
