#!/usr/bin/env python3
"""Trains small real XGBoost and LightGBM models and writes them, with a
held-out set and the libraries' own predictions, to ml/testdata/. The Go
evaluators' tests check that streamer predicts the same (within 1e-5).

    make ml-testdata

(xgboost 3.2.0 is the newest release for the Python 3.11 here; 3.3+ needs
Python 3.12. lightgbm 4.7.0 installs on 3.11.)
"""
import json
import os

import lightgbm as lgb
import numpy as np
import xgboost as xgb

out = os.path.join(os.path.dirname(__file__), "..", "..", "ml", "testdata")
rng = np.random.default_rng(7)
n, f = 2000, 6
X = rng.normal(size=(n, f)).astype(np.float32)
# Some missing values, which trees route by default_left.
X[rng.random(size=X.shape) < 0.05] = np.nan
logit = 1.5 * np.nan_to_num(X[:, 0]) - 2 * np.nan_to_num(X[:, 1]) * np.nan_to_num(X[:, 2]) + np.sin(np.nan_to_num(X[:, 3]))
y_bin = (logit + rng.normal(scale=0.5, size=n) > 0).astype(int)
y_reg = logit + rng.normal(scale=0.1, size=n)
y_cls = np.digitize(logit, [-1.0, 1.0])  # 3 classes

train, test = slice(0, 1600), slice(1600, 2000)
params = dict(n_estimators=30, max_depth=4, learning_rate=0.3, random_state=1)
models = {
    "binary": xgb.XGBClassifier(objective="binary:logistic", **params).fit(X[train], y_bin[train]),
    "regression": xgb.XGBRegressor(objective="reg:squarederror", **params).fit(X[train], y_reg[train]),
    "multiclass": xgb.XGBClassifier(objective="multi:softprob", **params).fit(X[train], y_cls[train]),
}
for name, m in models.items():
    m.get_booster().save_model(os.path.join(out, f"xgb-{name}.json"))
    if name == "regression":
        pred = m.predict(X[test])
    else:
        pred = m.predict_proba(X[test])
        if name == "binary":
            pred = pred[:, 1]
    rows = [[None if np.isnan(v) else float(v) for v in row] for row in X[test]]
    with open(os.path.join(out, f"xgb-{name}-expected.json"), "w") as fh:
        json.dump({"features": rows, "predictions": np.asarray(pred, dtype=np.float64).tolist(),
                   "xgboost": xgb.__version__}, fh)

# LightGBM, on the same data. Everything below draws from its own generator,
# so the XGBoost models above stay as they were.
lrng = np.random.default_rng(11)
# A categorical feature (codes 0..7, some missing) with its own effect.
cat = lrng.integers(0, 8, size=n).astype(np.float32)
cat[lrng.random(size=n) < 0.05] = np.nan
X_cat = np.column_stack([X, cat]).astype(np.float32)
y_cat = logit + np.array([-2, 1, 0, 3, -1, 2, 0.5, -3])[np.nan_to_num(cat).astype(int)] + lrng.normal(scale=0.1, size=n)
X_filled = np.nan_to_num(X)  # no NaN: missing type None, or Zero with zero_as_missing
y_count = lrng.poisson(np.exp(np.clip(logit, -3, 3) / 2))

lparams = dict(n_estimators=30, num_leaves=15, learning_rate=0.2, random_state=1, n_jobs=1, verbose=-1)
lgb_models = {
    # name: (estimator, training features, labels, extra fit arguments)
    "binary": (lgb.LGBMClassifier(objective="binary", **lparams), X, y_bin, {}),
    "regression": (lgb.LGBMRegressor(objective="regression", **lparams), X, y_reg, {}),
    "multiclass": (lgb.LGBMClassifier(objective="multiclass", **lparams), X, y_cls, {}),
    "categorical": (lgb.LGBMRegressor(objective="regression", min_data_per_group=20, cat_smooth=1, **lparams),
                    X_cat, y_cat, {"categorical_feature": [f]}),
    "zero": (lgb.LGBMRegressor(objective="huber", zero_as_missing=True, **lparams), X_filled, y_reg, {}),
    "rf": (lgb.LGBMClassifier(objective="binary", boosting_type="rf", subsample=0.7, subsample_freq=1, **lparams),
           X_filled, y_bin, {}),
    "poisson": (lgb.LGBMRegressor(objective="poisson", **lparams), X, y_count, {}),
}


def thresholds(booster):
    """The numerical split thresholds of each feature, from the model dump."""
    found = {}

    def walk(node):
        if "split_feature" not in node:
            return
        if node["decision_type"] == "<=":
            found.setdefault(node["split_feature"], []).append(node["threshold"])
        walk(node["left_child"])
        walk(node["right_child"])

    for t in booster.dump_model()["tree_info"]:
        walk(t["tree_structure"])
    return found


def edge_rows(booster, base, categorical, count=60):
    """Held-out rows with values where evaluators tend to differ: the
    float32 nearest a split threshold and one float32 step either side
    (LightGBM nudges thresholds up, so no float32 lands exactly on one),
    zero, -0, values inside LightGBM's zero threshold (1e-35), NaN, and, for
    a categorical feature, unseen, negative, fractional and huge codes."""
    er = np.random.default_rng(13)
    th = thresholds(booster)
    rows = base[er.integers(0, len(base), size=count)].copy()
    for row in rows:
        for j in range(row.size):
            if er.random() < 0.5:
                continue
            if j in categorical:
                row[j] = er.choice([0, 3, 7, 8, 31, 32, 40, 100, -1, -0.5, 0.5, 3.7, np.nan, 3e9])
                continue
            choices = [0.0, -0.0, 1e-40, -1e-40, 1e-30, np.nan]
            if th.get(j):
                t = np.float32(er.choice(th[j]))
                choices += [t, t, np.nextafter(t, np.float32(np.inf)), np.nextafter(t, np.float32(-np.inf))]
            row[j] = er.choice(np.array(choices, dtype=np.float32))
    return rows


for name, (m, Xm, y, fit) in lgb_models.items():
    m.fit(Xm[train], y[train], **fit)
    path = os.path.join(out, f"lgb-{name}.txt")
    m.booster_.save_model(path)
    # The expectation comes from the saved file, which is what Go reads.
    loaded = lgb.Booster(model_file=path)
    categorical = set(fit.get("categorical_feature", []))
    Xt = np.vstack([Xm[test], edge_rows(loaded, Xm[test], categorical)]).astype(np.float32)
    pred = loaded.predict(Xt)
    if isinstance(m, lgb.LGBMClassifier):
        trained = m.predict_proba(Xm[test])
        trained = trained[:, 1] if trained.shape[1] == 2 else trained
    else:
        trained = m.predict(Xm[test])
    if not np.allclose(pred[:len(trained)], trained, rtol=0, atol=1e-12):
        raise SystemExit(f"lgb-{name}: the saved model predicts differently from the trained one")
    rows = [[None if np.isnan(v) else float(v) for v in row] for row in Xt]
    with open(os.path.join(out, f"lgb-{name}-expected.json"), "w") as fh:
        json.dump({"features": rows, "predictions": np.asarray(pred, dtype=np.float64).tolist(),
                   "lightgbm": lgb.__version__}, fh)

# A linear-tree model, which the Go evaluator must refuse rather than
# score wrongly; no expectations.
lgb.LGBMRegressor(objective="regression", linear_tree=True, n_estimators=3, num_leaves=4, random_state=1, n_jobs=1,
                  verbose=-1).fit(X_filled[train], y_reg[train]).booster_.save_model(os.path.join(out, "lgb-linear.txt"))


def stump(header="", decision_type=2, threshold="0.5", leaves="-1 1", cats=""):
    """A one-split model written by hand: feature 0 <= threshold goes to the
    first leaf. Each decision the Go evaluator makes is pinned by one."""
    num_cat = "num_cat=1\ncat_boundaries=0 2\ncat_threshold=" + cats if cats else "num_cat=0"
    return ("tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx=1\n"
            f"feature_names=a b\nfeature_infos=none none\n{header}\n\nTree=0\nnum_leaves=2\n{num_cat}\n"
            f"split_feature=0\nthreshold={threshold}\ndecision_type={decision_type}\nleft_child=-1\nright_child=-2\n"
            f"leaf_value={leaves}\n\n\nend of trees\n")


# (name, model, values of feature 0); decision_type 2: missing None,
# 8 and 10: NaN (right, left), 4 and 6: Zero, 9: categorical.
categories = ["3", "3.9", "33", "2", "4", "0", "-0.5", "-3", "64", "1000", "3e9", "inf", "nan"]
stumps = [
    ("numerical, missing None", stump("objective=regression"), ["0.25", "0.5", "0.75", "nan", "0", "1e-40"]),
    ("missing None reads NaN as 0", stump(threshold="-0.5"), ["nan", "-0.75"]),
    ("missing NaN, default left", stump(decision_type=10, threshold="-0.5"), ["nan", "0", "-0.5", "-0.25"]),
    ("missing NaN, default right", stump(decision_type=8), ["nan", "0", "0.5", "0.75"]),
    ("missing Zero, default right", stump(decision_type=4), ["0", "-0", "1e-40", "nan", "0.5", "-1"]),
    ("missing Zero, default left", stump(decision_type=6, threshold="-0.5"), ["0", "nan", "1e-30", "-0.5"]),
    ("threshold within 1e-35 of zero", stump(decision_type=8, threshold="1e-37"), ["5e-36", "-5e-36", "2e-35"]),
    ("binary sigmoid:2", stump("objective=binary sigmoid:2"), ["0.25", "0.75"]),
    ("regression sqrt", stump("objective=regression sqrt", leaves="-3 2"), ["0.25", "0.75"]),
    ("poisson", stump("objective=poisson"), ["0.25", "0.75"]),
    ("cross_entropy_lambda", stump("objective=cross_entropy_lambda"), ["0.25", "0.75"]),
    ("custom objective: raw scores", stump(), ["0.25", "0.75"]),
    ("categories 0, 3 and 33", stump(decision_type=9, threshold="0", cats="9 2"), categories),
]
cases = []
for name, model, xs in stumps:
    X1 = np.array([[float(x), 0] for x in xs], dtype=np.float32)
    pred = lgb.Booster(model_str=model).predict(X1)
    cases.append({"name": name, "model": model, "x": xs, "predictions": pred.tolist()})
with open(os.path.join(out, "lgb-stumps.json"), "w") as fh:
    json.dump({"cases": cases, "lightgbm": lgb.__version__}, fh, indent=1)

print("wrote models and expectations to", os.path.normpath(out))
