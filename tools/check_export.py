#!/usr/bin/python3
"""Checks `lejepa export` against PyTorch (run by hand; needs Debian's
python3-torch and python3-torchvision):

  1. exports the checkpoint's backbone (`lejepa export`),
  2. loads it with load_state_dict(strict=True) into torchvision's
     resnet18() when the layout is ResNet-18's (conv1 and maxpool replaced
     for the small stem or another channel count, fc = Identity, exactly as
     README.md tells users), or else into a ResNet of the same depths and
     widths built from torchvision's BasicBlock; a ViT goes into timm's
     VisionTransformer when timm is importable (it is not packaged),
  3. embeds a few random images of the global crop size (so the eval view
     is the image itself) with `lejepa embed` and with PyTorch, and prints
     the largest absolute and relative difference; exit 1 above --tol.

With --fixture DIR it also writes DIR/tiny_backbone.safetensors (the
export) and DIR/tiny_torch.safetensors (the PyTorch side: `input`, the
normalised images (N, C, G, G), and `embedding` (N, D)), which
tests/test_export.c compares against without PyTorch. The committed
fixture comes from (widths 8-16, small stem, 1 channel):

  build/tools/fixture-ckpt /tmp/tiny --set model.depths=2,2 \\
      --set model.widths=8,16 --set model.projector=32,16 --set views.global_size=16
  /usr/bin/python3 tools/check_export.py --ckpt /tmp/tiny --fixture tests/fixtures/export

usage: check_export.py --ckpt RUN|FILE [--lejepa build/tools/lejepa]
                       [--images N] [--tol T] [--fixture DIR]
"""
import argparse
import configparser
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn

ST_DTYPES = {"F32": np.float32, "I64": np.int64}
VIT_HEADS = {"vit_tiny": 3, "vit_small": 6, "vit_base": 12}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        arr = np.frombuffer(data[base + a:base + b], dtype=ST_DTYPES[t["dtype"]])
        out[name] = torch.from_numpy(arr.reshape(t["shape"]).copy())
    return out, meta


def write_safetensors(path, tensors, meta):
    header = {"__metadata__": meta}
    blobs, offset = [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        header[name] = {"dtype": "F32", "shape": list(arr.shape),
                        "data_offsets": [offset, offset + arr.nbytes]}
        blobs.append(arr.tobytes())
        offset += arr.nbytes
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def run_config(meta):
    cp = configparser.ConfigParser(comment_prefixes=(";", "#"), inline_comment_prefixes=None)
    cp.read_string(meta["config"])
    return cp


class SmallResNet(nn.Module):
    """torchvision's ResNet layout (same module names) for any depths and
    widths; torchvision's own class fixes the widths at 64-512."""

    def __init__(self, in_ch, depths, widths, small_stem):
        super().__init__()
        from torchvision.models.resnet import BasicBlock, conv1x1
        k, s, p = (3, 1, 1) if small_stem else (7, 2, 3)
        self.conv1 = nn.Conv2d(in_ch, widths[0], k, s, p, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_stem else nn.MaxPool2d(3, 2, 1)
        inp = widths[0]
        self.n_layers = len(widths)
        for i, (w, d) in enumerate(zip(widths, depths)):
            blocks = []
            for b in range(d):
                stride = 2 if i > 0 and b == 0 else 1
                down = None
                if stride != 1 or inp != w:
                    down = nn.Sequential(conv1x1(inp, w, stride), nn.BatchNorm2d(w))
                blocks.append(BasicBlock(inp, w, stride, down))
                inp = w
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*blocks))

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        for i in range(self.n_layers):
            x = getattr(self, "layer%d" % (i + 1))(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)


def resnet_from(sd):
    """The model for an export, read off its own tensor shapes."""
    import torchvision
    w = sd["conv1.weight"]
    in_ch, small = w.shape[1], w.shape[2] == 3
    depths, widths = [], []
    while any(k.startswith("layer%d." % (len(depths) + 1)) for k in sd):
        i = len(depths) + 1
        depths.append(len({k.split(".")[1] for k in sd if k.startswith("layer%d." % i)}))
        widths.append(sd["layer%d.0.conv1.weight" % i].shape[0])
    if depths == [2, 2, 2, 2] and widths == [64, 128, 256, 512]:
        m = torchvision.models.resnet18()
        if small or in_ch != 3:
            # What README.md tells users to do for the small stem / 1 channel.
            k, s, p = (3, 1, 1) if small else (7, 2, 3)
            m.conv1 = nn.Conv2d(in_ch, 64, k, s, p, bias=False)
            if small:
                m.maxpool = nn.Identity()
        m.fc = nn.Identity()
        return m, "torchvision.models.resnet18()"
    return SmallResNet(in_ch, depths, widths, small), \
        "ResNet of torchvision BasicBlocks, depths %s widths %s" % (depths, widths)


def vit_from(sd, cfg, size):
    import timm  # not packaged in Debian: pip install timm in a venv
    dim = sd["cls_token"].shape[-1]
    patch = sd["patch_embed.proj.weight"].shape[-1]
    depth = len({k.split(".")[1] for k in sd if k.startswith("blocks.")})
    heads = int(cfg["model"].get("heads", "0")) or VIT_HEADS[cfg["model"]["preset"]]
    ratio = float(cfg["model"].get("mlp_ratio", "4"))
    m = timm.models.vision_transformer.VisionTransformer(
        img_size=size, patch_size=patch, in_chans=sd["patch_embed.proj.weight"].shape[1],
        num_classes=0, embed_dim=dim, depth=depth, num_heads=heads, mlp_ratio=ratio)
    return m, "timm VisionTransformer"


def make_images(root, n, c, g, seed):
    """An ImageFolder of n random g x g images; returns them (N, C, G, G)
    uint8 in the dataset index's order (sorted relative paths)."""
    from PIL import Image
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, size=(n, g, g, c), dtype=np.uint8)
    for split in ("train", "val"):
        for i in range(n):
            d = os.path.join(root, split, "c%d" % (i % 2))
            os.makedirs(d, exist_ok=True)
            px = imgs[i][:, :, 0] if c == 1 else imgs[i]
            Image.fromarray(px).save(os.path.join(d, "%03d.png" % i))
    order = sorted(range(n), key=lambda i: "c%d/%03d.png" % (i % 2, i))
    return imgs[order].transpose(0, 3, 1, 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--lejepa", default=os.path.join("build", "tools", "lejepa"))
    ap.add_argument("--images", type=int, default=6)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--fixture")
    a = ap.parse_args()
    torch.set_num_threads(2)
    tmp = tempfile.mkdtemp(prefix="check_export.")
    try:
        exp = os.path.join(tmp, "backbone.safetensors")
        subprocess.run([a.lejepa, "export", "--ckpt", a.ckpt, "--out", exp], check=True)
        sd, meta = read_safetensors(exp)
        cfg = run_config(meta)
        v = cfg["views"]
        c, g = int(v["channels"]), int(v["global_size"])
        mean = np.array([float(x) for x in v["mean"].split(",")], np.float32)
        std = np.array([float(x) for x in v["std"].split(",")], np.float32)
        if meta["layout"] == "timm":
            model, what = vit_from(sd, cfg, g)
        else:
            model, what = resnet_from(sd)
        model.load_state_dict(sd, strict=True)
        model.eval()
        print("strict load into %s: %d tensors" % (what, len(sd)))

        px = make_images(os.path.join(tmp, "data"), a.images, c, g, a.seed)
        subprocess.run([a.lejepa, "embed", "--ckpt", a.ckpt, "--data",
                        os.path.join(tmp, "data"), "--split", "val", "--out",
                        os.path.join(tmp, "val"), "--threads", "2"], check=True)
        ours = np.load(os.path.join(tmp, "val.emb.npy"))
        x = (px.astype(np.float32) / 255.0 - mean[:, None, None]) / std[:, None, None]
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        diff = np.abs(ours - ref)
        rel = (diff / (1.0 + np.abs(ref))).max()
        print("%d images, embeddings %s: max |lejepa embed - PyTorch| = %.3g "
              "(relative %.3g, largest |value| %.3g)"
              % (a.images, ref.shape, diff.max(), rel, np.abs(ref).max()))
        if a.fixture:
            os.makedirs(a.fixture, exist_ok=True)
            shutil.copy(exp, os.path.join(a.fixture, "tiny_backbone.safetensors"))
            write_safetensors(os.path.join(a.fixture, "tiny_torch.safetensors"),
                              {"input": x, "embedding": ref},
                              {"torch": torch.__version__, "model": what,
                               "max_abs_diff_vs_lejepa_embed": "%.3g" % diff.max()})
            print("wrote the fixture to", a.fixture)
        return 0 if rel <= a.tol else 1
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    sys.exit(main())
