#!/usr/bin/python3
"""ref_vit_kernels.py: writes the PyTorch reference fixtures that
tests/test_nn_vit.c checks the ViT kernels against (tests/fixtures/vit/*.npy,
a few KB in all). Run with Debian's python3-torch:

    /usr/bin/python3 tools/ref_vit_kernels.py [OUT_DIR]

- bicubic_*: F.interpolate(mode='bicubic', align_corners=False) in float32
  of a seeded 7x7 grid with 5 channels (stored channels last, (H, W, D), as
  the kernel reads it) to 4x4, 8x8 and 3x5, and the gradient of
  sum(g * out) with respect to the grid for a seeded g.
- attn_*: timm's Attention core (qkv (B,T,3*D) -> out (B,T,D), q scaled by
  HD**-0.5, softmax over keys) in float64 for B=2, T=5, NH=3, HD=4: the
  probabilities, the output and the gradient of sum(dout * out) w.r.t. qkv.
- gelu_*: torch.nn.GELU() (exact erf) and its derivative on seeded inputs.
"""
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F


def save(out_dir, name, t):
    np.save(os.path.join(out_dir, name + ".npy"),
            t.detach().cpu().numpy().astype(np.float32))


def bicubic(out_dir):
    g = torch.Generator().manual_seed(7)
    grid = torch.randn(1, 5, 7, 7, generator=g, dtype=torch.float32)
    save(out_dir, "bicubic_in", grid[0].permute(1, 2, 0))
    for oh, ow in ((4, 4), (8, 8), (3, 5)):
        x = grid.clone().requires_grad_(True)
        y = F.interpolate(x, size=(oh, ow), mode="bicubic",
                          align_corners=False)
        up = torch.randn(y.shape, generator=g, dtype=torch.float32)
        (y * up).sum().backward()
        tag = f"{oh}x{ow}"
        save(out_dir, f"bicubic_out_{tag}", y[0].permute(1, 2, 0))
        save(out_dir, f"bicubic_dout_{tag}", up[0].permute(1, 2, 0))
        save(out_dir, f"bicubic_dinp_{tag}", x.grad[0].permute(1, 2, 0))


def attention(out_dir):
    B, T, NH, HD = 2, 5, 3, 4
    D = NH * HD
    g = torch.Generator().manual_seed(11)
    qkv32 = torch.randn(B, T, 3 * D, generator=g, dtype=torch.float32)
    dout32 = torch.randn(B, T, D, generator=g, dtype=torch.float32)
    qkv = qkv32.double().requires_grad_(True)
    q, k, v = qkv.reshape(B, T, 3, NH, HD).permute(2, 0, 3, 1, 4).unbind(0)
    att = ((q * HD ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
    out = (att @ v).transpose(1, 2).reshape(B, T, D)
    (out * dout32.double()).sum().backward()
    save(out_dir, "attn_qkv", qkv32)
    save(out_dir, "attn_dout", dout32)
    save(out_dir, "attn_att", att)
    save(out_dir, "attn_out", out)
    save(out_dir, "attn_dqkv", qkv.grad)


def gelu(out_dir):
    g = torch.Generator().manual_seed(13)
    x32 = torch.randn(64, generator=g, dtype=torch.float32) * 3
    x = x32.double().requires_grad_(True)
    y = torch.nn.GELU()(x)
    y.sum().backward()
    save(out_dir, "gelu_in", x32)
    save(out_dir, "gelu_out", y)
    save(out_dir, "gelu_grad", x.grad)


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        root, "tests", "fixtures", "vit")
    os.makedirs(out_dir, exist_ok=True)
    bicubic(out_dir)
    attention(out_dir)
    gelu(out_dir)


if __name__ == "__main__":
    main()
