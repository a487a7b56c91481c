#!/usr/bin/env bash
# Builds and tears down an N-node test cluster of network namespaces on this
# machine, so that traffic between trellis nodes truly crosses a network
# interface.
#
#   scripts/cluster.sh up N        make nodes 1..N
#   scripts/cluster.sh status      list what exists; ping node1 -> node2 and
#                                  host -> node1 (exit 1 if a ping fails)
#   scripts/cluster.sh down        remove everything this prefix made
#   scripts/cluster.sh env         print the state (SUBNET=, N=, ...) as
#                                  shell assignments, for callers
#
# Layout, for prefix P (env TRELLIS_CLUSTER_PREFIX, default "trl"; 1-10 of
# [a-z0-9], starting with a letter; parallel runs use different prefixes):
#   namespace P-nK             node K, with lo up and eth0 = 10.213.X.(10+K)/24
#   bridge    P-br             in the root namespace, address 10.213.X.1/24
#   veth      P-hK <-> eth0    one per node, P-hK enslaved to the bridge
# X (the subnet) is picked free among the 10.213.X.0/24 in use on this
# machine, or given by TRELLIS_CLUSTER_SUBNET. The namespaces have no default
# route: a node reaches only the bridge subnet. IPv6 is off on these links.
# State: /run/trellis-cluster/P.env.
#
# Exit codes: 0 ok; 1 error (a partial `up` is undone); 2 usage;
# 3 network namespaces cannot be created here (not root / no CAP_NET_ADMIN):
# callers fall back to daemons on loopback and say so.
set -euo pipefail

readonly EXIT_NO_NETNS=3
readonly STATE_DIR=/run/trellis-cluster
PREFIX=${TRELLIS_CLUSTER_PREFIX:-trl}
STATE="$STATE_DIR/$PREFIX.env"
BRIDGE="$PREFIX-br"

say() { echo "cluster.sh[$PREFIX]: $*"; }
die() { echo "cluster.sh[$PREFIX]: $1" >&2; exit "${2:-1}"; }

usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//' >&2
  exit 2
}

[[ $PREFIX =~ ^[a-z][a-z0-9]{0,9}$ ]] ||
  die "bad prefix '$PREFIX': 1-10 of [a-z0-9], starting with a letter" 2

ns_name() { echo "$PREFIX-n$1"; }
node_addr() { echo "10.213.$1.$((10 + $2))"; }

# The namespaces of this prefix that exist now.
our_namespaces() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^$PREFIX-n[0-9]+$" || true
}

# The root-namespace links of this prefix that exist now.
our_links() {
  ip -o link show 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' |
    grep -E "^($PREFIX-br|$PREFIX-h[0-9]+)$" || true
}

# Third octets of the 10.213.X.0/24 subnets in use here (addresses on any
# interface, or reserved by another prefix's state file).
used_subnets() {
  {
    ip -4 -o addr show 2>/dev/null | grep -oE 'inet 10\.213\.[0-9]+\.' |
      cut -d. -f3
    cat "$STATE_DIR"/*.env 2>/dev/null | sed -n 's/^SUBNET=//p'
  } | sort -un
}

cmd_down() {
  local removed=()
  for ns in $(our_namespaces); do
    # Processes left in the namespace (started by our tests) would keep it
    # and its veth alive after `ip netns del`: end them by pid.
    local pids
    pids=$(ip netns pids "$ns" 2>/dev/null || true)
    if [ -n "$pids" ]; then
      kill -TERM $pids 2>/dev/null || true
      for _ in 1 2 3 4 5 6 7 8 9 10; do
        pids=$(ip netns pids "$ns" 2>/dev/null || true)
        [ -z "$pids" ] && break
        sleep 0.1
      done
      [ -n "$pids" ] && kill -KILL $pids 2>/dev/null || true
    fi
    ip netns del "$ns" && removed+=("netns $ns")
  done
  for link in $(our_links); do
    ip link del "$link" 2>/dev/null && removed+=("link $link")
  done
  rm -f "$STATE"
  if [ ${#removed[@]} -eq 0 ]; then
    say "down: nothing to remove"
  else
    say "down: removed ${removed[*]}"
  fi
}

cmd_up() {
  local n=$1
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] ||
    die "up: N must be 1..200, got '$n'" 2
  if [ -e "$STATE" ] || [ -n "$(our_namespaces)" ] || [ -n "$(our_links)" ]; then
    die "up: prefix '$PREFIX' is already in use; run '$0 down' first"
  fi
  # The capability probe: the first namespace. Nothing else is made before.
  local err
  if ! err=$(ip netns add "$(ns_name 1)" 2>&1); then
    die "up: cannot create network namespaces here ($err); need root or CAP_NET_ADMIN" "$EXIT_NO_NETNS"
  fi
  # From here on, any failure (set -e or die) undoes what was made.
  trap 'echo "cluster.sh[$PREFIX]: up failed; undoing" >&2; cmd_down >&2' EXIT

  mkdir -p "$STATE_DIR"
  local subnet
  {
    flock 9
    if [ -n "${TRELLIS_CLUSTER_SUBNET:-}" ]; then
      subnet=$TRELLIS_CLUSTER_SUBNET
      [[ $subnet =~ ^[0-9]+$ ]] && [ "$subnet" -ge 1 ] && [ "$subnet" -le 254 ] ||
        die "bad TRELLIS_CLUSTER_SUBNET '$subnet' (1..254)"
      if used_subnets | grep -qx "$subnet"; then
        die "up: 10.213.$subnet.0/24 is already in use"
      fi
    else
      subnet=$(comm -23 <(seq 1 254 | sort) <(used_subnets | sort) | sort -n | head -1)
      [ -n "$subnet" ] || die "up: no free 10.213.X.0/24 subnet"
    fi
    printf 'PREFIX=%s\nSUBNET=%s\nN=%s\nBRIDGE=%s\nHOST_ADDR=10.213.%s.1\n' \
      "$PREFIX" "$subnet" "$n" "$BRIDGE" "$subnet" >"$STATE"
  } 9>"$STATE_DIR/lock"

  ip link add "$BRIDGE" type bridge
  sysctl -qw "net.ipv6.conf.$BRIDGE.disable_ipv6=1"
  ip addr add "10.213.$subnet.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  local made=("bridge $BRIDGE 10.213.$subnet.1/24")
  for k in $(seq 1 "$n"); do
    local ns host
    ns=$(ns_name "$k")
    host="$PREFIX-h$k"
    [ "$k" -eq 1 ] || ip netns add "$ns"
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.default.disable_ipv6=1
    ip link add "$host" type veth peer name eth0 netns "$ns"
    sysctl -qw "net.ipv6.conf.$host.disable_ipv6=1"
    ip link set "$host" master "$BRIDGE"
    ip link set "$host" up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$(node_addr "$subnet" "$k")/24" dev eth0
    ip -n "$ns" link set eth0 up
    made+=("netns $ns eth0 $(node_addr "$subnet" "$k")/24 (veth $host)")
  done
  trap - EXIT
  say "up: made ${#made[@]} things:"
  printf '  %s\n' "${made[@]}"
}

# Loads the state file or fails.
load_state() {
  [ -r "$STATE" ] || die "no cluster with prefix '$PREFIX' is up ($STATE missing)"
  # shellcheck disable=SC1090
  . "$STATE"
}

ping_ok() {  # ping_ok LABEL [ip netns exec NS] -- ADDR
  local label=$1 addr=$2
  shift 2
  if "$@" ping -c 1 -W 2 -q "$addr" >/dev/null 2>&1; then
    say "status: ping $label ok"
  else
    say "status: ping $label FAILED"
    return 1
  fi
}

cmd_status() {
  load_state
  say "status: subnet 10.213.$SUBNET.0/24, $N node(s), bridge $BRIDGE 10.213.$SUBNET.1"
  local missing=0
  for k in $(seq 1 "$N"); do
    local ns
    ns=$(ns_name "$k")
    if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
      say "status: $ns $(ip -n "$ns" -4 -o addr show dev eth0 | awk '{print $4}')"
    else
      say "status: $ns MISSING"
      missing=1
    fi
  done
  [ "$missing" -eq 0 ] || return 1
  local ok=0
  ping_ok "host -> node1 ($(node_addr "$SUBNET" 1))" "$(node_addr "$SUBNET" 1)" || ok=1
  if [ "$N" -ge 2 ]; then
    ping_ok "node1 -> node2 ($(node_addr "$SUBNET" 2))" "$(node_addr "$SUBNET" 2)" \
      ip netns exec "$(ns_name 1)" || ok=1
  fi
  return $ok
}

cmd_env() {
  load_state
  cat "$STATE"
}

[ $# -ge 1 ] || usage
case "$1" in
  up) [ $# -eq 2 ] || usage; cmd_up "$2" ;;
  down) cmd_down ;;
  status) cmd_status ;;
  env) cmd_env ;;
  *) usage ;;
esac
