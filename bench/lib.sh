# What the benchmark scripts share (sourced, never run): strict mode at the checkout's
# root, the vbr binary (the release build of this checkout, rebuilt if stale, unless VBR
# names one), namespaces that are removed at exit with everything running in them, and
# a daemon started in one of them. A script sets P (its name prefix) before sourcing,
# and may define `cleanup_more` for what else it must stop or remove at exit.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${VBR:-}" ]; then cargo build --release -p vbr; VBR=$PWD/target/release/vbr; fi

NSS=()
STATE=$(mktemp -d)
DAEMON=""

# need TOOL...: stops with a message if one is missing.
need() { for t in "$@"; do command -v "$t" >/dev/null || { echo "need $t" >&2; exit 1; }; done; }

PIDS=()  # pid files of daemons to stop at exit
MORE=()  # pids of further vbridge daemons

cleanup() {
  if declare -F cleanup_more >/dev/null; then cleanup_more || true; fi
  for p in "${MORE[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
  for f in "${PIDS[@]}"; do [ -f "$f" ] && kill "$(cat "$f")" 2>/dev/null || true; done
  [ -n "$DAEMON" ] && kill "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
  for n in "${NSS[@]}"; do ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true; ip netns del "$n" 2>/dev/null || true; done
  for d in "${ETCD_DATA[@]}"; do rm -rf "$d"; done
  rm -rf "$STATE"
}
trap cleanup EXIT

# mkns NAME: a namespace with its loopback up, removed at exit.
mkns() { ip netns add "$1"; ip -n "$1" link set lo up; NSS+=("$1"); }

# vbr ARGS: the CLI against this script's daemon.
vbr() { "$VBR" --socket "$STATE/vbr.sock" "$@"; }

# start_daemon NS [WRAPPER...]: the daemon inside namespace NS (log in $STATE), waited for.
start_daemon() {
  local ns=$1; shift
  ip netns exec "$ns" "$@" "$VBR" daemon --socket "$STATE/vbr.sock" --state-dir "$STATE/state" 2>"$STATE/daemon.log" &
  DAEMON=$!
  for _ in $(seq 50); do [ -S "$STATE/vbr.sock" ] && vbr show >/dev/null 2>&1 && return; sleep 0.1; done
  echo "the daemon did not start:" >&2; cat "$STATE/daemon.log" >&2; exit 1
}

# with_ovs: whether Open vSwitch runs as a peer (installed, and PEERS is not 0).
with_ovs() { [ "${PEERS:-1}" = 1 ] && command -v ovs-vswitchd >/dev/null && [ -f /usr/share/openvswitch/vswitch.ovsschema ]; }

# ovs_start NS: Open vSwitch's database and ovs-vswitchd in namespace NS (stopped at
# exit); `ovs` runs ovs-vsctl against them.
ovs_start() {
  local o=$STATE/ovs; mkdir -p "$o"
  export OVS_RUNDIR=$o OVS_LOGDIR=$o OVS_DBDIR=$o
  ovsdb-tool create "$o/conf.db" /usr/share/openvswitch/vswitch.ovsschema
  ip netns exec "$1" ovsdb-server "$o/conf.db" --remote=punix:"$o/db.sock" --pidfile="$o/db.pid" --detach --log-file="$o/db.log" 2>/dev/null
  PIDS+=("$o/db.pid")
  ovs --no-wait init >/dev/null
  ip netns exec "$1" ovs-vswitchd unix:"$o/db.sock" --pidfile="$o/vsd.pid" --detach --log-file="$o/vsd.log" 2>/dev/null
  PIDS+=("$o/vsd.pid")
}
ovs() { ovs-vsctl --db=unix:"$STATE/ovs/db.sock" "$@"; }

# start_more NAME NS [VAR=VALUE...]: one more daemon, in namespace NS with that
# environment (and the arguments in MORE_ARGS), its socket $STATE/NAME.sock (log in
# $STATE), waited for; stopped at exit.
MORE_ARGS=()
start_more() {
  local name=$1 ns=$2; shift 2
  ip netns exec "$ns" env "$@" "$VBR" daemon --socket "$STATE/$name.sock" --state-dir "$STATE/$name" "${MORE_ARGS[@]}" 2>"$STATE/$name.log" &
  MORE+=($!)
  for _ in $(seq 50); do "$VBR" --socket "$STATE/$name.sock" show >/dev/null 2>&1 && return; sleep 0.1; done
  echo "daemon $name did not start:" >&2; cat "$STATE/$name.log" >&2; exit 1
}

# start_etcd NS IP: a one-member etcd (Debian's etcd-server) in namespace NS serving
# clients on IP:2379, its data on tmpfs; waited for (the script stops if it does not
# answer in 10 s); stopped and removed at exit.
start_etcd() {
  local ns=$1 ip=$2 data
  data=$(mktemp -d -p /dev/shm)
  ETCD_DATA+=("$data")
  ip netns exec "$ns" etcd --data-dir "$data/d" --listen-client-urls "http://$ip:2379" \
    --advertise-client-urls "http://$ip:2379" --listen-peer-urls http://127.0.0.1:2380 \
    --initial-advertise-peer-urls http://127.0.0.1:2380 \
    --initial-cluster default=http://127.0.0.1:2380 2>"$STATE/etcd.log" &
  MORE+=($!)
  for _ in $(seq 100); do
    ip netns exec "$ns" env ETCDCTL_API=3 etcdctl --endpoints="http://$ip:2379" endpoint health >/dev/null 2>&1 && return
    sleep 0.1
  done
  echo "etcd did not start:" >&2; cat "$STATE/etcd.log" >&2; exit 1
}
ETCD_DATA=()

# iperf_tcp A B IP: iperf3 TCP from namespace A to a server in B at IP for $SECS s; Gbit/s.
iperf_tcp() {
  ip netns exec "$2" iperf3 -s -1 -D -B "$3" >/dev/null; sleep 0.3
  ip netns exec "$1" iperf3 -c "$3" -t "$SECS" -J | python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
}

# median: the median of the numbers on standard input (separated by spaces or lines).
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# ratio A B: A/B as "1.23x" (0.00x when B is 0).
ratio() { python3 -c "print('%.2fx' % ($1/$2 if $2 else 0))"; }
