#!/usr/bin/python3
"""Writes the reference key and shape lists that tests/test_export.c holds
`lejepa export` to (run by hand; the outputs are committed):

  tests/fixtures/export/resnet18_torchvision.txt  from torchvision itself:
      torchvision.models.resnet18().state_dict() without fc.* (needs PyTorch)
  tests/fixtures/export/vit_tiny_timm.txt         timm is not packaged in
      Debian: the names and shapes timm's VisionTransformer registers for
      vit_tiny_patch16_224 without its head (num_classes=0), written out
      below from timm's source (huggingface/pytorch-image-models,
      timm/models/vision_transformer.py at 0041cb7b: VisionTransformer and
      Block; timm/layers/attention.py at f354b305: Attention; timm/layers/
      mlp.py at 3591fe90: Mlp), with its defaults: class_token, learned
      pos_embed over 1 + (224/16)^2 tokens, qkv_bias, no layer scale, no
      qk_norm, final norm (global_pool 'token').

Format, one tensor a line: NAME DTYPE NDIM DIM... ("#" lines are comments).

usage: /usr/bin/python3 tools/export_keys.py [--out tests/fixtures/export]
"""
import argparse
import os


def write(path, header, rows):
    with open(path, "w") as f:
        for line in header:
            f.write("# " + line + "\n")
        f.write("# NAME DTYPE NDIM DIM...\n")
        for name, dtype, shape in rows:
            f.write(" ".join([name, dtype, str(len(shape))] + [str(d) for d in shape]) + "\n")
    print("wrote", path, len(rows), "tensors")


def torchvision_resnet18():
    import torch
    import torchvision
    m = torchvision.models.resnet18()
    rows = []
    for name, t in m.state_dict().items():
        if name.startswith("fc."):
            continue
        dtype = {torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        rows.append((name, dtype, list(t.shape)))
    header = ["torchvision %s resnet18().state_dict() without fc.* (the export is the"
              % torchvision.__version__,
              "backbone only), written by tools/export_keys.py. The small stem and",
              "1-channel models differ only in conv1.weight: (64, C, 3, 3) instead",
              "of (64, 3, 7, 7) (and no max-pool, which has no tensors)."]
    return header, rows


def timm_vit(img=224, patch=16, dim=192, depth=12, heads=3, mlp_ratio=4.0, in_chans=3):
    hidden = int(dim * mlp_ratio)
    tokens = 1 + (img // patch) ** 2
    # VisionTransformer registers its own parameters before its modules.
    rows = [("cls_token", "F32", [1, 1, dim]),
            ("pos_embed", "F32", [1, tokens, dim]),
            ("patch_embed.proj.weight", "F32", [dim, in_chans, patch, patch]),
            ("patch_embed.proj.bias", "F32", [dim])]
    for i in range(depth):
        b = "blocks.%d." % i
        rows += [(b + "norm1.weight", "F32", [dim]), (b + "norm1.bias", "F32", [dim]),
                 (b + "attn.qkv.weight", "F32", [3 * dim, dim]),
                 (b + "attn.qkv.bias", "F32", [3 * dim]),
                 (b + "attn.proj.weight", "F32", [dim, dim]),
                 (b + "attn.proj.bias", "F32", [dim]),
                 (b + "norm2.weight", "F32", [dim]), (b + "norm2.bias", "F32", [dim]),
                 (b + "mlp.fc1.weight", "F32", [hidden, dim]),
                 (b + "mlp.fc1.bias", "F32", [hidden]),
                 (b + "mlp.fc2.weight", "F32", [dim, hidden]),
                 (b + "mlp.fc2.bias", "F32", [dim])]
    rows += [("norm.weight", "F32", [dim]), ("norm.bias", "F32", [dim])]
    header = ["timm vit_tiny_patch16_224 (patch 16, dim 192, depth 12, heads 3, MLP",
              "ratio 4, 3 channels, 224 px) state_dict with num_classes=0 (no head):",
              "timm is not packaged in Debian, so this list is written out by",
              "tools/export_keys.py from timm's source (huggingface/",
              "pytorch-image-models: timm/models/vision_transformer.py at 0041cb7b,",
              "timm/layers/attention.py at f354b305, timm/layers/mlp.py at 3591fe90)."]
    return header, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..",
                                                  "tests", "fixtures", "export"))
    ap.add_argument("--vit-only", action="store_true", help="skip torchvision")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    write(os.path.join(a.out, "vit_tiny_timm.txt"), *timm_vit())
    if not a.vit_only:
        write(os.path.join(a.out, "resnet18_torchvision.txt"), *torchvision_resnet18())


if __name__ == "__main__":
    main()
