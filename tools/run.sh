#!/usr/bin/env bash
# tools/run.sh: the README's main job on the bundled default dataset.
#   1. prepares Fashion-MNIST (Debian's dataset-fashion-mnist) as an
#      ImageFolder tree in data/fashion-mnist (once; reruns are no-ops);
#   2. trains LeJEPA with the default recipe (configs/fashion-mnist.ini) for
#      a time budget: lejepa run starts the trainer, two loaders, an
#      evaluator and a monitor as separate processes, and prints the online
#      probe's accuracy as it goes;
#   3. scores the final checkpoint independently: lejepa embed exports the
#      frozen embeddings of the train and val splits, lejepa-eval computes
#      kNN and linear-probe top-1 on val from those files.
# MINUTES (default 30) sets the training budget; NAME the run's name.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes="${MINUTES:-30}"
name="${NAME:-fmnist-$(date +%Y%m%d-%H%M%S)}"
data=data/fashion-mnist
run="runs/$name"

./build/tools/lejepa-prep fashion-mnist --out "$data"
./build/tools/lejepa run --config configs/fashion-mnist.ini --data "$data" \
  --minutes "$minutes" --name "$name"

ckpt="$run/$(head -n 1 "$run/latest")"
mkdir -p "$run/final"
for split in train val; do
  ./build/tools/lejepa embed --ckpt "$ckpt" --data "$data" --split "$split" \
    --out "$run/final/$split"
done
echo "final evaluation of $ckpt (frozen embeddings, val split):"
./build/eval/lejepa-eval --train "$run/final/train" --val "$run/final/val" \
  --tasks knn,linear | tee "$run/final/result.txt"
echo "run directory: $run   dashboard: $run/dashboard.html"
