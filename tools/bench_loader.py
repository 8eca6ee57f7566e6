#!/usr/bin/python3
"""bench_loader.py: torchvision companion of tools/bench-loader.

Decodes each listed file with PIL (convert to "L" or "RGB") and cuts the same
views as the C loader with the usual torchvision SSL recipe: RandomResizedCrop
(bilinear, global scale (0.3, 1), local (0.05, 0.3), ratio (3/4, 4/3)),
horizontal flip 0.5, ColorJitter(0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale
0.2, GaussianBlur (kernel 10% of the side, odd, >= 3; sigma 0.1..2) with p 0.5,
solarize at 128 with p 0.2, then PILToTensor (uint8, like the C output).
One thread. Prints one JSON object: samples_per_cpu_s (per CPU second of the
process), samples_per_s (per wall second), samples, seconds, versions.
Run by build/tools/bench-loader; usable alone with the same arguments.
"""
import argparse
import json
import sys
import time

import PIL
import torch
import torchvision
from PIL import Image
from torchvision import transforms as T


def ksize(s):
    k = int(0.1 * s) | 1
    return max(k, 3)


def view_transform(size, scale):
    return T.Compose([
        T.RandomResizedCrop(size, scale=scale, ratio=(3 / 4, 4 / 3),
                            interpolation=T.InterpolationMode.BILINEAR),
        T.RandomHorizontalFlip(0.5),
        T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
        T.RandomGrayscale(0.2),
        T.RandomApply([T.GaussianBlur(ksize(size), sigma=(0.1, 2.0))], p=0.5),
        T.RandomSolarize(128, p=0.2),
        T.PILToTensor(),
    ])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--list", required=True, help="file with one path a line")
    ap.add_argument("--channels", type=int, default=1)
    ap.add_argument("--global-size", type=int, default=28)
    ap.add_argument("--local-size", type=int, default=14)
    ap.add_argument("--global-count", type=int, default=2)
    ap.add_argument("--local-count", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=4.0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    with open(a.list) as f:
        files = [line.rstrip("\n") for line in f if line.strip()]
    mode = "L" if a.channels == 1 else "RGB"
    g = view_transform(a.global_size, (0.3, 1.0))
    loc = view_transform(a.local_size, (0.05, 0.3))

    def sample(path):
        with Image.open(path) as im:
            im = im.convert(mode)
        views = [g(im) for _ in range(a.global_count)]
        views += [loc(im) for _ in range(a.local_count)]
        return views

    n = len(files)
    for i in range(max(1, n // 10)):     # warm-up, as the C side
        sample(files[i % n])
    done = 0
    t0 = time.perf_counter()
    c0 = time.process_time()
    while True:
        sample(files[done % n])
        done += 1
        if done >= n and time.process_time() - c0 >= a.seconds:
            break
    el = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print(json.dumps({
        "samples_per_cpu_s": done / cpu, "samples_per_s": done / el,
        "samples": done, "seconds": el, "cpu_seconds": cpu,
        "versions": "torch %s, torchvision %s, PIL %s" % (
            torch.__version__, torchvision.__version__, PIL.__version__),
    }))


if __name__ == "__main__":
    sys.exit(main())
