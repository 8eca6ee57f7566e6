#!/usr/bin/python3
"""ref_spearman.py: writes tests/fixtures/sweep/spearman.txt, Spearman's rho
computed by SciPy (scipy.stats.spearmanr, ties as average ranks) for seeded
cases with and without ties, for tests/test_sweep.c. Run by hand:
    /usr/bin/python3 tools/ref_spearman.py tests/fixtures/sweep/spearman.txt
File format (text, one case per line after the header):
    n rho x_0 .. x_{n-1} y_0 .. y_{n-1}
rho is 'nan' where SciPy gives nan (a constant side)."""
import sys
import warnings

import numpy as np
from scipy.stats import ConstantInputWarning, spearmanr

# the constant case is in the fixture on purpose
warnings.filterwarnings("ignore", category=ConstantInputWarning)


def cases():
    rng = np.random.default_rng(15)
    yield [1, 2, 3, 4, 5], [5, 6, 7, 8, 7]
    yield [1, 2, 3, 4], [4, 3, 2, 1]
    yield [0.5, 0.5, 0.5, 1.0], [1.0, 2.0, 3.0, 4.0]
    yield [2.0, 2.0, 1.0, 1.0, 3.0, 3.0], [1.0, 1.0, 2.0, 3.0, 2.0, 1.0]
    yield [1.0, 1.0, 1.0], [1.0, 2.0, 3.0]
    yield [0.3, 0.1], [0.9, 0.2]
    for n in (7, 12, 30):
        yield list(rng.normal(size=n)), list(rng.normal(size=n))
    for n in (9, 25, 40):
        # few distinct values: many ties on both sides
        yield (list(rng.integers(0, 4, size=n).astype(float)),
               list(rng.integers(0, 3, size=n).astype(float) * 0.25))
    x = rng.normal(size=20)
    yield list(x), list(-2.0 * x + 0.1 * rng.normal(size=20))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/sweep/spearman.txt"
    with open(out, "w") as f:
        f.write("# lejepa spearman fixture v1: n rho x[n] y[n] "
                "(scipy.stats.spearmanr, tools/ref_spearman.py)\n")
        for x, y in cases():
            rho = spearmanr(x, y).correlation
            vals = " ".join(repr(float(v)) for v in list(x) + list(y))
            f.write("%d %s %s\n" % (len(x), repr(float(rho)), vals))


if __name__ == "__main__":
    main()
