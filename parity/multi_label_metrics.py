#!/usr/bin/env python3
"""Writes crates/tiny-learner/tests/fixtures/multi_label_metrics.json: fastai's multi-label metrics on seeded
logits and multi-hot targets, for tiny's AccuracyMulti, F1ScoreMulti and MultiLabelInterpretation to replay.

    pip install numpy==2.4.6 scikit-learn==1.9.1 && python3 parity/multi_label_metrics.py

fastai computes `accuracy_multi(inp, targ, thresh, sigmoid=True)` as `((inp.sigmoid() > thresh) ==
targ.bool()).float().mean()` (fastai/metrics.py), written out here in numpy; `F1ScoreMulti(thresh, sigmoid=True,
average='macro')` calls scikit-learn's `f1_score` on the thresholded rows with its default `zero_division`, and the
per-class confusion is scikit-learn's `multilabel_confusion_matrix`. fastai itself is not needed: these are its
formulas and the library it calls.
"""
import json
from pathlib import Path

import numpy as np
import sklearn
from sklearn.metrics import f1_score, multilabel_confusion_matrix

ROOT = Path(__file__).resolve().parent.parent


def case(name, logits, flags, thresh):
    probs = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    pred = (probs > thresh).astype(np.int64)
    return dict(
        name=name,
        shape=list(logits.shape),
        logits=[float(v) for v in logits.astype(np.float32).ravel()],
        flags=[int(v) for v in flags.ravel()],
        thresh=thresh,
        accuracy_multi=float((pred == flags.astype(bool)).mean()),
        f1_macro=float(f1_score(flags, pred, average="macro")),
        confusion=multilabel_confusion_matrix(flags, pred).tolist(),
    )


def main():
    rng = np.random.default_rng(28)
    cases = []
    for i, (n, c, thresh) in enumerate([(40, 5, 0.5), (33, 7, 0.3), (64, 3, 0.8), (9, 12, 0.5)]):
        logits = rng.normal(0.0, 2.0, size=(n, c))
        flags = (rng.random((n, c)) < 0.35).astype(np.int64)
        # Make the logits agree with the flags more often than not, as a trained model's do.
        logits += np.where(flags == 1, 1.5, -1.5)
        cases.append(case(f"random_{i}", logits, flags, thresh))
    # A class never present and never predicted (scikit-learn's zero division), and one always present.
    logits = rng.normal(0.0, 2.0, size=(20, 4))
    flags = (rng.random((20, 4)) < 0.5).astype(np.int64)
    logits[:, 1], flags[:, 1] = -30.0, 0
    flags[:, 3] = 1
    cases.append(case("absent_and_constant_classes", logits, flags, 0.5))
    out = ROOT / "crates/tiny-learner/tests/fixtures/multi_label_metrics.json"
    meta = dict(sklearn=sklearn.__version__, numpy=np.__version__)
    out.write_text(json.dumps(dict(meta=meta, cases=cases), indent=1) + "\n")
    print(f"{out.relative_to(ROOT)}: {len(cases)} cases")


if __name__ == "__main__":
    main()
