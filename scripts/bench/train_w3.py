#!/usr/bin/env python3
"""Trains the production-sized model of the peers benchmark's W3 (issue 16):
a LightGBM binary classifier of 400 trees of up to 63 leaves over 20
features, deterministically (fixed seeds, one thread, deterministic=True),
and writes it with a held-out set and LightGBM's own predictions, which are
W3's oracle:

    bin/mlvenv/bin/python scripts/bench/train_w3.py bin/peers-w3

writes bin/peers-w3/lgb-prod.txt and bin/peers-w3/lgb-prod-expected.json
(the same layout as ml/testdata/*-expected.json). `make bench-peers-w3`
installs LightGBM and runs it. Nothing here is committed: the model is about
2 MB.
"""
import json
import os
import sys

import lightgbm as lgb
import numpy as np

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join("bin", "peers-w3")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(16)
n, f = 24000, 20
X = rng.normal(size=(n, f)).astype(np.float32)
X[rng.random(size=X.shape) < 0.03] = np.nan  # missing values: null in the records
Z = np.nan_to_num(X)
logit = (1.2 * Z[:, 0] - 1.5 * Z[:, 1] * Z[:, 2] + np.sin(2 * Z[:, 3]) + 0.8 * np.abs(Z[:, 4])
         - 0.5 * Z[:, 5] * Z[:, 6] + 0.3 * Z[:, 7:12].sum(axis=1) + 0.6 * (Z[:, 12] > 0.5) - 0.4 * Z[:, 13] ** 2)
y = (logit + rng.normal(scale=0.7, size=n) > 0).astype(int)
train, test = slice(0, 20000), slice(20000, n)
params = dict(objective="binary", num_leaves=63, learning_rate=0.05, min_data_in_leaf=20, seed=1,
              deterministic=True, force_row_wise=True, num_threads=1, verbose=-1)
booster = lgb.train(params, lgb.Dataset(X[train], y[train]), num_boost_round=400)
path = os.path.join(out, "lgb-prod.txt")
booster.save_model(path)
loaded = lgb.Booster(model_file=path)  # the expectation comes from the file Go reads
pred = loaded.predict(X[test])
rows = [[None if np.isnan(v) else float(v) for v in row] for row in X[test]]
with open(os.path.join(out, "lgb-prod-expected.json"), "w") as fh:
    json.dump({"features": rows, "predictions": np.asarray(pred, dtype=np.float64).tolist(),
               "lightgbm": lgb.__version__, "trees": loaded.num_trees()}, fh)
print(f"{path}: {loaded.num_trees()} trees, {f} features; {len(rows)} held-out rows with predictions")
