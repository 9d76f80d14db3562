#!/usr/bin/env bash
# Three zones on one machine for the three-zones inventory (ansible/):
# network namespaces zone-a, zone-b, zone-c, each one host with one address
# on a link-local network (169.254.100.0/24), joined to this machine by a
# veth pair whose host end sits on a private bridge (exz-br, 169.254.100.1).
# Nothing else on the machine is touched: no forwarding, no routes beyond
# that /24, no host firewall rules.
#
#   scripts/zones.sh up            create the namespaces, links and bridge (idempotent)
#   scripts/zones.sh down          stop each zone's supervisord and processes, remove it all
#   scripts/zones.sh status        one line per zone: address, link, cut or not
#   scripts/zones.sh cut ZONE      drop all of ZONE's traffic (iptables inside the zone)
#   scripts/zones.sh heal ZONE     undo cut
#   scripts/zones.sh unplug ZONE   take ZONE's link down (host end of its veth)
#   scripts/zones.sh plug ZONE     undo unplug
#   scripts/zones.sh install       the Debian packages the three-zones roles use
#   scripts/zones.sh deploy        install + up + the three-zones play (ansible/site.yml)
#   scripts/zones.sh drill         deploy, then the CI zone drill (below), then down
#
# `drill` is what `make test EXCHANGE_ZONES_TEST=1` runs after the suite:
# the zone-loss drill of the zone holding the PostgreSQL leader, under order
# load, and a kill -9 of the active engine's matching process; nothing else of
# tests/integration/zones (see the test's docstring and docs/operations.md for
# what is left out and how to run the rest by hand). .ci/run turns it on.
#
# ZONE is a, b, c or zone-a, zone-b, zone-c. Needs root (ip netns).
set -uo pipefail
cd "$(dirname "$0")/.."

ZONES="a b c"
BRIDGE=exz-br
NET=169.254.100
HOST_ADDRESS=$NET.1
# Zone a is .11, b .12, c .13 (ansible/inventories/three-zones/host_vars).
address_of() { case $1 in a) echo $NET.11;; b) echo $NET.12;; c) echo $NET.13;; esac; }
HOSTS_DIR=${EXCHANGE_ZONES_HOSTS_DIR:-run/hosts}
ZONE_PACKAGES="iproute2 iptables patroni etcd-server etcd-client haproxy"

# No ping on a minimal Debian: a TCP connection to a closed port that is
# refused (RST) proves the peer answers; a timeout means it does not.
REACHES='
import socket, sys
try:
    socket.create_connection((sys.argv[1], 9), timeout=2).close()
except ConnectionRefusedError:
    pass
except OSError as problem:
    sys.exit(f"{sys.argv[1]}: {problem}")
'

die() { echo "[zones] ERROR: $*" >&2; exit 2; }
say() { echo "[zones] $*"; }

[ "$(id -u)" -eq 0 ] || die "needs root (ip netns, veth links): run as root"
command -v ip >/dev/null || die "ip not found: install the Debian package iproute2"

zone_letter() {
    local z=${1#zone-}
    case $z in a|b|c) echo "$z";; *) die "unknown zone $1: one of zone-a, zone-b, zone-c";; esac
}

up() {
    if ! ip link show $BRIDGE >/dev/null 2>&1; then
        ip link add $BRIDGE type bridge || die "could not create bridge $BRIDGE"
    fi
    ip addr replace $HOST_ADDRESS/24 dev $BRIDGE
    ip link set $BRIDGE up
    for z in $ZONES; do
        local ns=zone-$z host_end=exz-$z
        [ -e /run/netns/$ns ] || ip netns add $ns || die "could not create namespace $ns"
        ip -n $ns link set lo up
        if ! ip link show $host_end >/dev/null 2>&1; then
            ip link add $host_end type veth peer name eth0 netns $ns || die "could not create veth $host_end"
        fi
        ip link set $host_end master $BRIDGE
        ip link set $host_end up
        ip -n $ns addr replace "$(address_of $z)/24" dev eth0
        ip -n $ns link set eth0 up
    done
    # A bounded check that every zone reaches the others and the host.
    for z in $ZONES; do
        for peer in $HOST_ADDRESS $(address_of a) $(address_of b) $(address_of c); do
            ip netns exec zone-$z python3 -c "$REACHES" "$peer" \
                || die "zone-$z cannot reach $peer (see: ip -n zone-$z addr)"
        done
    done
    say "zones up: zone-a $(address_of a), zone-b $(address_of b), zone-c $(address_of c), host $HOST_ADDRESS ($BRIDGE)"
}

stop_zone_processes() {
    local ns=$1 conf=$HOSTS_DIR/$1/supervisor/supervisord.conf
    if [ -f "$conf" ] && [ -x .venv/bin/supervisorctl ]; then
        # supervisord stops its programs in turn, each allowed 60 s
        # (stopwaitsecs): three zones of JVMs took 3 min. The servers recover
        # from a hard stop (WAL, commit log, Mnesia), so 30 s, then signals.
        timeout 30 ip netns exec "$ns" .venv/bin/supervisorctl -c "$conf" shutdown >/dev/null 2>&1 || true
    fi
    # What is left in the namespace was started in it by us: end it, bounded.
    for _ in $(seq 1 20); do
        local pids
        pids=$(ip netns pids "$ns" 2>/dev/null)
        [ -z "$pids" ] && return 0
        kill $pids 2>/dev/null
        sleep 1
    done
    pids=$(ip netns pids "$ns" 2>/dev/null)
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null
    return 0
}

down() {
    # The three-zones inventory's edge host (HAProxy for clients) runs on this
    # machine, beside the zones: its supervisord goes with them.
    local edge=$HOSTS_DIR/edge-lb/supervisor/supervisord.conf
    if [ -f "$edge" ] && [ -x .venv/bin/supervisorctl ]; then
        .venv/bin/supervisorctl -c "$edge" shutdown >/dev/null 2>&1 || true
    fi
    # The zones stop side by side.
    for z in $ZONES; do
        [ -e /run/netns/zone-$z ] && stop_zone_processes zone-$z &
    done
    wait
    for z in $ZONES; do
        local ns=zone-$z
        [ -e /run/netns/$ns ] && ip netns del $ns
        ip link del exz-$z >/dev/null 2>&1 || true
    done
    ip link del $BRIDGE >/dev/null 2>&1 || true
    say "zones down"
}

status() {
    local rc=0
    for z in $ZONES; do
        local ns=zone-$z state
        if [ ! -e /run/netns/$ns ]; then echo "$ns  absent"; rc=1; continue; fi
        state=$(ip -br link show exz-$z 2>/dev/null | awk '{print $2}')
        local cut=no
        ip netns exec $ns iptables -C INPUT -i eth0 -j DROP 2>/dev/null && cut=yes
        echo "$ns  $(address_of $z)  link ${state:-missing}  cut $cut  processes $(ip netns pids $ns | wc -l)"
    done
    return $rc
}

cut() {
    local ns z
    z=$(zone_letter "$1") || exit 2
    ns=zone-$z
    [ -e /run/netns/$ns ] || die "$ns does not exist: scripts/zones.sh up"
    # Rules inside the zone's own namespace: the machine's tables are untouched.
    ip netns exec $ns iptables -C INPUT -i eth0 -j DROP 2>/dev/null || ip netns exec $ns iptables -I INPUT -i eth0 -j DROP
    ip netns exec $ns iptables -C OUTPUT -o eth0 -j DROP 2>/dev/null || ip netns exec $ns iptables -I OUTPUT -o eth0 -j DROP
    say "$ns cut off (all its traffic dropped)"
}

heal() {
    local ns z
    z=$(zone_letter "$1") || exit 2
    ns=zone-$z
    [ -e /run/netns/$ns ] || die "$ns does not exist: scripts/zones.sh up"
    while ip netns exec $ns iptables -D INPUT -i eth0 -j DROP 2>/dev/null; do :; done
    while ip netns exec $ns iptables -D OUTPUT -o eth0 -j DROP 2>/dev/null; do :; done
    say "$ns healed"
}

link() {
    local z
    z=$(zone_letter "$1") || exit 2
    ip link show exz-$z >/dev/null 2>&1 || die "zone-$z has no link: scripts/zones.sh up"
    ip link set exz-$z "$2"
    say "zone-$z link $2"
}

install() {
    local missing=()
    for pkg in $ZONE_PACKAGES; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && { say "packages present"; return 0; }
    say "installing Debian packages: ${missing[*]}"
    local policy=/usr/sbin/policy-rc.d added=0 log
    # Their system services (etcd, haproxy, patroni) are not ours: apt must not start them.
    if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' > $policy && chmod +x $policy && added=1; fi
    log=$(mktemp)
    env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >"$log" 2>&1 \
        || { env DEBIAN_FRONTEND=noninteractive apt-get update -q >>"$log" 2>&1 \
             && env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$log" 2>&1; }
    local rc=$?
    [ $added = 1 ] && rm -f $policy
    [ $rc = 0 ] || die "apt-get install ${missing[*]} failed (see $log)"
    rm -f "$log"
}

deploy() {
    install && up || exit 2
    local started=$SECONDS
    # task_times (ansible/plugins/callback) lists where the deploy's time went.
    (cd ansible && ANSIBLE_CALLBACKS_ENABLED=task_times ../.venv/bin/ansible-playbook -i inventories/three-zones/hosts.yml site.yml \
        -e ansible_python_interpreter="$PWD/../.venv/bin/python") || die "the three-zones play failed"
    say "three zones deployed in $((SECONDS - started)) s"
}

drill() {
    local rc=0 started=$SECONDS
    # Zones that exist already belong to another deployment (one being used,
    # or one left running): the drill neither reuses nor removes them.
    local z
    for z in $ZONES; do
        [ -e /run/netns/zone-$z ] \
            && die "zone-$z exists already: another three-zones deployment is up (scripts/zones.sh status); take it down first (scripts/zones.sh down from its checkout)"
    done
    ip link show $BRIDGE >/dev/null 2>&1 \
        && die "the zones' bridge $BRIDGE exists already: another three-zones deployment is up; take it down first (scripts/zones.sh down)"
    # The drill's tests set up through the local stack's PostgreSQL
    # (tests/integration/conftest.py): without it they stop at collection,
    # after a deploy of 13 minutes and more (session 27, by hand).
    PYTHONPATH=$PWD .venv/bin/python -c '
import socket
from services.common.config import load_settings
s = load_settings()
socket.create_connection((s.server_host("postgres"), s.int("EXCHANGE_POSTGRES_PORT")), timeout=5).close()
' 2>/dev/null || die "the local stack's PostgreSQL does not answer: the drill's tests need the local stack (make up), as after make test"
    # From nothing: a stopped deployment's data (a drill stopped half-way left
    # an old leader that could not rejoin) would be deployed on again.
    if [ -d "$HOSTS_DIR" ]; then
        say "removing the last deployment's data ($HOSTS_DIR): the drill deploys from nothing"
        rm -rf "$HOSTS_DIR"
    fi
    # The zones come down whatever happens: three Cassandras must not idle on.
    trap down EXIT
    deploy
    EXCHANGE_ZONES_DEPLOYED=1 PYTHONPATH=$PWD timeout 2400 .venv/bin/python -m pytest -q -p no:cacheprovider \
        "tests/integration/zones/test_zone_loss_trading.py::test_losing_the_postgresql_leaders_zone_keeps_trading" \
        "tests/integration/zones/test_zone_loss_trading.py::test_a_process_killed_hard_is_restarted_and_clients_only_retry[service-matching]" \
        -s || rc=$?
    say "zone drill: deploy and drill took $((SECONDS - started)) s (pytest exit $rc)"
    return $rc
}

case ${1:-} in
    up) up ;;
    down) down ;;
    status) status ;;
    cut) [ $# -eq 2 ] || die "usage: $0 cut ZONE"; cut "$2" ;;
    heal) [ $# -eq 2 ] || die "usage: $0 heal ZONE"; heal "$2" ;;
    unplug) [ $# -eq 2 ] || die "usage: $0 unplug ZONE"; link "$2" down ;;
    plug) [ $# -eq 2 ] || die "usage: $0 plug ZONE"; link "$2" up ;;
    install) install ;;
    deploy) deploy ;;
    drill) drill ;;
    *) die "usage: $0 up|down|status|cut ZONE|heal ZONE|unplug ZONE|plug ZONE|install|deploy|drill" ;;
esac
