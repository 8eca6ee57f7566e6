#!/usr/bin/env python3
"""tools/soak_check.py RUN_DIR: the soak's per-epoch and per-snapshot checks
(issue 12), from the run's metrics.jsonl and the evaluator's log.

- Samples used exactly once per epoch apart from the corrupt ones: with
  steps replayed after a resume counted once (the last line of a step), an
  epoch trains sum(samples) samples; the ones missing from full batches are
  the corrupt files met in that epoch (each excluded on first sight, so
  later epochs train full batches only). Prints, per epoch, the steps, the
  samples trained, the short steps and the failures counter's growth.
- Snapshots complete: every snapshot the trainer took (source eval) while
  an evaluator was attached was scored (a knn line) or reported incomplete
  (the evaluator's log says so); prints the counts.
- Step time: median and 99th percentile of the gaps between consecutive
  steps' lines, resumes excluded, and the slowest steps with what they
  coincide with (a snapshot, a checkpoint step).
Reads only; prints a few lines. Standard library only.
"""
import json
import os
import re
import sys


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: soak_check.py RUN_DIR")
    run = sys.argv[1]
    steps, evals, knn = {}, set(), set()
    for line in open(os.path.join(run, "metrics.jsonl")):
        try:
            m = json.loads(line)
        except ValueError:
            continue
        src = m.get("source")
        if src == "train":
            steps[m["step"]] = m  # the last line of a replayed step wins
        elif src == "eval":
            evals.add(m["step"])
        elif src == "knn":
            knn.add(m["step"])
    order = sorted(steps)
    if not order:
        sys.exit("no train lines")
    batch = max(int(steps[s].get("samples") or 0) for s in order)
    # per epoch
    by_epoch = {}
    for s in order:
        by_epoch.setdefault(steps[s]["epoch"], []).append(s)
    prev_fail = 0
    print(f"per epoch (batch {batch}): steps, samples trained, short steps, failures added")
    for ep in sorted(by_epoch):
        ss = by_epoch[ep]
        trained = sum(int(steps[s].get("samples") or 0) for s in ss)
        short = sum(1 for s in ss if int(steps[s].get("samples") or 0) < batch)
        fail = max(int(steps[s].get("failures") or 0) for s in ss)
        missing = len(ss) * batch - trained
        print(f"  epoch {ep}: {len(ss)} steps, {trained} samples, {short} short steps "
              f"({missing} samples short), failures {prev_fail} -> {fail} (+{fail - prev_fail})")
        prev_fail = fail
    # snapshots
    incomplete = 0
    ev_log = os.path.join(run, "eval.out")
    if os.path.exists(ev_log):
        incomplete = sum(1 for l in open(ev_log, errors="replace") if " incomplete (" in l)
    print(f"snapshots: {len(evals)} taken, {len(knn & evals)} scored by an attached evaluator, "
          f"{incomplete} reported incomplete by it")
    # step time
    last = [(s, steps[s]["time"]) for s in order]
    gaps = [(b[1] - a[1], b[0]) for a, b in zip(last, last[1:])
            if b[0] == a[0] + 1 and 0 < b[1] - a[1] < 600]
    gaps.sort()
    if gaps:
        med = gaps[len(gaps) // 2][0]
        p99 = gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))][0]
        print(f"step time: median {med:.3f} s, p99 {p99:.3f} s ({p99 / med:.2f}x) over {len(gaps)} steps")
        slow = gaps[-10:]
        print("slowest: " + ", ".join(
            f"step {s} {g:.2f} s{' (snapshot)' if s - 1 in evals else ''}" for g, s in reversed(slow)))


if __name__ == "__main__":
    main()
