"""Quix Streams peer of bench/topology.yaml (issue 16, W1), exactly once.

Usage: python filtermap.py BROKERS INPUT OUTPUT GROUP RECORDS

Keeps orders with amount > -1000000, then adds amount_eur and item_count,
sets pipeline=bench, renames customer_id to customer and drops debug. Timed
from the first record the map sees until the group's committed offsets reach
the end of the input (outputs and offsets commit in one transaction); prints
the result line of peerrun.py.
"""

import sys

from peerrun import Peer


def main():
    brokers, input_topic, output_topic, group, records = sys.argv[1:6]
    peer = Peer(brokers, group)
    src = peer.app.topic(input_topic, key_deserializer="bytes", value_deserializer="json")
    dst = peer.app.topic(output_topic, key_serializer="bytes", value_serializer="json")

    def shape(o):
        peer.first()
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

    sdf = peer.app.dataframe(src)
    sdf = sdf.filter(lambda o: o["amount"] > -1000000).apply(shape)
    sdf.to_topic(dst)
    peer.run([input_topic], end=int(records))


if __name__ == "__main__":
    main()
