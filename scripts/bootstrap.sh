#!/usr/bin/env bash
# Installs what the stack needs on Debian/Ubuntu: Debian packages, then the
# project virtualenv (.venv) from requirements.txt, then the compiled matching
# engine (scripts/build_engine.py). Idempotent and quiet when nothing is
# missing. Any problem ends in one line naming it and the fix.
set -uo pipefail
cd "$(dirname "$0")/.."

die() { echo "[bootstrap] ERROR: $*" >&2; exit 2; }
say() { echo "[bootstrap] $*"; }

PYTHON=${PYTHON:-python3}
# gcc, libc6-dev and python3-dev (Python.h of Debian's python3, which makes the
# venv) compile the matching engine.
# prometheus* (Prometheus, promtool, Alertmanager, exporters): monitoring, stack/monitoring.py.
# haproxy: the zones' edge configuration is checked and run by the suite
# (tests/unit/ansible/test_haproxy_edge_config.py, tests/integration/zones/
# test_edge_haproxy.py: HAProxies of the tests' own on 127.0.0.1), not only
# by scripts/zones.sh.
DEBIAN_PACKAGES="python3 python3-venv python3-dev gcc libc6-dev rabbitmq-server memcached postgresql openjdk-17-jre-headless maven procps prometheus prometheus-alertmanager prometheus-node-exporter prometheus-postgres-exporter haproxy"
# chromium runs the browser tests headless (driven by pip's playwright through
# executable_path: never `playwright install`); npm installs the web client's
# pinned packages (frontend_api/package-lock.json). A machine with Node.js from
# elsewhere (nodesource) already has npm: Debian's npm would conflict with it.
DEBIAN_PACKAGES="$DEBIAN_PACKAGES chromium"
command -v npm >/dev/null || DEBIAN_PACKAGES="$DEBIAN_PACKAGES nodejs npm"

command -v dpkg-query >/dev/null || die "dpkg not found: this setup needs Debian or Ubuntu"

missing=()
for pkg in $DEBIAN_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then SUDO="sudo -n"
        else die "installing ${missing[*]} needs root: run as root or with passwordless sudo"; fi
    fi
    say "installing Debian packages: ${missing[*]}"
    # The packages' own system services (5672, 11211, 5432...) are not ours and
    # are not needed: keep apt from starting them.
    policy=/usr/sbin/policy-rc.d
    added_policy=0
    if [ ! -e $policy ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee $policy >/dev/null && $SUDO chmod +x $policy && added_policy=1
    fi
    log=$(mktemp)
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -q >"$log" 2>&1 \
        || { [ $added_policy = 1 ] && $SUDO rm -f $policy; die "apt-get update failed (see $log): check access to the Debian package mirrors"; }
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1
    rc=$?
    [ $added_policy = 1 ] && $SUDO rm -f $policy
    [ $rc = 0 ] || die "apt-get install ${missing[*]} failed (see $log)"
    rm -f "$log"
fi

command -v "$PYTHON" >/dev/null || die "$PYTHON not found: install python3 (3.11 or newer)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "Python 3.11 or newer is needed ($PYTHON is $("$PYTHON" -V 2>&1))"

stamp=.venv/.requirements.sha256
want=$(sha256sum requirements.txt | cut -d' ' -f1)
if [ ! -x .venv/bin/python ] || [ "$(cat $stamp 2>/dev/null)" != "$want" ]; then
    say "installing Python dependencies into .venv"
    [ -x .venv/bin/python ] || "$PYTHON" -m venv .venv || die "could not create .venv: install python3-venv"
    log=$(mktemp)
    .venv/bin/pip install -q --disable-pip-version-check -r requirements.txt >"$log" 2>&1 \
        || die "pip install -r requirements.txt failed (see $log): check access to PyPI"
    echo "$want" > $stamp
    rm -f "$log"
fi

# The matching engine's core compiled with Cython next to its source; skipped
# (in ~50 ms) while the build stamp matches the sources. A failed build stops
# here: the services would otherwise run the interpreted engine, ~1.5x slower.
if ! .venv/bin/python scripts/build_engine.py --check; then
    say "compiling the matching engine (Cython, about a minute)"
    log=$(mktemp)
    .venv/bin/python scripts/build_engine.py >"$log" 2>&1 \
        || die "compiling the matching engine failed (see $log): needs gcc, libc6-dev and Python.h (python3-dev)"
    rm -f "$log"
fi

# The trader web client's packages (lightweight-charts, socket.io-client,
# oidc-client-ts), exactly as locked, served by the gateway from
# frontend_api/node_modules (no CDN). Skipped while the lock file is unchanged.
stamp=frontend_api/node_modules/.package-lock.sha256
want=$(sha256sum frontend_api/package-lock.json | cut -d' ' -f1)
if [ "$(cat $stamp 2>/dev/null)" != "$want" ]; then
    say "installing the web client's npm packages (frontend_api)"
    log=$(mktemp)
    (cd frontend_api && npm ci --no-audit --no-fund) >"$log" 2>&1 \
        || die "npm ci in frontend_api failed (see $log): check access to the npm registry"
    echo "$want" > $stamp
    rm -f "$log"
fi
