#!/usr/bin/env python3
"""Converts the XGBoost models in ml/testdata to ONNX with onnxmltools and
writes, for each, ml/testdata/onnx-<name>.onnx and onnx-<name>-expected.json:
the held-out features of xgb-<name>-expected.json with ONNX Runtime's own
(Python) predictions, in the same JSON shape, plus the versions used. The Go
ONNX backend's tests check that streamer predicts the same (within 1e-5).

It also writes two small models for the backend's edge cases:
  onnx-sum.onnx     a hand-built graph whose output is a 1-D float64 tensor
  onnx-zipmap.onnx  a scikit-learn classifier exported by skl2onnx with its
                    default ZipMap output, which streamer must refuse with
                    advice

Run it in a venv with the versions below (the venv is gitignored):

    python3 -m venv bin/onnxvenv
    bin/onnxvenv/bin/pip install xgboost==3.2.0 onnxmltools==1.16.0 \\
        onnxruntime==1.24.1 onnx==1.23.2 skl2onnx==1.20.0 scikit-learn numpy
    bin/onnxvenv/bin/python scripts/ml/export_onnx.py

xgboost 3.2.0 is the version that trained the models (scripts/ml/train.py);
onnxruntime 1.24.1 is the library version github.com/yalue/onnxruntime_go
v1.27.0 is built against, the one scripts/ml/onnxruntime.sh fetches.
"""
import json
import os

import numpy as np
import onnx
import onnxmltools
import onnxruntime as ort
import skl2onnx
import xgboost as xgb
from onnx import TensorProto, helper
from onnxmltools.convert.common.data_types import FloatTensorType
from sklearn.linear_model import LogisticRegression

out = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "ml", "testdata"))
versions = {
    "xgboost": xgb.__version__,
    "onnxmltools": onnxmltools.__version__,
    "onnx": onnx.__version__,
    "onnxruntime": ort.__version__,
    "skl2onnx": skl2onnx.__version__,
}


def held_out(name):
    with open(os.path.join(out, f"xgb-{name}-expected.json")) as fh:
        want = json.load(fh)
    X = np.array([[np.nan if v is None else v for v in row] for row in want["features"]], dtype=np.float32)
    return want, X


def run(model_path, X):
    """Scores X with ONNX Runtime, returning every output by name."""
    s = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    names = [o.name for o in s.get_outputs()]
    return dict(zip(names, s.run(None, {s.get_inputs()[0].name: X})))


def write(name, features, predictions):
    """Writes onnx-<name>-expected.json in the shape of xgb-*-expected.json."""
    doc = {"features": features, "predictions": np.asarray(predictions, dtype=np.float64).tolist()}
    doc.update(versions)
    with open(os.path.join(out, f"onnx-{name}-expected.json"), "w") as fh:
        json.dump(doc, fh)


for name, cls in [("binary", xgb.XGBClassifier), ("regression", xgb.XGBRegressor), ("multiclass", xgb.XGBClassifier)]:
    want, X = held_out(name)
    m = cls()
    m.load_model(os.path.join(out, f"xgb-{name}.json"))
    # A dynamic batch dimension, so that one session scores any batch size.
    model = onnxmltools.convert_xgboost(m, name=f"xgb-{name}", initial_types=[("input", FloatTensorType([None, X.shape[1]]))])
    path = os.path.join(out, f"onnx-{name}.onnx")
    onnx.save_model(model, path)
    got = run(path, X)
    if name == "regression":
        pred = got["variable"].reshape(-1)
    else:
        # onnxmltools names the class probabilities "probabilities"; for a
        # binary model streamer, like the XGBoost evaluator, reports P(class 1).
        pred = got["probabilities"]
        if name == "binary":
            pred = pred[:, 1]
    write(name, want["features"], pred)
    diff = np.abs(np.asarray(pred, dtype=np.float64) - np.asarray(want["predictions"])).max()
    print(f"onnx-{name}: {len(X)} rows, largest difference from xgboost {diff:.2g}")

# A hand-built graph with a 1-D float64 output: the sum of each row's
# features.
want, X = held_out("regression")
X = np.nan_to_num(X)  # sums of NaN are NaN; keep the expectations finite
graph = helper.make_graph(
    [
        helper.make_node("ReduceSum", ["input", "axes"], ["sum32"], keepdims=0),
        helper.make_node("Cast", ["sum32"], ["sum"], to=TensorProto.DOUBLE),
    ],
    "row-sum",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, X.shape[1]])],
    [helper.make_tensor_value_info("sum", TensorProto.DOUBLE, [None])],
    [helper.make_tensor("axes", TensorProto.INT64, [1], [1])],
)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
path = os.path.join(out, "onnx-sum.onnx")
onnx.save_model(model, path)
write("sum", X.tolist(), run(path, X)["sum"])
print(f"onnx-sum: {len(X)} rows")

# skl2onnx's default for classifiers: probabilities as a ZipMap, a sequence
# of maps, which is no tensor. Only the model is needed: streamer refuses it.
want, X = held_out("binary")
y = np.asarray(want["predictions"]) > 0.5
clf = LogisticRegression().fit(np.nan_to_num(X), y)
model = skl2onnx.to_onnx(clf, np.nan_to_num(X[:1]))
# skl2onnx lists the opsets in set order; sort them so reruns write the
# same bytes.
opsets = sorted(model.opset_import, key=lambda o: o.domain)
del model.opset_import[:]
model.opset_import.extend(opsets)
onnx.save_model(model, os.path.join(out, "onnx-zipmap.onnx"))
print("onnx-zipmap: outputs", [o.name for o in model.graph.output])
print("wrote ONNX models and expectations to", out, versions)
