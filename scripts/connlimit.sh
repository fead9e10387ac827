#!/usr/bin/env bash
# A per-address connection limit in front of the server's port, which grpcio cannot enforce
# itself (it bounds only the total, max_connections): the kernel resets a new TCP connection
# from an address (an IPv6 caller: its /64) that already has PER_ADDRESS open to PORT, so one
# caller cannot fill max_connections with idle connections. Needs root and nftables; replaces
# its own table (inet hashmatch_connlimit) if loaded before, and touches no other rule.
#   scripts/connlimit.sh PORT [PER_ADDRESS]            load it (default 20 per address)
#   scripts/connlimit.sh PORT [PER_ADDRESS] --print    print the ruleset only
#   scripts/connlimit.sh --remove                      unload it
set -euo pipefail
table="inet hashmatch_connlimit"
usage="usage: scripts/connlimit.sh PORT [PER_ADDRESS] [--print] | --remove"
if [ "${1:-}" = "--remove" ]; then
  nft list table $table >/dev/null 2>&1 && nft delete table $table
  exit 0
fi
port=${1:?$usage}
per=${2:-20}
[[ $port =~ ^[0-9]+$ && $port -ge 1 && $port -le 65535 ]] || { echo "PORT must be 1..65535, got $port" >&2; exit 2; }
[[ $per =~ ^[0-9]+$ && $per -ge 1 ]] || { echo "PER_ADDRESS must be a whole number >= 1, got $per" >&2; exit 2; }
ruleset="table $table {
  set per_address4 { type ipv4_addr; flags dynamic; }
  set per_address6 { type ipv6_addr; flags dynamic; }
  chain input {
    type filter hook input priority filter; policy accept;
    tcp dport $port ct state new add @per_address4 { ip saddr ct count over $per } reject with tcp reset
    tcp dport $port ct state new add @per_address6 { ip6 saddr and ffff:ffff:ffff:ffff:: ct count over $per } reject with tcp reset
  }
}"
if [ "${3:-}" = "--print" ]; then
  echo "$ruleset"
  exit 0
fi
command -v nft >/dev/null 2>&1 || { echo "needs nftables: apt-get install nftables" >&2; exit 2; }
nft list table $table >/dev/null 2>&1 && nft delete table $table
echo "$ruleset" | nft -f -
echo "hashmatch_connlimit: at most $per open connections per address (IPv6: per /64) to TCP port $port"
