"""Quix Streams peer of bench/peers/w2.yaml (issue 16, W2), exactly once.

Usage: python enrich.py BROKERS ORDERS CUSTOMERS OUTPUT GROUP

Each order joins its customer (inner), then a 1-minute tumbling window per
customer (grace 0, event time = record timestamp) counts the orders, sums
their amounts and keeps the last segment, emitted once when the window
closes. The output value is JSON: key, window_start, window_end (RFC 3339,
UTC), orders, revenue and segment, as the streamer topology writes them.

Quix Streams has no KTable. The table side is StreamingDataFrame.join_asof
(quixstreams >= 3.15): the customers topic (co-partitioned with the orders)
is read into a timestamped RocksDB store with a changelog; each order looks
up the latest customer row with a timestamp at or before its own. Because
the app then consumes both topics with Quix's timestamp alignment, a
customer row is in the store before any later order reads it: with the
table's rows all older than the orders, this gives a KTable join's answer.
The window is tumbling_window(60 s, grace 0).agg(Count, Sum, Last) with
.final(closing_strategy="partition"): a window closes when its partition's
stream time passes its end, as in Kafka Streams and streamer (the default,
"key", would close a customer's window only on that customer's next order).

Timed from the first order the join sees until the group's committed offsets
reach the end of both input topics (outputs and offsets commit in one
transaction); prints the result line of peerrun.py. State lives in a fresh
temporary directory.
"""

import sys
from datetime import datetime, timezone

from peerrun import Peer
from quixstreams.dataframe.windows import Count, Last, Sum


def rfc3339(ms):
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat().replace("+00:00", "Z")


def main():
    brokers, orders_topic, customers_topic, output_topic, group = sys.argv[1:6]
    peer = Peer(brokers, group, auto_create_topics=True)  # the changelogs of the join store and the window
    app = peer.app
    orders = app.topic(orders_topic, key_deserializer="bytes", value_deserializer="json")
    customers = app.topic(customers_topic, key_deserializer="bytes", value_deserializer="json")
    dst = app.topic(output_topic, key_serializer="bytes", value_serializer="json")

    left = app.dataframe(orders).update(lambda o: peer.first())
    right = app.dataframe(customers)
    # As Kafka Streams' joiner: keep the order's amount and the customer's segment.
    joined = left.join_asof(right, how="inner", on_merge=lambda o, c: {"amount": o["amount"], "segment": c["segment"]})
    windows = (
        joined.tumbling_window(60_000, grace_ms=0)
        .agg(orders=Count(), revenue=Sum("amount"), segment=Last("segment"))
        .final(closing_strategy="partition")
    )

    def out(w, key, timestamp, headers):
        k = key.decode()
        return {
            "key": k,
            "window_start": rfc3339(w["start"]),
            "window_end": rfc3339(w["end"]),
            "orders": w["orders"],
            "revenue": w["revenue"],
            "segment": w["segment"],
        }

    windows.apply(out, metadata=True).to_topic(dst)
    peer.run([orders_topic, customers_topic])


if __name__ == "__main__":
    main()
