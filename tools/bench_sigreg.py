#!/usr/bin/python3
"""bench_sigreg.py: the PyTorch side of tools/bench_sigreg (which runs it as a
subprocess and prints the ratio). It times the official formulation of
SIGReg (LeJEPA's MINIMAL.md / lejepa.multivariate.SlicingUnivariateTest with
EppsPulley): (V, N, M, T) tensors, cos/sin via autograd, directions redrawn
from a generator seeded by the step, forward + backward for all views.

With --inputs DIR it also evaluates the loss on DIR/z.f32 (V, N, K) and
DIR/a.f32 (K, M) (raw little-endian float32, written by the C program) and
writes the gradient to DIR/dz_torch.f32, so the C side can check that both
compute the same thing. Prints one JSON object on stdout.

Run with Debian's python3-torch: /usr/bin/python3 tools/bench_sigreg.py
"""
import argparse
import json
import os
import statistics
import time

import numpy as np
import torch


class SIGReg(torch.nn.Module):
    """The official formulation: trapezoid on [0, t_max], doubled weights."""

    def __init__(self, knots, t_max, slices):
        super().__init__()
        t = torch.linspace(0, t_max, knots, dtype=torch.float32)
        dt = t_max / (knots - 1)
        weights = torch.full((knots,), 2 * dt, dtype=torch.float32)
        weights[[0, -1]] = dt
        window = torch.exp(-t.square() / 2.0)
        self.register_buffer("t", t)
        self.register_buffer("phi", window)
        self.register_buffer("weights", weights * window)
        self.slices = slices
        self.generator = torch.Generator()

    def directions(self, k_dim, step):
        self.generator.manual_seed(step)
        a = torch.randn(k_dim, self.slices, generator=self.generator)
        return a.div_(a.norm(p=2, dim=0))

    def forward(self, proj, a):
        x_t = (proj @ a).unsqueeze(-1) * self.t  # (V, N, M, T)
        err = (x_t.cos().mean(-3) - self.phi).square() \
            + x_t.sin().mean(-3).square()
        statistic = (err @ self.weights) * proj.size(-2)  # (V, M)
        return statistic.mean()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--views", type=int, default=8)
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--k", type=int, default=128)
    p.add_argument("--slices", type=int, default=1024)
    p.add_argument("--knots", type=int, default=17)
    p.add_argument("--t-max", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--reps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--inputs", default="")
    args = p.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    sig = SIGReg(args.knots, args.t_max, args.slices)
    proj = torch.randn(args.views, args.n, args.k, requires_grad=True)

    times = []
    for rep in range(args.warmup + args.reps):
        start = time.perf_counter()
        proj.grad = None
        loss = sig(proj, sig.directions(args.k, rep))
        loss.backward()
        elapsed = time.perf_counter() - start
        if rep >= args.warmup:
            times.append(elapsed * 1e3)

    out = {
        "torch_version": torch.__version__,
        "threads": torch.get_num_threads(),
        "ms_median": statistics.median(times),
        "ms_min": min(times),
    }
    if args.inputs:
        shape = (args.views, args.n, args.k)
        z = np.fromfile(os.path.join(args.inputs, "z.f32"), dtype="<f4")
        a = np.fromfile(os.path.join(args.inputs, "a.f32"), dtype="<f4")
        zt = torch.from_numpy(z.reshape(shape).copy()).requires_grad_(True)
        at = torch.from_numpy(a.reshape(args.k, args.slices).copy())
        value = sig(zt, at)
        value.backward()
        zt.grad.numpy().astype("<f4").tofile(
            os.path.join(args.inputs, "dz_torch.f32"))
        out["value"] = value.item()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
