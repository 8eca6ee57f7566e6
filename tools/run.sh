#!/usr/bin/env bash
# tools/run.sh: the README's main job on the bundled default dataset.
# Until the loader -> trainer -> evaluator pipeline exists, it does what
# exists so far: prepares Fashion-MNIST (from Debian's dataset-fashion-mnist)
# as an ImageFolder tree in data/fashion-mnist, indexes it, and times LeJEPA
# training steps of the engine on the reference ResNet config.
set -euo pipefail
cd "$(dirname "$0")/.."
./build/tools/lejepa-prep fashion-mnist --out data/fashion-mnist
./build/tools/bench-train --config configs/bench-resnet.ini --steps 3 --warmup 1 --no-torch
