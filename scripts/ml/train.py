#!/usr/bin/env python3
"""Trains small real XGBoost models and writes them, with a held-out set and
the library's own predictions, to ml/testdata/. The Go evaluator's tests
check that streamer predicts the same (within 1e-5).

    make ml-testdata

(xgboost 3.2.0 is the newest release for the Python 3.11 here; 3.3+ needs
Python 3.12.)
"""
import json
import os

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
print("wrote models and expectations to", os.path.normpath(out))
