#!/usr/bin/python3
"""eval_reference.py: independent reference numbers for eval/knn.c and
eval/linprobe.c. Writes overlapping Gaussian clusters (seeded) as embedding
files in the layout `lejepa embed` produces, and what numpy / scikit-learn
compute on them, to tests/fixtures/eval/ (tests/test_knn.c and
tests/test_linprobe.c read them; committed, so CI needs neither library).

    /usr/bin/python3 tools/eval_reference.py [OUT_DIR]
    (Debian: apt-get install python3-numpy python3-sklearn)

Files (PREFIX = clusters_train / clusters_val):
  PREFIX.emb.npy      float32 (N, D)
  PREFIX.labels.npy   int64 for train, int32 for val (both occur in practice)
  clusters_knn_pred.npy  int32 (N_val) kNN predictions
  clusters_expected.json  kNN top-1 (k 20, T 0.07), the smallest gap between
                      the 20th and 21st similarity of any val row (float32
                      rounding cannot reorder the top k when it exceeds
                      4e-6: twice the worst-case error of a 32-term dot
                      product of unit vectors),
                      and for every lambda of the probe grid the sklearn
                      LogisticRegression top-1 on val and its objective.

kNN here is the DINO rule in float64: cosine similarity, the 20 most similar
train rows (stable: lower index first on ties), votes exp(sim / 0.07),
argmax (lowest class on ties).

The probe objective of eval/linprobe.c is mean cross-entropy + lambda/2
||W||^2 with an unpenalised bias; sklearn minimises C * sum(CE) + ||W||^2 / 2,
the same minimiser for C = 1 / (lambda * n). Features are standardised with
the train mean and std (ddof 0), as StandardScaler does.
"""
import json
import os
import sys

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

SEED = 20261125
N_TRAIN, N_VAL, DIM, CLASSES = 2000, 500, 32, 10
CENTER_SCALE = 0.55     # cluster centres ~ N(0, CENTER_SCALE^2 I); noise N(0, I)
OFFSET = 0.5            # common offset so the cosine is not centred
K, TEMPERATURE = 20, 0.07
LAMBDAS = [1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6]


def make_clusters(rng):
    centres = rng.normal(0.0, CENTER_SCALE, (CLASSES, DIM)) + OFFSET

    def draw(n):
        y = rng.integers(0, CLASSES, n)
        x = centres[y] + rng.normal(0.0, 1.0, (n, DIM))
        return x.astype(np.float32), y
    xt, yt = draw(N_TRAIN)
    xv, yv = draw(N_VAL)
    return xt, yt, xv, yv


def knn(xt, yt, xv):
    a = xt.astype(np.float64)
    b = xv.astype(np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    sims = b @ a.T
    order = np.argsort(-sims, axis=1, kind="stable")
    top = order[:, :K]
    top_sim = np.take_along_axis(sims, top, axis=1)
    next_sim = np.take_along_axis(sims, order[:, K:K + 1], axis=1)[:, 0]
    gap = float(np.min(top_sim[:, -1] - next_sim))
    votes = np.zeros((len(b), CLASSES))
    w = np.exp(top_sim / TEMPERATURE)
    for j in range(K):
        np.add.at(votes, (np.arange(len(b)), yt[top[:, j]]), w[:, j])
    return votes.argmax(axis=1), gap


def probe(xt, yt, xv, yv):
    scaler = StandardScaler().fit(xt.astype(np.float64))
    st = scaler.transform(xt.astype(np.float64))
    sv = scaler.transform(xv.astype(np.float64))
    out = []
    n = len(st)
    for lam in LAMBDAS:
        clf = LogisticRegression(multi_class="multinomial", solver="lbfgs",
                                 C=1.0 / (lam * n), tol=1e-10, max_iter=100000)
        clf.fit(st, yt)
        z = st @ clf.coef_.T + clf.intercept_
        z -= z.max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        obj = -logp[np.arange(n), yt].mean() + 0.5 * lam * np.sum(clf.coef_ ** 2)
        top1 = float((clf.predict(sv) == yv).mean())
        out.append({"lambda": lam, "C": 1.0 / (lam * n), "top1": top1,
                    "objective": float(obj), "n_iter": int(clf.n_iter_[0])})
        print(f"lambda {lam:g}: top1 {top1:.4f} objective {obj:.6f} "
              f"iterations {clf.n_iter_[0]}")
    return out


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
        "eval")
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(SEED)
    xt, yt, xv, yv = make_clusters(rng)
    np.save(os.path.join(out, "clusters_train.emb.npy"), xt)
    np.save(os.path.join(out, "clusters_train.labels.npy"), yt.astype("<i8"))
    np.save(os.path.join(out, "clusters_val.emb.npy"), xv)
    np.save(os.path.join(out, "clusters_val.labels.npy"), yv.astype("<i4"))

    pred, gap = knn(xt, yt, xv)
    np.save(os.path.join(out, "clusters_knn_pred.npy"), pred.astype("<i4"))
    knn_top1 = float((pred == yv).mean())
    print(f"knn top1 {knn_top1:.4f}, smallest top-k gap {gap:.3g}")
    expected = {
        "generator": "tools/eval_reference.py",
        "numpy": np.__version__, "sklearn": sklearn.__version__,
        "seed": SEED, "n_train": N_TRAIN, "n_val": N_VAL, "dim": DIM,
        "classes": CLASSES,
        "knn": {"k": K, "temperature": TEMPERATURE, "top1": knn_top1,
                "min_topk_gap": gap},
        "linear": probe(xt, yt, xv, yv),
    }
    with open(os.path.join(out, "clusters_expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
