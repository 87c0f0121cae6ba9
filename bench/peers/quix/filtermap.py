"""Quix Streams peer of bench/topology.yaml (issue 16, W1), exactly once.

Usage: python filtermap.py BROKERS INPUT OUTPUT GROUP RECORDS

Keeps orders with amount > -1000000, then adds amount_eur and item_count,
sets pipeline=bench, renames customer_id to customer and drops debug. Timed
from the first record the map sees until the group's committed offsets reach
the end of the input (outputs and offsets commit in one transaction); prints
one line for go run ./bench/peers: "result seconds S cpu_seconds C", C being
this process's CPU time (time.process_time: user+sys of all its threads).
"""

import shutil
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition
from quixstreams import Application


def main():
    brokers, input_topic, output_topic, group, records = sys.argv[1:6]
    records = int(records)
    state = tempfile.mkdtemp(prefix="peers-quix-")  # stateless, but Quix makes one (default ./state: not in the checkout)
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

    def shape(o):
        if not start:
            start["cpu"], start["wall"] = time.process_time(), time.monotonic()
        if o["currency"] == "EUR":
            o["amount_eur"] = o["amount"]
        else:
            o["amount_eur"] = o["amount"] * 0.92
        o["item_count"] = len(o["items"])
        o["pipeline"] = "bench"
        if "customer_id" in o:
            o["customer"] = o.pop("customer_id")
        o.pop("debug", None)
        return o

    sdf = app.dataframe(src)
    sdf = sdf.filter(lambda o: o["amount"] > -1000000).apply(shape)
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
