#!/bin/bash
# bench/egress/instructions.sh: user-space instructions per proxied request of the clrk egress,
# counted by callgrind. Unlike CPU time on a shared VM (runs of the same binary scatter ±20%),
# the count repeats within ~0.3%, so it shows small changes to the per-request path.
#
#   bench/egress/instructions.sh [EGRESS_BENCH] [REQUESTS]
#
# EGRESS_BENCH defaults to build/release/bench/egress/egress_bench, REQUESTS to 1000. Needs
# valgrind and curl (apt-get install valgrind curl). Runs the bench's upstream role and its clrk
# role (MITM, credential injection, telemetry with a disk spool: the peak phase's proxy, one event
# loop) under callgrind; curl sends the requests one after another on one keep-alive HTTP/1.1
# connection through the explicit listener. Kernel work (system calls, loopback TCP) is not
# counted. Prints the total and the per-request figure; the callgrind file is kept for
# callgrind_annotate. Everything binds 127.0.0.1; the processes it starts are stopped by PID.
set -euo pipefail

bench=${1:-build/release/bench/egress/egress_bench}
requests=${2:-1000}
for tool in valgrind callgrind_control curl; do
  command -v "$tool" >/dev/null || { echo "instructions.sh: $tool is missing" >&2; exit 2; }
done
[ -x "$bench" ] || { echo "instructions.sh: $bench is not built" >&2; exit 2; }
bench=$(realpath "$bench")

work=$(mktemp -d /tmp/clrk-instructions.XXXXXX)
pids=()
cleanup() {
  exec 7>&- 8>&- 2>/dev/null || true
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  # The bench's own temp dir (certificates) is removed; the callgrind file stays.
  [ -n "${certs:-}" ] && rm -rf "$certs"
}
trap cleanup EXIT

# Certificates: a short bench run with --keep leaves its upstream CA, upstream leaf and clrk dir.
certs=$("$bench" --duration 0.1 --skip-squid --skip-mitmproxy --idle 0 --bulk-mib 0 --keep 2>&1 |
  sed -n 's/.*temp dir \([^,]*\),.*/\1/p')
[ -f "$certs/upstream.pem" ] || { echo "instructions.sh: the bench left no certificates" >&2; exit 1; }
rm -rf "$certs/clrk/spool"

# The roles read commands on stdin and stop at its end: each gets a FIFO held open here.
mkfifo "$work/upstream.in" "$work/clrk.in"
"$bench" --role upstream --cert "$certs/upstream.pem" --key "$certs/upstream.key" --threads 1 \
  <"$work/upstream.in" >"$work/upstream.out" 2>&1 &
pids+=($!)
exec 7>"$work/upstream.in"
waitPort() {
  for _ in $(seq 300); do
    grep -q '^PORT ' "$1" 2>/dev/null && { awk '/^PORT /{print $2; exit}' "$1"; return; }
    sleep 0.1
  done
  echo "instructions.sh: no port in $1" >&2
  exit 1
}
upstream_port=$(waitPort "$work/upstream.out")

valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" --dump-instr=no \
  "$bench" --role clrk --dir "$certs/clrk" --upstream-port "$upstream_port" \
  --upstream-ca "$certs/upstream-ca.pem" --threads 1 \
  <"$work/clrk.in" >"$work/clrk.out" 2>"$work/valgrind.log" &
clrk_pid=$!
pids+=("$clrk_pid")
exec 8>"$work/clrk.in"
clrk_port=$(waitPort "$work/clrk.out")

urls() {
  for _ in $(seq "$1"); do
    echo 'url = "https://api.openai.com/v1/models"'
    echo 'output = "/dev/null"'
  done >"$work/urls"
}
send() {
  curl -s --http1.1 -x "http://127.0.0.1:$clrk_port" --cacert "$certs/clrk/clrk-ca.pem" \
    -H 'Authorization: Bearer sk-agent-own-key' -H 'Accept: application/json' -A clrk-bench \
    -K "$work/urls" -w '%{http_code}\n' | sort | uniq -c | tr '\n' ' '
}
urls 50
echo "warm-up (status counts): $(send)"
callgrind_control -z "$clrk_pid" >/dev/null 2>&1
urls "$requests"
echo "measured (status counts): $(send)"
callgrind_control -d "$clrk_pid" >/dev/null 2>&1
sleep 1

profile=$(ls -t "$work"/callgrind."$clrk_pid".* | head -1)
total=$(callgrind_annotate "$profile" 2>/dev/null | awk '/PROGRAM TOTALS/{gsub(",", "", $1); print $1; exit}')
echo "instructions: $total for $requests requests, $((total / requests)) per request"
echo "profile: $profile (callgrind_annotate --inclusive=yes $profile)"
