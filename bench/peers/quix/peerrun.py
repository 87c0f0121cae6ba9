"""What the Quix Streams peers of go run ./bench/peers share: the
Application's exactly-once settings, the clock that starts at the first
record, and the watcher that stops the app once the group's committed
offsets reach the end of its input, then the one result line the harness
parses: "result seconds S cpu_seconds C peak_rss_kb K", C being this
process's CPU time (time.process_time: user+sys of all its threads,
librdkafka's included) and K its own peak RSS (VmHWM: a parent's rusage of
a child starts from the parent's RSS).
"""

import shutil
import sys
import tempfile
import threading
import time

from confluent_kafka import Consumer, KafkaException, TopicPartition
from quixstreams import Application


class Peer:
    """One timed run of a Quix Streams app over the whole of its input."""

    def __init__(self, brokers, group, auto_create_topics=False):
        self.brokers, self.group = brokers, group
        # Quix makes a state directory even for stateless apps; its default,
        # ./state, would land in the checkout.
        self.state_dir = tempfile.mkdtemp(prefix="peers-quix-")
        self.app = Application(
            broker_address=brokers,
            consumer_group=group,
            auto_offset_reset="earliest",
            processing_guarantee="exactly-once",
            commit_interval=0.1,
            state_dir=self.state_dir,
            auto_create_topics=auto_create_topics,
        )
        self.start, self.done = {}, {}

    def first(self):
        """Starts the clock at the first record; call it from the dataframe."""
        if not self.start:
            self.start["cpu"], self.start["wall"] = time.process_time(), time.monotonic()

    def run(self, topics, end=None):
        """Runs the app until the group's committed offsets on topics reach
        end (default: the topics' end offsets now), prints the result line
        and removes the state directory."""
        threading.Thread(target=self._watch, args=(topics, end), daemon=True).start()
        try:
            self.app.run()
        finally:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        if not self.done or not self.start:
            sys.exit("quix peer: stopped before the group committed its input")
        print(
            "result seconds %.4f cpu_seconds %.4f peak_rss_kb %d"
            % (self.done["wall"] - self.start["wall"], self.done["cpu"] - self.start["cpu"], peak_rss_kb()),
            flush=True,
        )

    def _watch(self, topics, end):
        c = Consumer({"bootstrap.servers": self.brokers, "group.id": self.group, "enable.auto.commit": False})
        tps = []
        for t in topics:
            parts = c.list_topics(t, timeout=30).topics[t].partitions
            tps += [TopicPartition(t, p) for p in parts]
        if end is None:
            end = sum(c.get_watermark_offsets(tp, timeout=30)[1] for tp in tps)
        while True:
            time.sleep(0.01)
            try:
                committed = sum(max(tp.offset, 0) for tp in c.committed(tps, timeout=30))
            except KafkaException:
                continue  # the group coordinator is not known yet: ask again
            if committed >= end:
                self.done["cpu"], self.done["wall"] = time.process_time(), time.monotonic()
                c.close()
                self.app.stop()
                return


def peak_rss_kb():
    """VmHWM of this process."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0
