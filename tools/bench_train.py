#!/usr/bin/python3
"""bench_train.py: PyTorch (CPU) companion of tools/bench-train.

Times full LeJEPA training steps (forward, backward, AdamW) of the same model,
batch, views and thread count as the C benchmark, which passes the model as
JSON (--model). Prints one JSON object: step_s_median, images_per_s,
peak_rss_mb, threads, torch version, whether oneDNN (mkldnn) is on and the
formulation timed. Run by build/tools/bench-train; usable alone with the
same arguments.

The PyTorch side is the fastest formulation of the same step found here, as
a user would pick it. Every formulation runs one backbone forward per
resolution group; they differ in memory format and compilation:
  plain              NCHW tensors, eager mode
  channels_last      the model and inputs in NHWC (oneDNN's native layout)
  jit                the backbone traced per group (torch.jit.trace)
  channels_last_jit  both
--formulation auto (the default) times each in its own process (so each
peak RSS is its own) and reports the fastest, with every median under
"formulations".
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ref_lejepa import Model, sigreg  # noqa: E402  (the same model as the fixtures)

FORMULATIONS = ("plain", "channels_last", "jit", "channels_last_jit")


def time_steps(cfg, a, form):
    """Median seconds of a.steps training steps after a.warmup, formulation
    form."""
    torch.manual_seed(0)
    model = Model(cfg)
    model.train()
    n, c = cfg["batch"], cfg["in_channels"]
    xs = [torch.randn(cfg["global_views"] * n, c, cfg["global_size"], cfg["global_size"])]
    if cfg["local_views"] > 0:
        xs.append(torch.randn(cfg["local_views"] * n, c, cfg["local_size"],
                              cfg["local_size"]))
    # the probe's input, as the C step takes it (optim.probe_views): every
    # view, the global ones, or each sample's eval view through the backbone
    # in eval mode after backward
    probe_views = cfg.get("probe_views", "all")
    xe = torch.randn(n, c, cfg["global_size"], cfg["global_size"])
    cl = form.startswith("channels_last")
    if cl:
        model = model.to(memory_format=torch.channels_last)
        xs = [x.contiguous(memory_format=torch.channels_last) for x in xs]
        xe = xe.contiguous(memory_format=torch.channels_last)
    backbones = [model.backbone] * len(xs)
    if form.endswith("jit"):
        # one trace per input shape (a ViT's token count differs per group);
        # the traces share the module's parameters
        with torch.no_grad():
            backbones = [torch.jit.trace(model.backbone, x[:n], check_trace=False)
                         for x in xs]
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
        embs, projs = [], []
        for bb, x in zip(backbones, xs):
            e = bb(x)
            embs.append(e)
            projs.append(model.projector(e))
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
        if probe_views == "eval":
            loss.backward()
            model.backbone.eval()
            with torch.no_grad():
                emb = model.backbone(xe)
            model.backbone.train()
        else:
            emb = torch.cat(embs[:1] if probe_views == "global" else embs, 0).detach()
        probe_loss = F.cross_entropy(model.probe(emb), labels.repeat(emb.shape[0] // n))
        (probe_loss if probe_views == "eval" else loss + probe_loss).backward()
        opt.step()
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def search(a):
    """Each formulation in its own process; the fastest one's JSON, with
    every median (or the error) under "formulations"."""
    results, best = {}, None
    for form in FORMULATIONS:
        cmd = [sys.executable, os.path.abspath(__file__), "--model", a.model,
               "--steps", str(a.steps), "--warmup", str(a.warmup),
               "--threads", str(a.threads), "--formulation", form]
        r = subprocess.run(cmd, capture_output=True, text=True)
        try:
            if r.returncode != 0:
                raise RuntimeError((r.stderr.strip().splitlines() or
                                    ["exit %d" % r.returncode])[-1])
            out = json.loads(r.stdout.strip().splitlines()[-1])
        except (RuntimeError, ValueError, IndexError) as e:
            why = str(e)[:200]     # the answer is one line the C side reads
            results[form] = "failed: " + why
            print("bench_train.py: %s failed: %s" % (form, why), file=sys.stderr)
            continue
        results[form] = out["step_s_median"]
        if best is None or out["step_s_median"] < best["step_s_median"]:
            best = out
    if best is None:
        sys.exit("bench_train.py: every formulation failed")
    best["formulations"] = results
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True, help="engine config as JSON")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--formulation", default="auto", choices=("auto",) + FORMULATIONS)
    a = ap.parse_args()
    if a.formulation == "auto":
        print(json.dumps(search(a)))
        return
    torch.set_num_threads(a.threads)
    cfg = json.loads(a.model)
    med = time_steps(cfg, a, a.formulation)
    print(json.dumps({
        "step_s_median": med,
        "images_per_s": cfg["batch"] / med,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "formulation": a.formulation,
    }))


if __name__ == "__main__":
    main()
