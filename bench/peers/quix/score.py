"""Quix Streams peer of W3 (issue 16): GBDT scoring of events, exactly once.

Usage: python score.py BROKERS INPUT OUTPUT GROUP RECORDS MODEL FEATURES

Scores each event with a LightGBM text model (lightgbm.Booster, one
predict call per event: Quix Streams' dataframe applies a function to one
record at a time; num_threads=1, since a call on one row gains nothing from
OpenMP threads) and adds "score". Timed and stopped as filtermap.py: from
the first event scored until the group's committed offsets reach the end
of the input; prints "result seconds S cpu_seconds C".
"""

import shutil
import sys
import tempfile
import threading
import time

import lightgbm as lgb
import numpy as np
from confluent_kafka import Consumer, KafkaException, TopicPartition
from quixstreams import Application


def main():
    brokers, input_topic, output_topic, group, records, model, features = sys.argv[1:8]
    records, features = int(records), int(features)
    booster = lgb.Booster(model_file=model)
    names = ["f%d" % k for k in range(features)]
    state = tempfile.mkdtemp(prefix="peers-quix-")  # stateless, but Quix makes one
    app = Application(
        broker_address=brokers,
        state_dir=state,
        consumer_group=group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_interval=0.1,
        auto_create_topics=False,
    )
    src = app.topic(input_topic, key_deserializer="bytes", value_deserializer="json")
    dst = app.topic(output_topic, key_serializer="bytes", value_serializer="json")
    start = {}

    def score(ev):
        if not start:
            start["cpu"], start["wall"] = time.process_time(), time.monotonic()
        row = np.array([[np.nan if ev[n] is None else ev[n] for n in names]], dtype=np.float64)
        ev["score"] = float(booster.predict(row, num_threads=1)[0])
        return ev

    sdf = app.dataframe(src)
    sdf = sdf.apply(score)
    sdf.to_topic(dst)

    done = {}

    def watch():
        c = Consumer({"bootstrap.servers": brokers, "group.id": group, "enable.auto.commit": False})
        parts = c.list_topics(input_topic, timeout=30).topics[input_topic].partitions
        tps = [TopicPartition(input_topic, p) for p in parts]
        while True:
            time.sleep(0.01)
            try:
                committed = sum(max(tp.offset, 0) for tp in c.committed(tps, timeout=30))
            except KafkaException:
                continue  # the group coordinator is not known yet: ask again
            if committed >= records:
                done["cpu"], done["wall"] = time.process_time(), time.monotonic()
                c.close()
                app.stop()
                return

    threading.Thread(target=watch, daemon=True).start()
    app.run()
    shutil.rmtree(state, ignore_errors=True)
    print("result seconds %.4f cpu_seconds %.4f" % (done["wall"] - start["wall"], done["cpu"] - start["cpu"]), flush=True)


if __name__ == "__main__":
    main()
