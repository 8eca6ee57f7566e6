#!/usr/bin/env bash
# tools/soak.sh: a long run under churn (issue 12), then its figures.
#
#   bash tools/soak.sh [MINUTES]         (default 120; 10 is the short form)
#
# On the bundled Fashion-MNIST (prepared as tools/run.sh does) with 1% of
# the training files replaced by corrupt ones (in a copy of hard links), a
# small ResNet trains for MINUTES while
#   - one of two loaders is restarted every LOADER_EVERY seconds (180),
#   - the trainer is killed (SIGKILL) and resumed every TRAINER_EVERY
#     seconds (3600; a tenth of the run in the short form),
#   - an evaluator attaches and detaches every EVAL_EVERY seconds (300),
#   - a monitor is stopped (SIGSTOP) for the whole run: it never reads.
# At the end it prints: the trainer's RSS and open file descriptors in the
# first sample after 10% of the run and at the end (target: within 5%),
# the 99th-percentile and median step times (target: p99 < 2x median),
# zombie processes (target 0), every step number trained once in the
# final metrics (steps replayed after a resume count once), the excluded
# samples against the corrupt ones, and the snapshots completed against
# those taken. Results in runs/soak-<date>/soak.txt.
set -uo pipefail
cd "$(dirname "$0")/.."
minutes=${1:-120}
B=${B:-build}   # B=DIR: binaries of another build (a copy, so rebuilding build/ mid-soak changes nothing)
name="soak-$(date +%Y%m%d-%H%M%S)"
run="runs/$name"
data=data/fashion-mnist
soakdata="data/soak-$$"
total=$((minutes * 60))
loader_every=${LOADER_EVERY:-180}
eval_every=${EVAL_EVERY:-300}
trainer_every=${TRAINER_EVERY:-$(( minutes >= 60 ? 3600 : total / 10 ))}
ep=tcp://127.0.0.1:$((20000 + $$ % 20000))
bc=tcp://127.0.0.1:$((20001 + $$ % 20000))
sets=(--set run.endpoint=$ep --set run.broadcast=$bc --set model.depths=1,1,1
      --set model.widths=16,32,64 --set optim.batch=64 --set views.local_count=2
      --set eval.every=200 --set eval.train_subset=2000 --set eval.val_limit=2000
      --set run.ckpt_every=100 --set run.log_every=1 --set run.threads=1)

$B/tools/lejepa-prep fashion-mnist --out "$data" >/dev/null
rm -rf "$soakdata"
cp -al "$data" "$soakdata"
# 1% of the training files corrupt: a new file in place of the link
corrupt=0
while read -r f; do
  rm -f "$f"
  head -c 200 /dev/urandom > "$f"
  corrupt=$((corrupt + 1))
done < <(find "$soakdata/train" -name '*.png' | sort | awk 'NR % 100 == 0')
echo "soak: $corrupt corrupt files of $(find "$soakdata/train" -name '*.png' | wc -l) in $soakdata"

pids=()
cleanup() { for p in "${pids[@]}" ${tr:-} ${l1:-} ${l2:-} ${ev:-} ${mon:-}; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null; done; wait 2>/dev/null; rm -rf "$soakdata"; }
trap cleanup EXIT
mkdir -p "$run"

start_trainer() {
  local resume=()
  [ -f "$run/latest" ] && resume=(--resume "$run")
  $B/trainer/lejepa-train --out runs --name "$name" --steps 1000000 \
    --set limits.max_excluded=0.05 "${sets[@]}" "${resume[@]}" >> "$run/trainer.out" 2>&1 &
  tr=$!
}
loader() { $B/loaders/lejepa-loader --connect $ep --data "$soakdata" --workers 1 --name "$1" >> "$run/$1.out" 2>&1 & }
start_trainer
sleep 3
loader l1; l1=$!
loader l2; l2=$!
$B/tools/lejepa-monitor --connect $ep --no-table --out "$run/deaf-monitor" >> "$run/monitor.out" 2>&1 &
mon=$!
sleep 5
kill -STOP $mon        # a monitor that never reads again

t0=$(date +%s)
next_loader=$loader_every next_trainer=$trainer_every next_eval=$eval_every
ev=
samples=()
sample() {   # elapsed rss_kb fds
  local rss fds
  rss=$(awk '/VmRSS/ {print $2}' /proc/$tr/status 2>/dev/null || echo 0)
  fds=$(ls /proc/$tr/fd 2>/dev/null | wc -l)
  samples+=("$1 $rss $fds")
}
while :; do
  now=$(( $(date +%s) - t0 ))
  [ "$now" -ge "$total" ] && break
  sleep 5
  sample "$now"
  if [ "$now" -ge "$next_loader" ]; then
    kill $l2; wait $l2 2>/dev/null; loader l2; l2=$!
    next_loader=$((next_loader + loader_every))
  fi
  if [ "$now" -ge "$next_eval" ]; then
    if [ -n "$ev" ]; then kill $ev; wait $ev 2>/dev/null; ev=
    else $B/eval/lejepa-eval --connect $ep --tasks knn >> "$run/eval.out" 2>&1 & ev=$!; fi
    next_eval=$((next_eval + eval_every))
  fi
  if [ "$now" -ge "$next_trainer" ]; then
    kill -9 $tr; wait $tr 2>/dev/null
    start_trainer
    next_trainer=$((next_trainer + trainer_every))
  fi
done
kill -INT $tr; wait $tr
zombies=$(ps -eo stat,ppid | awk -v me=$$ '$1 ~ /^Z/ && $2 == me' | wc -l)

{
  echo "soak $name: $minutes min, loaders restarted every ${loader_every}s, trainer killed every ${trainer_every}s"
  python3 - "$run" "$corrupt" "${samples[@]}" <<'PY'
import json, sys
run, corrupt, samples = sys.argv[1], int(sys.argv[2]), [s.split() for s in sys.argv[3:]]
steps, times, snaps_taken, snaps_scored = {}, [], set(), set()
excluded = 0
for line in open(f"{run}/metrics.jsonl"):
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("source") == "train":
        steps.setdefault(m["step"], []).append(m["time"])
        excluded = max(excluded, m.get("failures") or 0)
    elif m.get("source") == "eval": snaps_taken.add(m["step"])
    elif m.get("source") == "knn": snaps_scored.add(m["step"])
order = sorted(steps)
last = [steps[s][-1] for s in order]
dts = sorted(b - a for a, b in zip(last, last[1:]) if 0 < b - a < 600)
if dts:
    med, p99 = dts[len(dts) // 2], dts[min(len(dts) - 1, int(0.99 * len(dts)))]
    print(f"step time: median {med:.3f} s, p99 {p99:.3f} s ({p99 / med:.2f}x; target < 2x, resumes excluded)")
gaps = [s for s in range(order[0], order[-1] + 1) if s not in steps] if order else []
print(f"steps {order[0] if order else 0}..{order[-1] if order else 0}: {len(order)} distinct, missing {len(gaps)} "
      f"({sum(len(v) > 1 for v in steps.values())} replayed after a resume, counted once)")
print(f"samples excluded {int(excluded)} of {corrupt} corrupt files")
print(f"snapshots taken {len(snaps_taken)}, scored by an evaluator {len(snaps_scored)} "
      f"(the evaluator is attached half the time)")
ref = [s for s in samples if int(s[0]) >= int(samples[-1][0]) // 10]
if ref and samples:
    r0, r1 = int(ref[0][1]), int(samples[-1][1])
    f0, f1 = int(ref[0][2]), int(samples[-1][2])
    print(f"trainer RSS {r0 / 1024:.1f} MB at {ref[0][0]} s, {r1 / 1024:.1f} MB at the end ({(r1 - r0) / max(r0, 1) * 100:+.1f}%); "
          f"open fds {f0} -> {f1}")
PY
  echo "zombie processes: $zombies"
  python3 tools/soak_check.py "$run"
} | tee "$run/soak.txt"
