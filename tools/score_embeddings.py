#!/usr/bin/python3
"""score_embeddings.py: an independent score of exported embeddings.

Reads TRAIN.emb.npy / TRAIN.labels.npy and VAL.emb.npy / VAL.labels.npy
(what `lejepa embed` writes), standardises with the train statistics, fits
scikit-learn's multinomial LogisticRegression (lbfgs) for each C of a small
grid on 90% of train, picks C on the held-out 10%, refits on all of train
and prints val top-1. Also prints the DINO kNN (k 20, T 0.07) top-1 in
numpy. Nothing here shares code with lejepa-eval.

    /usr/bin/python3 tools/score_embeddings.py runs/NAME/final/train runs/NAME/final/val
    (Debian: apt-get install python3-numpy python3-sklearn)
"""
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression


def load(prefix):
    return (np.load(prefix + ".emb.npy").astype(np.float64),
            np.load(prefix + ".labels.npy").astype(np.int64))


def knn_top1(xtr, ytr, xva, yva, k=20, temp=0.07, classes=None):
    ntr = xtr / np.linalg.norm(xtr, axis=1, keepdims=True)
    nva = xva / np.linalg.norm(xva, axis=1, keepdims=True)
    classes = classes or int(ytr.max()) + 1
    correct = 0
    for s in range(0, len(nva), 1000):
        sim = nva[s:s + 1000] @ ntr.T
        idx = np.argpartition(-sim, k, axis=1)[:, :k]
        top = np.take_along_axis(sim, idx, 1)
        votes = np.zeros((len(top), classes))
        np.add.at(votes, (np.arange(len(top))[:, None], ytr[idx]), np.exp(top / temp))
        correct += int((votes.argmax(1) == yva[s:s + 1000]).sum())
    return correct / len(yva)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    xtr, ytr = load(sys.argv[1])
    xva, yva = load(sys.argv[2])
    print(f"train {xtr.shape}, val {xva.shape}")
    print(f"knn top1 {knn_top1(xtr, ytr, xva, yva):.4f}")
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-8
    xtr, xva = (xtr - mu) / sd, (xva - mu) / sd
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(xtr))
    hold, fit = perm[:len(xtr) // 10], perm[len(xtr) // 10:]
    best = None
    for c in (0.01, 0.1, 1.0):
        t0 = time.time()
        lr = LogisticRegression(C=c, max_iter=1000).fit(xtr[fit], ytr[fit])
        acc = lr.score(xtr[hold], ytr[hold])
        print(f"C {c:g}: held-out top1 {acc:.4f} ({time.time() - t0:.0f} s)")
        if best is None or acc > best[1]:
            best = (c, acc)
    lr = LogisticRegression(C=best[0], max_iter=1000).fit(xtr, ytr)
    print(f"linear (sklearn LogisticRegression, C {best[0]:g}) val top1 "
          f"{lr.score(xva, yva):.4f}")


if __name__ == "__main__":
    main()
