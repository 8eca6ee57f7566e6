#!/usr/bin/env bash
# tools/bench_ckpt.sh: step time around checkpoint steps (the soak's target:
# step-time p99 < 2x median). Runs lejepa-train on the soak's small ResNet
# with run.ckpt_every=EVERY against tests/fake_loader (no images to decode),
# then prints from metrics.jsonl's "time" fields the median step time, the
# median and worst time of the steps that follow a checkpoint (the step
# during which a checkpoint is written, since metrics are written before
# the checkpoint), and p99.
#
#   bash tools/bench_ckpt.sh [TRAINER] [STEPS] [EVERY]
#
# TRAINER defaults to build/trainer/lejepa-train; STEPS 100, EVERY 5.
# Results in a temporary directory, removed at the end.
set -euo pipefail
# a TRAINER given is relative to where the script is called from
trainer=$(realpath "${1:-$(dirname "$0")/../build/trainer/lejepa-train}")
cd "$(dirname "$0")/.."
steps=${2:-100}
every=${3:-5}
dir=$(mktemp -d /var/tmp/bench-ckpt.XXXXXX)
trap 'kill ${tr:-} ${ld:-} 2>/dev/null || true; rm -rf "$dir"' EXIT
"$trainer" --out "$dir" --name run --steps "$steps" \
  --set run.endpoint="ipc://$dir/work" --set run.broadcast="ipc://$dir/bc" \
  --set model.depths=1,1,1 --set model.widths=16,32,64 --set optim.batch=64 \
  --set views.local_count=2 --set run.ckpt_every="$every" \
  --set run.keep_ckpts=3 --set run.log_every=1 --set run.threads=1 \
  --set eval.every=-1 > "$dir/trainer.out" 2>&1 &
tr=$!
sleep 1
build/tests/fake_loader --connect "ipc://$dir/work" --n-train 2000 --n-val 8 \
  --credit 16 > "$dir/loader.out" 2>&1 &
ld=$!
wait $tr
python3 - "$dir/run/metrics.jsonl" "$every" <<'PY'
import json, sys
every = int(sys.argv[2])
t = {}
for line in open(sys.argv[1]):
    m = json.loads(line)
    if m.get("source") == "train":
        t[m["step"]] = m["time"]
# step s's duration: time(s) - time(s-1); the first steps warm up
d = {s: t[s] - t[s - 1] for s in t if s - 1 in t and s > 3}
def med(v):
    v = sorted(v)
    return v[len(v) // 2]
after = [d[s] for s in d if (s - 1) % every == 0]
other = [d[s] for s in d if (s - 1) % every != 0]
allv = sorted(d.values())
p99 = allv[min(len(allv) - 1, int(0.99 * len(allv)))]
print(f"steps {len(d)}: median {med(allv):.3f} s, p99 {p99:.3f} s "
      f"({p99 / med(allv):.2f}x); checkpoint steps ({len(after)}): median "
      f"{med(after):.3f} s, max {max(after):.3f} s; other steps median "
      f"{med(other):.3f} s, max {max(other):.3f} s")
PY
