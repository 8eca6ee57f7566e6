#!/bin/sh
# test_train_keys.sh: lejepa-train with CurveZMQ keys (PROTOCOL.md, Keys and
# roles), end to end on 127.0.0.1 with lejepa-monitor as the client:
# - a bind beyond loopback without keys is refused, naming `lejepa keys new`;
# - an allow-listed monitor key gets the history (--once exits 0);
# - a key listed as a loader that says HELLO as a monitor is refused by the
#   trainer (role check) and the monitor exits 1;
# - an unknown key is refused by the ZAP handler, logged by the trainer;
# - a client given the wrong server key does not get in.
#
#   test_train_keys.sh BUILD_ROOT
set -u
B=${1:?usage: test_train_keys.sh BUILD_ROOT}
L=$B/tools/lejepa T=$B/trainer/lejepa-train M=$B/tools/lejepa-monitor
tmp=$(mktemp -d)
cd "$tmp" || exit 1
fail=0
pass=0
check() { # NAME CONDITION...
    name=$1; shift
    if "$@"; then pass=$((pass + 1)); else echo "FAIL: $name"; fail=$((fail + 1)); fi
}
cleanup() { [ -n "${tr:-}" ] && kill "$tr" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT

$L keys new trainer --out k >/dev/null || exit 1
$L keys new rival --out k2 >/dev/null || exit 1
$L keys new mon --out k --role monitor >/dev/null || exit 1
$L keys new ld --out k --role loader >/dev/null || exit 1
$L keys new stranger --out k2 --role monitor >/dev/null || exit 1
{
    echo '# lejepa allow-list v1'
    echo "monitor mon $(grep '^public' k/mon.pub | sed 's/^public = //')"
    echo "loader ld $(grep '^public' k/ld.pub | sed 's/^public = //')"
} > allow.txt

# beyond loopback without keys: refused before anything binds
$T --bind 0.0.0.0 --out r --name open > open.log 2>&1
rc=$?
check "non-loopback bind without keys exits 2" [ "$rc" -eq 2 ]
check "the refusal says how to make keys" grep -q "lejepa keys new" open.log

port=$((20000 + $$ % 20000))
W=tcp://127.0.0.1:$port P=tcp://127.0.0.1:$((port + 1))
$T --out r --name keyed --set run.endpoint=$W --set run.broadcast=$P \
   --key k/trainer.key --allow allow.txt > tr.log 2>&1 &
tr=$!
sleep 1
mon() { # KEY SERVERKEY
    timeout 30 $M --connect $W --once --no-table --out mout --key "$1" \
        --server-key "$2" > mon.log 2>&1
}
mon k/mon.key k/trainer.pub
check "allowed monitor key gets the history" [ $? -eq 0 ]
mon k/ld.key k/trainer.pub
check "a loader key saying HELLO as a monitor is refused" [ $? -eq 1 ]
check "the trainer names the role mismatch" \
    grep -q "key ld is allowed as a loader, not as a monitor" r/keyed/log
mon k2/stranger.key k/trainer.pub
check "an unknown key is refused" [ $? -eq 1 ]
sleep 1.5
check "the trainer logs the unknown key" grep -q "refused a CURVE connection" r/keyed/log
mon k/mon.key k2/rival.pub
check "a wrong server key does not get in" [ $? -ne 0 ]
check "the trainer is still up" kill -0 "$tr"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
