#!/usr/bin/python3
"""bench_train.py: PyTorch (CPU) companion of tools/bench-train.

Times full LeJEPA training steps (forward, backward, AdamW) of the same model,
batch, views and thread count as the C benchmark, which passes the model as
JSON (--model). Prints one JSON object: step_s_median, images_per_s,
peak_rss_mb, threads, torch version and whether oneDNN (mkldnn) is on.
Run by build/tools/bench-train; usable alone with the same arguments.
"""
import argparse
import json
import os
import resource
import statistics
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_lejepa import Model, sigreg  # noqa: E402  (the same model as the fixtures)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="engine config as JSON")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = json.loads(a.model)
    model = Model(cfg)
    model.train()
    n, c = cfg["batch"], cfg["in_channels"]
    xg = torch.randn(cfg["global_views"] * n, c, cfg["global_size"], cfg["global_size"])
    xl = None
    if cfg["local_views"] > 0:
        xl = torch.randn(cfg["local_views"] * n, c, cfg["local_size"], cfg["local_size"])
    labels = torch.randint(0, cfg["n_classes"], (n,))
    enc = list(model.backbone.parameters()) + list(model.projector.parameters())
    opt = torch.optim.AdamW([{"params": enc, "lr": 5e-4, "weight_decay": 5e-4},
                             {"params": model.probe.parameters(), "lr": 1e-3,
                              "weight_decay": 1e-7}])
    k = cfg["proj"][-1]
    times = []
    for step in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        eg = model.backbone(xg)
        embs, projs = [eg], [model.projector(eg)]
        if xl is not None:
            el = model.backbone(xl)
            embs.append(el)
            projs.append(model.projector(el))
        p = torch.cat([q.view(-1, n, k) for q in projs], 0)
        mu = p[:cfg["global_views"]].mean(0)
        inv = (mu - p).square().mean()
        g = torch.Generator().manual_seed(step)
        dirs = torch.randn(k, cfg["slices"], generator=g)
        dirs /= dirs.norm(p=2, dim=0)
        sig = torch.stack([sigreg(p[v], dirs, cfg["knots"], cfg["t_max"],
                                  cfg.get("sigreg_debias", False))
                           for v in range(p.shape[0])]).mean()
        loss = (1 - cfg["lambda"]) * inv + cfg["lambda"] * sig
        emb = torch.cat(embs, 0).detach()
        probe_loss = F.cross_entropy(model.probe(emb), labels.repeat(emb.shape[0] // n))
        (loss + probe_loss).backward()
        opt.step()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    med = statistics.median(times)
    print(json.dumps({
        "step_s_median": med,
        "images_per_s": n / med,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
    }))


if __name__ == "__main__":
    main()
