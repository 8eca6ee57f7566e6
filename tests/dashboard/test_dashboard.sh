#!/bin/sh
# test_dashboard.sh: renders a dashboard written by `lejepa-monitor --from`
# in headless Chromium (Debian's chromium package) and checks the DOM that
# Chromium built: every chart has one polyline per series with data, each
# with exactly as many vertices as it says (data-points), and the series
# totals (data-total) are the counts in the synthetic metrics.jsonl (long
# series downsampled to <= 2000 vertices; a NaN loss and a string value left
# out); the segmentation grid is inline. Also takes a screenshot as a
# smoke test of the rendering.
#
#   test_dashboard.sh PATH/TO/lejepa-monitor
#
# Exit 77 (skip) when chromium is missing, unless CI=true: then it fails.
set -eu

MONITOR=${1:?usage: test_dashboard.sh PATH/TO/lejepa-monitor}
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
    if [ "${CI:-}" = true ]; then
        echo "chromium is not installed and CI=true: failing (add chromium to tools/setup.sh)"
        exit 1
    fi
    echo "chromium is not installed: skipping (apt-get install -y chromium)"
    exit 77
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run="$tmp/runs/chromium-test"
mkdir -p "$run/segmaps"

# 2500 training steps (step 1234 has a NaN loss), an eval/kNN/linear record
# every 100 steps: 25 points each.
STEPS=2500
awk -v n=$STEPS 'BEGIN {
    srand(11); t0 = 1764000000
    for (i = 0; i < n; i++) {
        t = t0 + 0.4 * i; u = rand()
        loss = (i == 1234) ? "NaN" : sprintf("%.6f", 1 + exp(-i / 500) + 0.1 * u)
        printf "{\"time\":%.3f,\"step\":%d,\"epoch\":%d,\"source\":\"train\",\"loss\":%s,", t, i, int(i / 500), loss
        printf "\"inv\":%.6f,\"sigreg\":%.6f,\"lr\":%.6g,\"images_per_s\":%.1f,", 0.2 * exp(-i / 700) + 0.01 * u, 1 + exp(-i / 300), 5e-4 * (i + 1) / n, 900 + 80 * u
        printf "\"probe_loss\":%.5f,\"probe_acc_train\":%.4f,\"loaders\":2,\"failures\":%d,", 2.3 * exp(-i / 900), 1 - 0.9 * exp(-i / 600), int(i / 1000)
        printf "\"batch_hash\":\"%08x\"}\n", int(u * 2147483647)
        if (i % 100 == 0) {
            a = 1 - 0.85 * exp(-i / 700)
            printf "{\"time\":%.3f,\"step\":%d,\"epoch\":%d,\"source\":\"eval\",\"probe_acc_val\":%.4f}\n", t + 0.1, i, int(i / 500), a
            printf "{\"time\":%.3f,\"step\":%d,\"epoch\":%d,\"source\":\"knn\",\"knn_top1\":%.4f}\n", t + 0.2, i, int(i / 500), a + 0.02
            printf "{\"time\":%.3f,\"step\":%d,\"epoch\":%d,\"source\":\"linear\",\"linear_top1\":%.4f}\n", t + 0.3, i, int(i / 500), a + 0.03
        }
    }
}' > "$run/metrics.jsonl"
# A 1x1 PNG as the segmentation grid.
echo 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=' |
    base64 -d > "$run/segmaps/latest.png"

"$MONITOR" --from "$run/metrics.jsonl" > "$tmp/monitor.log" 2>&1 || {
    cat "$tmp/monitor.log"; echo "lejepa-monitor --from failed"; exit 1; }

chrome() {
    timeout 40 "$CHROMIUM" --headless --no-sandbox --disable-gpu \
        --disable-background-networking --disable-component-update --disable-sync \
        --no-first-run --user-data-dir="$tmp/profile" "$@"
}
chrome --dump-dom "file://$run/dashboard.html" > "$tmp/dom.html" 2> "$tmp/chromium.log" || {
    cat "$tmp/chromium.log"; echo "chromium --dump-dom failed"; exit 1; }

# One row per polyline in the rendered DOM:
#   chart series data-points data-total vertices-in-points
awk '
function attr(s, name,    r) {
    r = " " name "=\"[^\"]*\""
    if (!match(s, r)) return "?"
    return substr(s, RSTART + length(name) + 3, RLENGTH - length(name) - 4)
}
/<figure class="chart"/ { chart = attr($0, "id") }
/<polyline/ {
    pts = attr($0, "points"); n = (pts == "" || pts == "?") ? 0 : split(pts, v, " ")
    print chart, attr($0, "data-series"), attr($0, "data-points"), attr($0, "data-total"), n
}' "$tmp/dom.html" > "$tmp/got.txt"

cat > "$tmp/want.txt" <<EOF
loss loss 2000 2499 2000
loss inv 2000 2500 2000
loss sigreg 2000 2500 2000
acc_step probe_acc_train 2000 2500 2000
acc_step probe_acc_val 25 25 25
acc_step knn_top1 25 25 25
acc_step linear_top1 25 25 25
acc_time probe_acc_train 2000 2500 2000
acc_time probe_acc_val 25 25 25
acc_time knn_top1 25 25 25
acc_time linear_top1 25 25 25
throughput images_per_s 2000 2500 2000
probe_loss probe_loss 2000 2500 2000
lr lr 2000 2500 2000
system loaders 2000 2500 2000
system failures 2000 2500 2000
EOF

status=0
if ! diff -u "$tmp/want.txt" "$tmp/got.txt"; then
    echo "FAIL: polylines in the rendered DOM differ from the data (want vs got above)"
    status=1
fi
grep -q 'src="data:image/png;base64,iVBORw0KGgo' "$tmp/dom.html" ||
    { echo "FAIL: segmentation grid not inline in the DOM"; status=1; }
grep -q '<span id="run">chromium-test</span>' "$tmp/dom.html" ||
    { echo "FAIL: run name missing from the header"; status=1; }
grep -q '<b id="last-step">2499</b>' "$tmp/dom.html" ||
    { echo "FAIL: last step missing from the header"; status=1; }
if grep -q '<script\|https\?://[^"]*\.\(js\|css\|png\)' "$tmp/dom.html"; then
    echo "FAIL: the dashboard refers to scripts or external resources"; status=1
fi

chrome --window-size=1500,2400 --screenshot="$tmp/shot.png" "file://$run/dashboard.html" \
    >> "$tmp/chromium.log" 2>&1 || { cat "$tmp/chromium.log"; echo "FAIL: screenshot"; status=1; }
size=$(wc -c < "$tmp/shot.png" 2>/dev/null || echo 0)
if [ "$size" -lt 20000 ]; then
    echo "FAIL: screenshot of $size bytes: nothing drawn?"; status=1
fi

[ $status -eq 0 ] && echo "ok: $(wc -l < "$tmp/got.txt") polylines match the data; screenshot $size bytes"
exit $status
