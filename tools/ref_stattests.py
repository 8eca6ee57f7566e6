#!/usr/bin/python3
"""ref_stattests.py: writes the SciPy reference values that tests/test_stat.c
matches `lejepa-stat --tests ... --directions` against (tests/fixtures/stat/),
so CI needs no SciPy. Needs Debian 12's python3-scipy (1.10, which has
goodness_of_fit) and python3-numpy:

    /usr/bin/python3 tools/ref_stattests.py [OUT_DIR]

Files (seeded; commit them):
  dirs.npy          (K, M) float64 directions, NOT unit length (the program
                    scales every column to unit length, as here)
  gauss.npy         (N, K) float32 standard normal rows
  heavy.npy         (N, K) float32, clearly not Gaussian: skewed, heavy-
                    tailed and bimodal columns, and one far outlier (-45)
                    that the identity direction in column 0 projects as is,
                    so the log-CDF's far tail is exercised
  NAME_ref.npy      (8, M) float64 per-slice values of NAME.npy, rows in the
                    order of ROWS below

The projections are X = Z.astype(float64) @ (A / ||A||_col), in double; the
tests compare to 1e-9 relative.
"""
import os
import sys

import numpy as np
from scipy import stats

ROWS = ["ad", "cvm", "watson", "jb", "mean", "variance", "skewness", "kurtosis"]
N, K, M = 300, 6, 5

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "stat")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(20251)

dirs = rng.standard_normal((K, M)) * 2.0
dirs[:, 0] = 0.0
dirs[0, 0] = 3.0          # the identity on column 0, scaled

gauss = rng.standard_normal((N, K)).astype(np.float32)
heavy = np.empty((N, K))
heavy[:, 0] = rng.standard_t(3, N)
heavy[:, 1] = rng.exponential(1.0, N) - 1.0
heavy[:, 2] = np.where(rng.random(N) < 0.5, -2.0, 2.0) + 0.3 * rng.standard_normal(N)
heavy[:, 3] = rng.laplace(0.0, 1.0, N)
heavy[:, 4] = rng.uniform(-3.0, 3.0, N)
heavy[:, 5] = 2.5 * rng.standard_normal(N)
heavy[7, 0] = -45.0
heavy = heavy.astype(np.float32)


def watson(x):
    """U^2 = W^2 - n (mean F - 1/2)^2 with W^2 the Cramer-von Mises
    statistic, F the N(0, 1) CDF."""
    x = np.sort(x)
    n = len(x)
    f = stats.norm.cdf(x)
    w2 = 1 / (12 * n) + np.sum(((2 * np.arange(1, n + 1) - 1) / (2 * n) - f) ** 2)
    return w2 - n * (f.mean() - 0.5) ** 2


def slice_values(x):
    # goodness_of_fit's statistic does not depend on the Monte Carlo draws
    # behind its p-value: few draws keep the script fast.
    ad = stats.goodness_of_fit(stats.norm, x, known_params={"loc": 0, "scale": 1},
                               statistic="ad", n_mc_samples=99,
                               random_state=0).statistic
    cvm = stats.cramervonmises(x, "norm").statistic
    jb = stats.jarque_bera(x).statistic
    d = stats.describe(x)
    return [ad, cvm, watson(x), jb, d.mean, d.variance, d.skewness, d.kurtosis]


a = dirs / np.linalg.norm(dirs, axis=0)
np.save(os.path.join(out, "dirs.npy"), dirs)
for name, z in (("gauss", gauss), ("heavy", heavy)):
    x = z.astype(np.float64) @ a
    ref = np.ascontiguousarray(np.array([slice_values(x[:, m]) for m in range(M)]).T)
    np.save(os.path.join(out, name + ".npy"), z)
    np.save(os.path.join(out, name + "_ref.npy"), ref)
    print("ref_stattests: %s: means over slices: %s" % (
        name, ", ".join("%s %.6g" % (r, v) for r, v in zip(ROWS, ref.mean(axis=1)))))
