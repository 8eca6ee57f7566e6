#!/usr/bin/env bash
# tools/netns.sh: "machines" on one host, for tests and demos: network
# namespaces joined by veth pairs to a bridge in a namespace of their own.
# Addresses exist only inside these namespaces (10.250.77.0/24); nothing
# touches the host's network. Needs root and iproute2.
#
#   netns.sh up PREFIX NODE...    namespaces PREFIX-NODE with 10.250.77.1, .2, ...
#                                 in the order given (prints "NODE ADDRESS")
#   netns.sh down PREFIX          removes every namespace PREFIX-*
#   netns.sh cut PREFIX NODE      takes NODE's link down (unplugs its cable)
#   netns.sh mend PREFIX NODE     puts it back up
#   netns.sh exec PREFIX NODE CMD...   runs CMD on NODE
set -euo pipefail

net=10.250.77
cmd=${1:?usage: netns.sh up|down|cut|mend|exec PREFIX ...}
prefix=${2:?usage: netns.sh $cmd PREFIX ...}
shift 2
[ "${#prefix}" -le 8 ] || { echo "netns.sh: PREFIX '$prefix' longer than 8 characters (interface names have 15)" >&2; exit 2; }

# The veth end inside NODE's namespace is "PREFIX-NODE" cut to 15 characters.
dev() { printf '%.15s' "$prefix$1"; }

case "$cmd" in
up)
  [ "$#" -ge 1 ] || { echo "netns.sh up: name at least one node" >&2; exit 2; }
  ip netns add "$prefix-br"
  ip -n "$prefix-br" link add br0 type bridge
  ip -n "$prefix-br" link set br0 up
  i=1
  for node in "$@"; do
    ns="$prefix-$node"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip link add "$(dev "$node")" netns "$ns" type veth peer name "b$i" netns "$prefix-br"
    ip -n "$prefix-br" link set "b$i" master br0
    ip -n "$prefix-br" link set "b$i" up
    ip -n "$ns" addr add "$net.$i/24" dev "$(dev "$node")"
    ip -n "$ns" link set "$(dev "$node")" up
    echo "$node $net.$i"
    i=$((i + 1))
  done
  ;;
down)
  for ns in $(ip netns list | awk '{print $1}' | grep "^$prefix-" || true); do
    ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$ns"
  done
  ;;
cut)  ip -n "$prefix-${1:?node}" link set "$(dev "$1")" down ;;
mend) ip -n "$prefix-${1:?node}" link set "$(dev "$1")" up ;;
exec)
  node=${1:?node}; shift
  exec ip netns exec "$prefix-$node" "$@"
  ;;
*) echo "netns.sh: unknown command '$cmd'" >&2; exit 2 ;;
esac
