#!/usr/bin/env bash
# tests/test_mpi_netns.sh: lejepa-train on two "machines" under mpirun:
# network namespaces (tools/netns.sh) H1 and H2 hold rank 0 and rank 1,
# H3 two loaders given rank 0's address. mpirun runs in H1 and starts the
# rank on H2 through a launch agent that runs the command in H2's
# namespace (Open MPI's plm_rsh_agent, in place of ssh); MPI and the
# loaders talk over the namespaces' addresses only. Checks: both ranks
# train every step with the same losses, rank 0 sends one loader to rank 1
# at H2's address, which that loader serves. Needs root, iproute2 and Open
# MPI: fails, never skips, without them (CI has them). Then one process
# on H1 with one loader: rank 0's losses must be its, step for step.
set -euo pipefail
root=${LEJEPA_SOURCE_ROOT:?}
build=${LEJEPA_BUILD_ROOT:?}
prefix="mpn$(($$ % 100000))"
tmp=$(mktemp -d)
cleanup() {
  bash "$root/tools/netns.sh" down "$prefix" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "test_mpi_netns: $*" >&2; tail -n 40 "$tmp/train.out" >&2 || true; exit 1; }

bash "$root/tools/netns.sh" up "$prefix" h1 h2 h3 >/dev/null
# a small dataset: 3 classes of 10 random 16x16 gray PNG files, 2 for val
python3 - "$tmp/data" <<'PY'
import os, random, struct, sys, zlib
def png(path, w, h, rng):
    raw = b"".join(b"\0" + bytes(rng.randrange(256) for _ in range(w)) for _ in range(h))
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
rng = random.Random(3)
for split, n in (("train", 10), ("val", 2)):
    for c in "abc":
        os.makedirs(os.path.join(sys.argv[1], split, c), exist_ok=True)
        for i in range(n):
            png(os.path.join(sys.argv[1], split, c, "%d.png" % i), 16, 16, rng)
PY
cat >"$tmp/agent" <<AGENT
#!/bin/sh
# "agent HOST CMD...": CMD in HOST's namespace
host=\$1; shift
case "\$host" in
  10.250.77.1) ns=$prefix-h1 ;;
  10.250.77.2) ns=$prefix-h2 ;;
  *) echo "agent: unknown host \$host" >&2; exit 1 ;;
esac
exec ip netns exec "\$ns" sh -c "\$*"
AGENT
chmod +x "$tmp/agent"

export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
sets=(--set model.sync_bn=true --set model.depths=1,1 --set model.widths=8,16
      --set model.projector=32,16 --set views.global_size=16 --set views.local_size=8
      --set views.local_count=2 --set optim.batch=8 --set run.ticket_size=4
      --set loss.slices=16 --set run.log_every=1 --set run.threads=1 --set run.seed=3
      --set eval.every=-1 --steps 12 --out "$tmp/runs" --name two --insecure)
trainer="$build/trainer/lejepa-train"
ip netns exec "$prefix-h1" timeout 120 mpirun --mca plm_rsh_agent "$tmp/agent" \
  --mca btl_tcp_if_include 10.250.77.0/24 --mca oob_tcp_if_include 10.250.77.0/24 \
  -x OMP_NUM_THREADS=1 \
  -n 1 -H 10.250.77.1 "$trainer" "${sets[@]}" --bind 10.250.77.1 : \
  -n 1 -H 10.250.77.2 "$trainer" "${sets[@]}" --bind 10.250.77.2 \
  >"$tmp/train.out" 2>&1 &
mpi=$!
loaders=()
for i in 1 2; do
  ip netns exec "$prefix-h3" timeout 100 "$build/loaders/lejepa-loader" \
    --connect tcp://10.250.77.1:5555 --data "$tmp/data" --workers 1 --name "L$i" \
    >"$tmp/L$i.out" 2>&1 &
  loaders+=($!)
done
wait "$mpi" || fail "mpirun exited with status $?"
[ "$(grep -c 'done at step 12 of 12' "$tmp/train.out")" = 2 ] || fail "not both ranks trained 12 steps"
grep -q "goes to the rank at tcp://10.250.77.2:5557" "$tmp/train.out" || fail "rank 0 sent no loader to rank 1"
grep -qh "serving the rank at tcp://10.250.77.2:5557" "$tmp"/L*.out || fail "no loader served rank 1"
grep -q "rank 1/2\]: loader L. joined" "$tmp/train.out" || fail "rank 1 had no loader"
kill "${loaders[@]}" 2>/dev/null || true
# one process on H1 with one loader: the same losses, step for step
ones=("${sets[@]}")
ones[${#ones[@]}-2]=one  # --name one
ip netns exec "$prefix-h1" timeout 60 "$trainer" "${ones[@]}" --bind 10.250.77.1 \
  >"$tmp/one.out" 2>&1 &
single=$!
ip netns exec "$prefix-h3" timeout 50 "$build/loaders/lejepa-loader" \
  --connect tcp://10.250.77.1:5555 --data "$tmp/data" --workers 1 --name L3 \
  >"$tmp/L3.out" 2>&1 &
wait "$single" || fail "the one-process run exited with status $?"
losses() { grep -v "rank 1/2" "$1" | grep -o "step [0-9]*/12 epoch [0-9]* loss [0-9.]*" | awk '{print $NF}'; }
paste <(losses "$tmp/train.out") <(losses "$tmp/one.out") >"$tmp/pairs"
[ "$(wc -l <"$tmp/pairs")" = 12 ] || fail "expected 12 steps from both runs"
awk '{d = $1 - $2; if (d < 0) d = -d; if (d > 1e-4 * $2) { print "step " NR ": " $1 " vs " $2; bad = 1 } } END { exit bad }' \
  "$tmp/pairs" || fail "two ranks on two hosts differ from one process"
echo "test_mpi_netns: 2 ranks in 2 namespaces trained 12 steps, one loader each, as one process"
