#!/usr/bin/env bash
# Install the Autobahn|Testsuite fuzzing server (`wstest`) for `make conformance`, once,
# into .run/wstest/ (nothing outside it changes). Prints the path of the wstest launcher.
#
# autobahntestsuite runs on Python 2.7 only, and Debian 12 has no Python 2. So we take
# Debian 11's python2.7 packages from the Debian mirror this machine already uses,
# through a private apt configuration (its own sources list, package lists and cache:
# the machine's apt setup is untouched), unpack them with dpkg -x, bootstrap pip from
# PyPI and pip-install autobahntestsuite, whose release pins its Python 2.7 dependency
# set. A machine without apt (or with another distribution) can point WSTEST at any
# working wstest instead.
set -euo pipefail

if [ -n "${WSTEST:-}" ]; then
  echo "$WSTEST"
  exit 0
fi

cd "$(dirname "$0")/.."
ROOT="$PWD"
DEST="$ROOT/.run/wstest"
LAUNCHER="$DEST/bin/wstest"
AUTOBAHNTESTSUITE_VERSION=25.10.1
STAMP="$DEST/.installed-$AUTOBAHNTESTSUITE_VERSION"
PY3="${PYTHON:-$ROOT/.venv/bin/python}"

if [ -f "$STAMP" ] && [ -x "$LAUNCHER" ]; then
  echo "$LAUNCHER"
  exit 0
fi

say() { echo "ensure_wstest: $*" >&2; }

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
  say "needs Debian's apt-get and dpkg-deb to fetch Python 2.7; or set WSTEST to a wstest of Autobahn|Testsuite"
  exit 1
fi
# wsaccel, ujson and Twisted build C extensions against the unpacked Python headers.
if ! command -v gcc >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    say "needs gcc: run 'sudo apt-get install gcc', then make conformance again"
    exit 1
  fi
  say "installing Debian's gcc"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc >/dev/null
fi

# The Debian archive this machine's apt already uses (deb822 .sources or one-line
# sources.list): the first URI that serves the main archive, not the security one.
mirror=$(
  cat /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '
    /^URIs:/ { uri = $2 }
    /^Suites:/ { if (uri != "" && $0 !~ /security/) { print uri; exit } }'
)
if [ -z "$mirror" ]; then
  mirror=$(awk '$1 == "deb" && $0 !~ /security/ { for (i = 2; i <= NF; i++) if ($i ~ /^https?:/) { print $i; exit } }' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
fi
if [ -z "$mirror" ]; then
  say "found no Debian mirror in /etc/apt/sources.list*; set WSTEST to a wstest of Autobahn|Testsuite"
  exit 1
fi

rm -rf "$DEST"
mkdir -p "$DEST/apt/lists/partial" "$DEST/apt/cache" "$DEST/debs" "$DEST/wheels" "$DEST/bin"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror bullseye main" >"$DEST/apt/sources.list"
apt_opts=(
  -o "Dir::Etc::SourceList=$DEST/apt/sources.list"
  -o "Dir::Etc::SourceParts=/dev/null"
  -o "Dir::State::Lists=$DEST/apt/lists"
  -o "Dir::Cache=$DEST/apt/cache"
  -o "APT::Sandbox::User=root"
  -o "Acquire::Check-Valid-Until=false"
)
say "fetching Debian 11's python2.7 (private apt lists in $DEST/apt)"
apt-get "${apt_opts[@]}" -qq update
(cd "$DEST/debs" && apt-get "${apt_opts[@]}" -qq download \
  python2.7 python2.7-minimal libpython2.7 libpython2.7-minimal libpython2.7-stdlib libpython2.7-dev \
  libssl1.1 libffi7 >/dev/null)
for deb in "$DEST"/debs/*.deb; do
  dpkg-deb -x "$deb" "$DEST/py27"
done

PREFIX="$DEST/py27/usr"
PY2="$PREFIX/bin/python2.7"
# The unpacked interpreter finds its library through PYTHONHOME, and libssl1.1/libffi7
# (gone from Debian 12) through LD_LIBRARY_PATH; set for its processes only, never
# exported to the product's.
py2() {
  PYTHONHOME="$PREFIX" LD_LIBRARY_PATH="$PREFIX/lib/x86_64-linux-gnu" \
    CFLAGS="-I$PREFIX/include/python2.7 -I$PREFIX/include" LDFLAGS="-L$PREFIX/lib/x86_64-linux-gnu" \
    "$PY2" "$@"
}

say "installing pip and autobahntestsuite $AUTOBAHNTESTSUITE_VERSION for Python 2.7"
install() {
  "$PY3" -m pip download --no-deps --only-binary=:all: --python-version 2.7 --implementation cp \
    --abi cp27mu --platform manylinux1_x86_64 -d "$DEST/wheels" pip==20.3.4 setuptools==44.1.1 wheel==0.37.1
  # pip 20.3.4, the last for Python 2.7, runs straight from its wheel to install itself.
  py2 "$DEST/wheels/pip-20.3.4-py2.py3-none-any.whl/pip" install --no-warn-script-location \
    --no-index --find-links "$DEST/wheels" pip setuptools wheel
  py2 -m pip install --no-warn-script-location --disable-pip-version-check \
    "autobahntestsuite==$AUTOBAHNTESTSUITE_VERSION"
}
if ! install >"$DEST/pip.log" 2>&1; then
  tail -20 "$DEST/pip.log" >&2
  say "installing autobahntestsuite failed; see $DEST/pip.log"
  exit 1
fi
rm -rf "$DEST/apt" "$DEST/debs"

cat >"$LAUNCHER" <<EOF
#!/bin/sh
# Autobahn|Testsuite's wstest on the Python 2.7 unpacked by scripts/ensure_wstest.sh.
PYTHONHOME="$PREFIX" LD_LIBRARY_PATH="$PREFIX/lib/x86_64-linux-gnu" exec "$PY2" "$PREFIX/local/bin/wstest" "\$@"
EOF
chmod +x "$LAUNCHER"
"$LAUNCHER" --help >/dev/null
touch "$STAMP"
say "installed $LAUNCHER"
echo "$LAUNCHER"
