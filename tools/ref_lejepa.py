#!/usr/bin/python3
"""ref_lejepa.py: the PyTorch reference of the LeJEPA engine.

For every case written by build/tools/fixture-inputs (DIR/lejepa_<case>_in
and _weights .safetensors) it builds the same ResNet or ViT + projector +
probe in PyTorch, in float64, loads our initial weights, and writes
DIR/lejepa_<case>_ref.safetensors with each loss term, every parameter
gradient, the BatchNorm running statistics after the first step, and the
losses of CASE_STEPS AdamW steps, then the eval-mode embeddings of the
global views (for a ViT also its patch features (B, D, GH, GW) and the last
block's CLS attention (B, NH, GH*GW)). It also records, per parameter, the mean
and std of PyTorch's own initialisation of the same model (init.<name>),
which the C test compares with ours.

Run with Debian's python3-torch: /usr/bin/python3 tools/ref_lejepa.py DIR
(tools/make-fixtures.sh does both steps).
"""
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32,
          "I64": np.int64, "U8": np.uint8}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen])
    meta = header.pop("__metadata__", {})
    data = raw[8 + hlen:]
    out = {}
    for name, t in header.items():
        b, e = t["data_offsets"]
        arr = np.frombuffer(data[b:e], dtype=DTYPES[t["dtype"]]).reshape(t["shape"])
        out[name] = torch.from_numpy(arr.copy())
    return out, meta


def write_safetensors(path, tensors, meta):
    header, blobs, off = {}, [], 0
    if meta:
        header["__metadata__"] = meta
    for name, t in tensors.items():
        arr = t.detach().cpu().numpy()
        kind = {np.dtype(np.float64): "F64", np.dtype(np.float32): "F32",
                np.dtype(np.int32): "I32", np.dtype(np.int64): "I64"}[arr.dtype]
        b = arr.astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": kind, "shape": list(arr.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride, 0, bias=False),
                nn.BatchNorm2d(cout))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        s = x if self.downsample is None else self.downsample(x)
        return F.relu(y + s)


class ResNet(nn.Module):
    """torchvision's ResNet layout and initialisation, with our stems."""

    def __init__(self, cfg):
        super().__init__()
        w, d = cfg["widths"], cfg["depths"]
        self.small = cfg["stem"] == "small"
        if self.small:
            self.conv1 = nn.Conv2d(cfg["in_channels"], w[0], 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(cfg["in_channels"], w[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(w[0])
        cin = w[0]
        for s in range(len(w)):
            blocks = []
            for b in range(d[s]):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks.append(BasicBlock(cin, w[s], stride))
                cin = w[s]
            setattr(self, "layer%d" % (s + 1), nn.Sequential(*blocks))
        self.n_stages = len(w)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        if not self.small:
            x = F.max_pool2d(x, 3, 2, 1)
        for s in range(self.n_stages):
            x = getattr(self, "layer%d" % (s + 1))(x)
        return x.mean(dim=(2, 3))


class Attention(nn.Module):
    """timm's Attention: qkv linear, softmax(q k^T / sqrt(HD)) v, proj."""

    def __init__(self, dim, heads):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.last_attn = None

    def forward(self, x):
        b, t, c = x.shape
        qkv = self.qkv(x).reshape(b, t, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        self.last_attn = attn
        x = (attn @ v).transpose(1, 2).reshape(b, t, c)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, cin, dim, patch):
        super().__init__()
        self.proj = nn.Conv2d(cin, dim, patch, patch)


class ViT(nn.Module):
    """timm's VisionTransformer (class token, pre-norm blocks, final norm,
    LayerNorm eps 1e-6) with its init_weights, in plain torch. Crops are
    zero-padded at the bottom/right to a multiple of the patch; the position
    grid is resized bicubically (align_corners=False) to the crop's grid."""

    def __init__(self, cfg):
        super().__init__()
        d, p = cfg["dim"], cfg["patch"]
        self.patch, self.dim = p, d
        self.g0 = -(-cfg["global_size"] // p)
        self.cls_mean = cfg["embed"] == "cls_mean"
        self.patch_embed = PatchEmbed(cfg["in_channels"], d, p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.g0 ** 2, d))
        hidden = int(d * cfg["mlp_ratio"])
        self.blocks = nn.ModuleList(
            [Block(d, cfg["heads"], hidden) for _ in range(cfg["depth"])])
        self.norm = nn.LayerNorm(d, eps=1e-6)
        # timm init_weights (mode ''): pos_embed trunc_normal .02, cls_token
        # normal 1e-6, every nn.Linear trunc_normal .02 with zero bias; the
        # patch Conv2d keeps PyTorch's default.
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.blocks.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def tokens(self, x):
        p = self.patch
        h, w = x.shape[2], x.shape[3]
        x = F.pad(x, (0, (-w) % p, 0, (-h) % p))
        t = self.patch_embed.proj(x)                       # (B, D, GH, GW)
        gh, gw = t.shape[2], t.shape[3]
        t = t.flatten(2).transpose(1, 2)
        pos = self.pos_embed[:, 1:].reshape(1, self.g0, self.g0, self.dim)
        pos = pos.permute(0, 3, 1, 2)
        if (gh, gw) != (self.g0, self.g0):
            pos = F.interpolate(pos, size=(gh, gw), mode="bicubic",
                                align_corners=False)
        pos = pos.permute(0, 2, 3, 1).reshape(1, gh * gw, self.dim)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(t.shape[0], -1, -1)
        x = torch.cat([cls, t + pos], 1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), gh, gw

    def forward(self, x):
        x, _, _ = self.tokens(x)
        if self.cls_mean:
            return torch.cat([x[:, 0], x[:, 1:].mean(1)], 1)
        return x[:, 0]


def emb_dim(cfg):
    if cfg.get("backbone", "resnet") == "vit":
        return cfg["dim"] * (2 if cfg["embed"] == "cls_mean" else 1)
    return cfg["widths"][-1]


class Model(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        vit = cfg.get("backbone", "resnet") == "vit"
        self.backbone = ViT(cfg) if vit else ResNet(cfg)
        layers, cin = [], emb_dim(cfg)
        for i, width in enumerate(cfg["proj"]):
            layers.append(nn.Linear(cin, width))
            if i + 1 < len(cfg["proj"]):
                layers += [nn.BatchNorm1d(width), nn.ReLU()]
            cin = width
        self.projector = nn.Sequential(*layers)
        emb = emb_dim(cfg)
        self.probe = nn.Sequential(nn.LayerNorm(emb), nn.Linear(emb, cfg["n_classes"]))


def sigreg(z, dirs, knots, t_max, debias=False):
    """The official formulation with (N, M, T) tensors (DESIGN.md §5);
    debias: the U-statistic form of trainer/sigreg.h, which replaces
    |C + iS|^2 by (N |C + iS|^2 - 1) / (N - 1)."""
    t = torch.linspace(0, t_max, knots, dtype=z.dtype)
    dt = t_max / (knots - 1)
    w = torch.full((knots,), 2 * dt, dtype=z.dtype)
    w[0] = w[-1] = dt
    phi = torch.exp(-0.5 * t ** 2)
    xt = (z @ dirs).unsqueeze(2) * t
    c, s = torch.cos(xt).mean(0), torch.sin(xt).mean(0)
    if debias:
        n = z.shape[0]
        err = (n * (c ** 2 + s ** 2) - 1) / (n - 1) - 2 * c * phi + phi ** 2
    else:
        err = (c - phi) ** 2 + s ** 2
    return ((err * (w * phi)).sum(1) * z.shape[0]).mean()


def step_losses(model, cfg, inp, labels, dirs):
    n = cfg["batch"]
    embs, projs = [], []
    for key in ("input.global", "input.local"):
        if key in inp:
            e = model.backbone(inp[key])
            embs.append(e)
            projs.append(model.projector(e))
    k = projs[0].shape[1]
    p = torch.cat([x.view(-1, n, k) for x in projs], 0)          # (V, N, K)
    mu = p[:cfg["global_views"]].mean(0)
    inv = (mu - p).square().mean()
    sig = torch.stack([sigreg(p[v], dirs, cfg["knots"], cfg["t_max"],
                              cfg.get("sigreg_debias", False))
                       for v in range(p.shape[0])]).mean()
    lam = cfg["lambda"]
    loss = (1 - lam) * inv + lam * sig
    emb = torch.cat(embs, 0).detach()
    rows = emb.shape[0]
    probe_labels = labels.repeat(rows // n)
    logits = model.probe(emb)
    probe_loss = F.cross_entropy(logits, probe_labels)
    return loss, inv, sig, probe_loss


def run_case(d, case):
    inp, meta = read_safetensors("%s/lejepa_%s_in.safetensors" % (d, case))
    weights, _ = read_safetensors("%s/lejepa_%s_weights.safetensors" % (d, case))
    cfg = json.loads(meta["case"])
    torch.manual_seed(0)
    model = Model(cfg).double()
    out = {}
    for name, t in model.state_dict().items():     # PyTorch's own init
        if name.endswith("num_batches_tracked"):
            continue
        out["init_mean." + name] = t.double().mean().reshape(1)
        out["init_std." + name] = t.double().std(unbiased=False).reshape(1)
    state = {k: v.double() for k, v in weights.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected, unexpected
    assert all(m.endswith("num_batches_tracked") for m in missing), missing
    model.train()
    x = {k: v.double() for k, v in inp.items() if k.startswith("input.")}
    labels = inp["labels"].long()
    enc = list(model.backbone.parameters()) + list(model.projector.parameters())
    opt = torch.optim.AdamW([
        {"params": enc, "lr": cfg["lr_encoder"], "weight_decay": cfg["wd_encoder"]},
        {"params": model.probe.parameters(), "lr": cfg["lr_probe"],
         "weight_decay": cfg["wd_probe"]}], betas=(0.9, 0.999), eps=1e-8)
    losses = []
    for s in range(cfg["steps"]):
        opt.zero_grad()
        loss, inv, sig, probe_loss = step_losses(model, cfg, x, labels,
                                                 inp["dirs.%d" % s].double())
        (loss + probe_loss).backward()
        if s == 0:
            out["loss"] = loss.detach().reshape(1)
            out["inv"] = inv.detach().reshape(1)
            out["sigreg"] = sig.detach().reshape(1)
            out["probe_loss"] = probe_loss.detach().reshape(1)
            for name, prm in model.named_parameters():
                out["grad." + name] = prm.grad.detach().clone()
            for name, buf in model.named_buffers():
                if not name.endswith("num_batches_tracked"):
                    out["state." + name] = buf.detach().clone()
        losses.append([loss.item(), probe_loss.item()])
        opt.step()
    out["step_losses"] = torch.tensor(losses, dtype=torch.float64)
    model.eval()
    with torch.no_grad():                # eval mode: running statistics
        out["eval_emb"] = model.backbone(x["input.global"])
        if isinstance(model.backbone, ViT):
            tok, gh, gw = model.backbone.tokens(x["input.global"])
            out["eval_feat"] = tok[:, 1:].transpose(1, 2).reshape(
                tok.shape[0], -1, gh, gw).contiguous()
            attn = model.backbone.blocks[-1].attn.last_attn
            out["eval_attn"] = attn[:, :, 0, 1:].contiguous()
    for name, prm in model.named_parameters():
        out["final." + name] = prm.detach().clone()
    write_safetensors("%s/lejepa_%s_ref.safetensors" % (d, case), out,
                      {"torch": torch.__version__, "case": meta["case"]})
    print("ref_lejepa: case %s: loss %.6f inv %.6f sigreg %.6f probe %.6f"
          % (case, out["loss"].item(), out["inv"].item(), out["sigreg"].item(),
             out["probe_loss"].item()))


CASES = ("local", "global", "vit", "vit_mean")


def main():
    if len(sys.argv) < 2:
        sys.exit("usage: ref_lejepa.py DIR [CASE ...]")
    torch.set_num_threads(1)
    for case in sys.argv[2:] or CASES:
        run_case(sys.argv[1], case)


if __name__ == "__main__":
    main()
