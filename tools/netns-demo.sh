#!/usr/bin/env bash
# tools/netns-demo.sh: the pipeline spread over four "machines" on this
# host, as a worked example of the README's "Loaders on other machines".
# Each machine is a network namespace (tools/netns.sh); they share this
# file system, so the keys and the dataset are simply paths here, where on
# real machines you would copy them.
#
#   sudo bash tools/netns-demo.sh DATA_DIR [MINUTES]
#
# DATA_DIR: an ImageFolder tree (e.g. the output of `lejepa-prep
# fashion-mnist --out data/fashion-mnist`). Runs MINUTES (default 2) of
# training, then stops everything and removes the namespaces. The run
# lands in runs/netns-demo-<pid>/.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:?usage: netns-demo.sh DATA_DIR [MINUTES]}
minutes=${2:-2}
B=build
P=ljd$$                        # namespace prefix
work=$(mktemp -d)
net() { bash tools/netns.sh "$@"; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  net down "$P"
  rm -rf "$work"
}
trap cleanup EXIT

# 1. The machines: trainer 10.250.77.1, two loaders .2 and .3, an
#    evaluator and a monitor on .4.
net up "$P" trainer loader1 loader2 viewer

# 2. Keys. On real machines each client makes its own pair and sends only
#    its NAME.pub to the trainer's operator; the trainer's trainer.pub goes
#    to every client.
L=$B/tools/lejepa
$L keys new trainer --out "$work/keys" >/dev/null
for c in loader1:loader loader2:loader eval:evaluator mon:monitor; do
  $L keys new "${c%%:*}" --out "$work/keys" --role "${c##*:}" >/dev/null
done
# 3. The allow-list: one line per client key, with the role it may play.
{
  echo '# lejepa allow-list v1'
  echo "loader    loader1  $work/keys/loader1.pub"
  echo "loader    loader2  $work/keys/loader2.pub"
  echo "evaluator eval     $work/keys/eval.pub"
  echo "monitor   mon      $work/keys/mon.pub"
} > "$work/allow.txt"

# 4. The trainer binds its machine's address (ports 5555 and 5556); without
#    --key and --allow it would refuse to bind beyond loopback.
net exec "$P" trainer $B/trainer/lejepa-train --bind 10.250.77.1 \
  --key "$work/keys/trainer.key" --allow "$work/allow.txt" \
  --config configs/fashion-mnist.ini --minutes "$minutes" \
  --name "netns-demo-$$" --set eval.wait_evaluators=1 &
pids+=($!)
sleep 2

# 5. Loaders, the evaluator and the monitor connect to the trainer's work
#    port with their own key and the trainer's public key.
T=tcp://10.250.77.1:5555
for n in 1 2; do
  net exec "$P" loader$n $B/loaders/lejepa-loader --connect $T --data "$data" \
    --name loader$n --workers 1 \
    --key "$work/keys/loader$n.key" --server-key "$work/keys/trainer.pub" &
  pids+=($!)
done
net exec "$P" viewer $B/eval/lejepa-eval --connect $T --tasks knn,linear \
  --key "$work/keys/eval.key" --server-key "$work/keys/trainer.pub" &
pids+=($!)
net exec "$P" viewer $B/tools/lejepa-monitor --connect $T --no-table \
  --out "runs/netns-demo-$$" \
  --key "$work/keys/mon.key" --server-key "$work/keys/trainer.pub" &
pids+=($!)

wait "${pids[0]}"
echo "netns-demo: done; see runs/netns-demo-$$/ (dashboard.html, metrics.jsonl)"
