#!/usr/bin/env bash
# VXLAN between two "hosts", side by side in one run: a namespace on each host talks
# through a VXLAN tunnel (VNI 42) over an underlay veth pair, once through vbridge (a
# daemon per host, `vbr vxlan add`, namespaces by `vbr connect`) and once through the
# kernel's own vxlan netdev on a Linux bridge set up the same way. The namespaces' MTU is
# 1450 in both (the underlay's 1500 minus VXLAN's 50). iperf3 TCP throughput and UDP
# 64-byte frames (18-byte payload) delivered to the receiver's eth0, medians of ROUNDS.
# A third pair of hosts runs vbridge in cluster mode (etcd on the underlay, `vbr cluster
# apply`, addresses allocated by the cluster, remote MACs installed, not learned);
# CLUSTER=0 (or no etcd installed) leaves it out.
# Usage (root): bench/vxlan.sh [seconds per run, default 10] [rounds, default 3]
P=vbx$$
source "$(dirname "$0")/lib.sh"
SECS=${1:-10}
ROUNDS=${2:-3}
need iperf3 ip python3

# underlay NET H1 H2: two host namespaces joined by a veth pair, 10.NET.0.1 and .2.
underlay() {
  mkns "$2"; mkns "$3"
  ip -n "$2" link add u type veth peer name u netns "$3"
  ip -n "$2" addr add "10.$1.0.1/24" dev u; ip -n "$2" link set u up
  ip -n "$3" addr add "10.$1.0.2/24" dev u; ip -n "$3" link set u up
}

# --- the kernel: vxlan + Linux bridge on each host ---
underlay 211 ${P}k1 ${P}k2
for i in 1 2; do
  h=${P}k$i; local_ip=10.211.0.$i; remote=10.211.0.$((3 - i))
  ip -n "$h" link add kbr type bridge; ip -n "$h" link set kbr up
  ip -n "$h" link add vx0 type vxlan id 42 local "$local_ip" dstport 4789
  bridge -n "$h" fdb append 00:00:00:00:00:00 dev vx0 dst "$remote"
  ip -n "$h" link set vx0 master kbr; ip -n "$h" link set vx0 up
  mkns ${P}kn$i
  ip -n "$h" link add p type veth peer name eth0 netns ${P}kn$i
  ip -n "$h" link set p master kbr; ip -n "$h" link set p up
  ip -n ${P}kn$i link set eth0 mtu 1450
  ip -n ${P}kn$i addr add 10.62.0.$i/24 dev eth0; ip -n ${P}kn$i link set eth0 up
done

# --- vbridge: a daemon per host ---
underlay 212 ${P}v1 ${P}v2
start_daemon ${P}v1
start_more v2 ${P}v2
for i in 1 2; do
  if [ "$i" = 1 ]; then sock=$STATE/vbr.sock; else sock=$STATE/v2.sock; fi
  v() { "$VBR" --socket "$sock" "$@"; }
  v addbr br0
  v vxlan add vx0 --bridge br0 --vni 42 --local 10.212.0.$i --remote 10.212.0.$((3 - i))
  mkns ${P}vn$i
  v connect ${P}vn$i br0 --ip 10.63.0.$i/24 >/dev/null
  ip -n ${P}vn$i link set eth0 mtu 1450
done
MODES=(kernel vbridge)
# --- vbridge in cluster mode: etcd on host c1's underlay address, a daemon per host ---
if [ "${CLUSTER:-1}" = 1 ] && command -v etcd >/dev/null && command -v etcdctl >/dev/null; then
  MODES+=(cluster)
  underlay 213 ${P}c1 ${P}c2
  start_etcd ${P}c1 10.213.0.1
  for i in 1 2; do
    MORE_ARGS=(--cluster http://10.213.0.1:2379 --node n$i --underlay 10.213.0.$i)
    start_more c$i ${P}c$i
  done
  MORE_ARGS=()
  printf '[[network]]\nname = "ov"\nvni = 42\nsubnet = "10.64.0.0/24"\n' >"$STATE/ov.toml"
  "$VBR" --socket "$STATE/c1.sock" cluster apply "$STATE/ov.toml" >/dev/null
  healthy() { "$VBR" --socket "$STATE/$1.sock" --json cluster status | python3 -c 'import json,sys; s=json.load(sys.stdin); sys.exit(0 if s["networks"] and all(n["health"]=="ok" for n in s["networks"]) else 1)'; }
  ok=0
  for _ in $(seq 100); do healthy c1 && healthy c2 && { ok=1; break; }; sleep 0.1; done
  [ "$ok" = 1 ] || { echo "the cluster did not come up:" >&2; "$VBR" --socket "$STATE/c1.sock" cluster status >&2; exit 1; }
  for i in 1 2; do
    mkns ${P}cn$i
    CIP[$i]=$("$VBR" --socket "$STATE/c$i.sock" --json connect ${P}cn$i ov | python3 -c 'import json,sys; print(json.load(sys.stdin)["addresses"][0].split("/")[0])')
  done
fi
sleep 1.5

pair() { case $1 in kernel) echo "${P}kn1 ${P}kn2 10.62.0.2";; vbridge) echo "${P}vn1 ${P}vn2 10.63.0.2";; cluster) echo "${P}cn1 ${P}cn2 ${CIP[2]}";; esac; }
tcp() {
  read -r a b ip <<<"$(pair "$1")"
  ip netns exec "$a" ping -c 3 -i 0.2 -q "$ip" >/dev/null
  iperf_tcp "$a" "$b" "$ip"
}
udp() {
  read -r a b ip <<<"$(pair "$1")"
  ip netns exec "$b" iperf3 -s -1 -D -B "$ip" >/dev/null; sleep 0.3
  local rx0 rx1 out
  rx0=$(ip netns exec "$b" cat /sys/class/net/eth0/statistics/rx_packets)
  out=$(ip netns exec "$a" iperf3 -c "$ip" -u -b 0 -l 18 -t "$SECS" -J)
  rx1=$(ip netns exec "$b" cat /sys/class/net/eth0/statistics/rx_packets)
  python3 -c 'import json,sys; e=json.loads(sys.argv[3])["end"]["sum"]; print("%.0f" % ((int(sys.argv[2])-int(sys.argv[1]))/e["seconds"]))' "$rx0" "$rx1" "$out"
}
declare -A T U
for r in $(seq "$ROUNDS"); do
  line="round $r:"
  for m in "${MODES[@]}"; do
    T[$m]+=" $(tcp $m)"; U[$m]+=" $(udp $m)"
    line+=" $m ${T[$m]##* } Gbit/s ${U[$m]##* } f/s;"
  done
  echo "$line" >&2
done
tk=$(median <<<"${T[kernel]}"); tv=$(median <<<"${T[vbridge]}")
uk=$(median <<<"${U[kernel]}"); uv=$(median <<<"${U[vbridge]}")
printf '\n%-36s %14s %14s %8s\n' "over VXLAN (VNI 42), two hosts" "kernel vxlan+br" "vbridge" "ratio"
printf '%-36s %14s %14s %8s\n' "TCP Gbit/s (iperf3)" "$tk" "$tv" "$(ratio "$tv" "$tk")"
printf '%-36s %14s %14s %8s\n' "UDP 64-byte frames/s delivered" "$uk" "$uv" "$(ratio "$uv" "$uk")"
if [[ " ${MODES[*]} " == *" cluster "* ]]; then
  tc=$(median <<<"${T[cluster]}"); uc=$(median <<<"${U[cluster]}")
  printf '%-36s %14s %14s %8s\n' "TCP Gbit/s, cluster mode (etcd)" "$tk" "$tc" "$(ratio "$tc" "$tk")"
  printf '%-36s %14s %14s %8s\n' "UDP 64-byte f/s, cluster mode" "$uk" "$uc" "$(ratio "$uc" "$uk")"
fi
