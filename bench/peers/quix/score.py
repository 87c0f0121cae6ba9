"""Quix Streams peer of W3 (issue 16): GBDT scoring of events, exactly once.

Usage: python score.py BROKERS INPUT OUTPUT GROUP RECORDS MODEL FEATURES

Scores each event with a LightGBM text model (lightgbm.Booster, one
predict call per event: Quix Streams' dataframe applies a function to one
record at a time; num_threads=1, since a call on one row gains nothing from
OpenMP threads) and adds "score". Timed and stopped as filtermap.py: from
the first event scored until the group's committed offsets reach the end
of the input; prints the result line of peerrun.py.
"""

import sys

import lightgbm as lgb
import numpy as np
from peerrun import Peer


def main():
    brokers, input_topic, output_topic, group, records, model, features = sys.argv[1:8]
    records, features = int(records), int(features)
    booster = lgb.Booster(model_file=model)
    names = ["f%d" % k for k in range(features)]
    peer = Peer(brokers, group)
    src = peer.app.topic(input_topic, key_deserializer="bytes", value_deserializer="json")
    dst = peer.app.topic(output_topic, key_serializer="bytes", value_serializer="json")

    def score(ev):
        peer.first()
        row = np.array([[np.nan if ev[n] is None else ev[n] for n in names]], dtype=np.float64)
        ev["score"] = float(booster.predict(row, num_threads=1)[0])
        return ev

    sdf = peer.app.dataframe(src)
    sdf = sdf.apply(score)
    sdf.to_topic(dst)
    peer.run([input_topic], end=records)


if __name__ == "__main__":
    main()
