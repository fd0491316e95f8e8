#!/usr/bin/env bash
# testbed.sh — a simulated fleet on one Linux box: N+1 hosts as network namespaces on one bridge.
#
#   scripts/testbed.sh up N [--rate 100mbit] [--sites S [--inter-rate RATE]]
#                                              create (or re-shape) hosts 0..N; host 0 is the origin
#   scripts/testbed.sh down                    remove every namespace, veth and the bridge (kills what runs inside)
#   scripts/testbed.sh status                  list hosts, addresses, qdiscs and byte counters
#   scripts/testbed.sh exec HOST CMD...        run CMD inside HOST (0, h0, shoal-h0, origin, 3, h3, ...)
#   scripts/testbed.sh addr HOST               print HOST's address
#   scripts/testbed.sh hosts                   print the host namespaces, one per line
#   scripts/testbed.sh site HOST               print HOST's site (1..S)
#   scripts/testbed.sh link                    print the inter-site counters: one line per site K,
#                                              "K INTO OUT" (bytes into and out of site K via the router)
#
# Layout (PREFIX defaults to "shoal", override with SHOAL_TESTBED_PREFIX so that two testbeds — a test
# and a benchmark — can coexist; it must be at most 8 characters):
#   namespace PREFIX-hI, interface eth0 inside it with address 10.77.(I/250).(I%250+1)/16, lo up;
#   its veth peer PREFIX-vI sits in the root namespace, enslaved to the bridge PREFIX-br.
#   The bridge and the root namespace get NO address and no namespace gets a default route: hosts
#   can reach each other and nothing else (traffic to any other address fails with "unreachable").
#   IPv6 is disabled inside the namespaces (no link-local chatter).
# Shaping, both directions, token bucket (tbf) at RATE with a 256 KiB burst:
#   egress  = tbf on eth0 inside the namespace (what the host sends),
#   ingress = tbf on the root-side veth PREFIX-vI (its egress is what the host receives).
# Sites (--sites S, default 1: the single bridge above, unchanged): hosts 1..N are split into S
# contiguous groups (host I is in site 1 + (I-1)*S/N; the origin, host 0, is in site 1); site K has
# its own bridge (PREFIX-br for site 1, PREFIX-brK for the others) and subnet 10.(76+K).0.0/16
# (site 1 stays 10.77.0.0/16; host I's address is 10.(76+K).(I/250).(I%250+1)). The sites are
# joined by one router namespace PREFIX-rt with an interface sK (address 10.(76+K).255.254) on each
# site's bridge (root-side veth PREFIX-rK) and IP forwarding on; every host routes the other sites'
# subnets through it. The inter-site link is shaped on the router: tbf at the inter-site rate
# (--inter-rate, default RATE) on the egress of every sK, so for two sites each direction has its
# own 100 Mbit/s like one full-duplex link. sK's tx_bytes is what entered site K from other sites,
# its rx_bytes what left site K (Ethernet frames, as every counter here).
# Invariants: idempotent (`up` twice is fine and re-applies the rate; `up` with a smaller N removes the
# extra hosts); `down` leaves nothing behind; needs root. Exit: 0 ok, 1 failure, 2 usage.
set -euo pipefail

PREFIX="${SHOAL_TESTBED_PREFIX:-shoal}"
BR="${PREFIX}-br"
RT="${PREFIX}-rt"
SUBNET_BITS=16
BURST="${SHOAL_TESTBED_BURST:-256kb}"
LATENCY="${SHOAL_TESTBED_LATENCY:-50ms}"

die() { echo "testbed: error: $*" >&2; exit 1; }
usage() { sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }

[ "${#PREFIX}" -le 8 ] || die "SHOAL_TESTBED_PREFIX must be at most 8 characters (interface names are limited to 15)"
[[ "$PREFIX" =~ ^[a-z][a-z0-9]*$ ]] || die "SHOAL_TESTBED_PREFIX must be lowercase letters and digits"

need_root() { [ "$(id -u)" = 0 ] || die "needs root (network namespaces, bridge, tc)"; }

ns() { echo "${PREFIX}-h$1"; }
veth() { echo "${PREFIX}-v$1"; }
# Layout of the sites, for addresses: SITES and COUNT (set by `up`; other commands read them back
# from the state file written by `up`, default one site).
SITES=1
COUNT=0
state_file() { if [ -d /run ] && [ -w /run ]; then echo "/run/${PREFIX}-testbed.sites"; else echo "/tmp/${PREFIX}-testbed.sites"; fi; }
load_state() {
    local f; f="$(state_file)"
    if [ -r "$f" ]; then read -r SITES COUNT < "$f" || true; fi
    [[ "$SITES" =~ ^[0-9]+$ ]] && [ "$SITES" -ge 1 ] || SITES=1
    [[ "$COUNT" =~ ^[0-9]+$ ]] || COUNT=0
}
site_of() { # host index -> site 1..SITES
    if [ "$1" -eq 0 ] || [ "$SITES" -le 1 ] || [ "$COUNT" -lt 1 ]; then echo 1; return; fi
    echo $(( 1 + ($1 - 1) * SITES / COUNT ))
}
bridge_of_site() { if [ "$1" -eq 1 ]; then echo "$BR"; else echo "${BR}$1"; fi; }
net_of_site() { echo "10.$(( 76 + $1 ))"; }
router_of_site() { echo "$(net_of_site "$1").255.254"; }
addr_of() { echo "$(net_of_site "$(site_of "$1")").$(( $1 / 250 )).$(( $1 % 250 + 1 ))"; }

# All host indices currently present, sorted numerically.
present() {
    ip netns list 2>/dev/null | awk '{print $1}' | sed -n "s/^${PREFIX}-h\([0-9][0-9]*\)\$/\1/p" | sort -n
}

# HOST argument → index: 3, h3, PREFIX-h3, origin.
host_index() {
    local h="$1"
    case "$h" in
        origin) echo 0 ;;
        "${PREFIX}"-h[0-9]*) echo "${h#"${PREFIX}"-h}" ;;
        h[0-9]*) echo "${h#h}" ;;
        [0-9]*) echo "$h" ;;
        *) die "unknown host '$h' (use 0..N, hN, ${PREFIX}-hN or origin)" ;;
    esac
}

# Serialise up/down so concurrent callers do not interleave half-built hosts.
lock() {
    local f="/run/lock/${PREFIX}-testbed.lock"
    [ -d /run/lock ] && [ -w /run/lock ] || f="/tmp/${PREFIX}-testbed.lock"
    exec 9>"$f"
    flock 9
}

shape() { # shape DEV-ARGS... (applied with `tc` possibly inside a namespace)
    local rate="$1"; shift
    "$@" tc qdisc replace dev "$DEV" root tbf rate "$rate" burst "$BURST" latency "$LATENCY"
}

host_up() {
    local i="$1" rate="$2" n v a site br cur k
    n="$(ns "$i")"; v="$(veth "$i")"; a="$(addr_of "$i")"; site="$(site_of "$i")"; br="$(bridge_of_site "$site")"
    ip netns list | awk '{print $1}' | grep -qx "$n" || ip netns add "$n"
    ip -n "$n" link set lo up
    ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 || true
    if ! ip link show "$v" >/dev/null 2>&1; then
        # A stale eth0 in the namespace (peer half of a deleted veth) cannot exist: deleting one end deletes both.
        ip link add "$v" type veth peer name eth0 netns "$n"
    fi
    ip link set "$v" master "$br"
    ip link set "$v" up
    # One address: a host that moved to another site (a new --sites) drops its old one.
    cur="$(ip -n "$n" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}')"
    [ -z "$cur" ] || [ "$cur" = "$a/$SUBNET_BITS" ] || ip -n "$n" addr flush dev eth0
    ip -n "$n" addr replace "$a/$SUBNET_BITS" dev eth0
    ip netns exec "$n" sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1 >/dev/null 2>&1 || true
    ip -n "$n" link set eth0 up
    DEV=eth0 shape "$rate" ip netns exec "$n"
    DEV="$v" shape "$rate"
    # The other sites, through the router (none with one site).
    ip -n "$n" -4 route flush proto static 2>/dev/null || true
    for ((k = 1; k <= SITES; k++)); do
        [ "$k" = "$site" ] && continue
        ip -n "$n" route replace "$(net_of_site "$k").0.0/$SUBNET_BITS" via "$(router_of_site "$site")" dev eth0 proto static
    done
}

# The router joining the sites: namespace RT with interface sK on site K's bridge.
router_up() {
    local inter="$1" k rv br
    ip netns list | awk '{print $1}' | grep -qx "$RT" || ip netns add "$RT"
    ip -n "$RT" link set lo up
    ip netns exec "$RT" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 >/dev/null 2>&1 || true
    ip netns exec "$RT" sysctl -qw net.ipv4.ip_forward=1 >/dev/null
    for ((k = 1; k <= SITES; k++)); do
        rv="${PREFIX}-r$k"; br="$(bridge_of_site "$k")"
        ip link show "$rv" >/dev/null 2>&1 || ip link add "$rv" type veth peer name "s$k" netns "$RT"
        ip link set "$rv" master "$br"
        ip link set "$rv" up
        ip -n "$RT" addr replace "$(router_of_site "$k")/$SUBNET_BITS" dev "s$k"
        ip -n "$RT" link set "s$k" up
        DEV="s$k" shape "$inter" ip netns exec "$RT"
    done
    # Sites beyond S (an earlier, larger --sites).
    for rv in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^${PREFIX}-r[0-9]+\$" || true); do
        [ "${rv#"${PREFIX}"-r}" -gt "$SITES" ] && ip link del "$rv" 2>/dev/null || true
    done
}

router_down() {
    local rv
    ip netns list | awk '{print $1}' | grep -qx "$RT" && ip netns del "$RT"
    for rv in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^${PREFIX}-r[0-9]+\$" || true); do
        ip link del "$rv" 2>/dev/null || true
    done
    return 0
}

bridges() { ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^${BR}[0-9]*\$" || true; }

host_down() {
    local i="$1" n v pids
    n="$(ns "$i")"; v="$(veth "$i")"
    if ip netns list | awk '{print $1}' | grep -qx "$n"; then
        # Only processes living in our own namespace: started by the testbed's users.
        pids="$(ip netns pids "$n" 2>/dev/null || true)"
        if [ -n "$pids" ]; then
            # shellcheck disable=SC2086
            kill -TERM $pids 2>/dev/null || true
            for _ in 1 2 3 4 5 6 7 8 9 10; do
                pids="$(ip netns pids "$n" 2>/dev/null || true)"
                [ -z "$pids" ] && break
                sleep 0.2
            done
            # shellcheck disable=SC2086
            [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
        fi
        ip netns del "$n"
    fi
    ip link del "$v" 2>/dev/null || true
}

cmd_up() {
    need_root
    local count="" rate="100mbit" sites=1 inter=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --rate) [ $# -ge 2 ] || usage; rate="$2"; shift 2 ;;
            --rate=*) rate="${1#--rate=}"; shift ;;
            --sites) [ $# -ge 2 ] || usage; sites="$2"; shift 2 ;;
            --sites=*) sites="${1#--sites=}"; shift ;;
            --inter-rate) [ $# -ge 2 ] || usage; inter="$2"; shift 2 ;;
            --inter-rate=*) inter="${1#--inter-rate=}"; shift ;;
            -h|--help) usage ;;
            *) [ -z "$count" ] || usage; count="$1"; shift ;;
        esac
    done
    [[ "$count" =~ ^[0-9]+$ ]] || usage
    [ "$count" -ge 1 ] && [ "$count" -le 1000 ] || die "N must be 1..1000"
    [[ "$rate" =~ ^[0-9]+(\.[0-9]+)?([kmg]?bit|[kmg]?bps)$ ]] || die "bad rate '$rate' (e.g. 100mbit, 20mbit, 1gbit)"
    inter="${inter:-$rate}"
    [[ "$inter" =~ ^[0-9]+(\.[0-9]+)?([kmg]?bit|[kmg]?bps)$ ]] || die "bad inter-site rate '$inter'"
    [[ "$sites" =~ ^[0-9]+$ ]] && [ "$sites" -ge 1 ] && [ "$sites" -le 100 ] || die "--sites must be 1..100"
    [ "$sites" -le "$count" ] || die "--sites $sites needs at least $sites hosts"
    lock
    SITES="$sites"; COUNT="$count"
    echo "$SITES $COUNT" > "$(state_file)"
    local k b
    for ((k = 1; k <= SITES; k++)); do
        b="$(bridge_of_site "$k")"
        if ! ip link show "$b" >/dev/null 2>&1; then
            ip link add "$b" type bridge stp_state 0 forward_delay 0
        fi
        # No address on the bridge: the root namespace stays out of the fleet's network.
        ip link set "$b" up
    done
    # Bridged frames must not be run through the host's iptables (br_netfilter), if that module is loaded.
    [ -w /proc/sys/net/bridge/bridge-nf-call-iptables ] && echo 0 > /proc/sys/net/bridge/bridge-nf-call-iptables || true
    local i
    for i in $(present); do
        [ "$i" -gt "$count" ] && host_down "$i"
    done
    if [ "$SITES" -gt 1 ]; then router_up "$inter"; else router_down; fi
    for ((i = 0; i <= count; i++)); do
        host_up "$i" "$rate"
    done
    # Bridges of sites beyond S (an earlier, larger --sites): their ports are gone by now.
    for b in $(bridges); do
        k="${b#"$BR"}"
        [ -n "$k" ] && [ "$k" -gt "$SITES" ] && ip link del "$b" 2>/dev/null || true
    done
    echo "testbed: $((count + 1)) hosts up (${PREFIX}-h0 = origin $(addr_of 0) .. ${PREFIX}-h$count $(addr_of "$count")), links shaped to $rate both ways" >&2
    if [ "$SITES" -gt 1 ]; then
        echo "testbed: $SITES sites joined by router $RT, inter-site link shaped to $inter both ways" >&2
    fi
}

cmd_down() {
    need_root
    lock
    local i
    for i in $(present); do host_down "$i"; done
    router_down
    # Veths whose namespace vanished some other way.
    for v in $(ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | grep -E "^${PREFIX}-v[0-9]+\$" || true); do
        ip link del "$v" 2>/dev/null || true
    done
    for b in $(bridges); do ip link del "$b" 2>/dev/null || true; done
    rm -f "/run/lock/${PREFIX}-testbed.lock" "/tmp/${PREFIX}-testbed.lock" "$(state_file)" 2>/dev/null || true
    echo "testbed: down" >&2
}

cmd_status() {
    local hosts
    hosts="$(present)"
    if [ -z "$hosts" ]; then
        echo "testbed ${PREFIX}: down"
        ip link show "$BR" >/dev/null 2>&1 && echo "  (bridge $BR still exists: run down)"
        return 0
    fi
    echo "testbed ${PREFIX}: $(echo "$hosts" | wc -l) hosts on bridge $BR"
    local i n rate rx tx
    for i in $hosts; do
        n="$(ns "$i")"
        rate="$(ip netns exec "$n" tc qdisc show dev eth0 2>/dev/null | sed -n 's/.*rate \([^ ]*\).*/\1/p' | head -1)"
        rx="$(ip netns exec "$n" cat /sys/class/net/eth0/statistics/rx_bytes 2>/dev/null || echo ?)"
        tx="$(ip netns exec "$n" cat /sys/class/net/eth0/statistics/tx_bytes 2>/dev/null || echo ?)"
        printf '  %-12s %-14s egress %-8s ingress %-8s rx %s tx %s%s\n' "$n" "$(addr_of "$i")" "${rate:-none}" \
            "$(tc qdisc show dev "$(veth "$i")" 2>/dev/null | sed -n 's/.*rate \([^ ]*\).*/\1/p' | head -1)" \
            "$rx" "$tx" "$([ "$i" = 0 ] && echo '  (origin)')$([ "$SITES" -gt 1 ] && echo "  site $(site_of "$i")")"
    done
    if [ "$SITES" -gt 1 ]; then
        echo "  router $RT joins $SITES sites (inter-site link):"
        cmd_link | while read -r k into out; do
            printf '    site %-3s %-16s into %s out %s\n' "$k" "$(net_of_site "$k").0.0/$SUBNET_BITS" "$into" "$out"
        done
    fi
}

cmd_link() {
    [ "$SITES" -gt 1 ] || die "one site: no inter-site link (up N --sites 2)"
    local k
    for ((k = 1; k <= SITES; k++)); do
        echo "$k $(ip netns exec "$RT" cat "/sys/class/net/s$k/statistics/tx_bytes") $(ip netns exec "$RT" cat "/sys/class/net/s$k/statistics/rx_bytes")"
    done
}

cmd_exec() {
    need_root
    [ $# -ge 2 ] || usage
    local i
    i="$(host_index "$1")"; shift
    ip netns list | awk '{print $1}' | grep -qx "$(ns "$i")" || die "host $i is not up"
    exec ip netns exec "$(ns "$i")" "$@"
}

cmd_addr() {
    [ $# -eq 1 ] || usage
    addr_of "$(host_index "$1")"
}

[ $# -ge 1 ] || usage
sub="$1"; shift
[ "$sub" = up ] || load_state
case "$sub" in
    up) cmd_up "$@" ;;
    down) cmd_down ;;
    status) cmd_status ;;
    exec) cmd_exec "$@" ;;
    addr) cmd_addr "$@" ;;
    hosts) present | while read -r i; do ns "$i"; done ;;
    site) [ $# -eq 1 ] || usage; site_of "$(host_index "$1")" ;;
    link) need_root; cmd_link ;;
    -h|--help|help) usage ;;
    *) usage ;;
esac
