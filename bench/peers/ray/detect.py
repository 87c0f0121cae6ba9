"""Ray Data peer of W4 (issue 16): the language of each text record, as a
batch job, the seed paper's baseline. At least once: Ray Data has no Kafka
transactions (a write task that fails midway leaves what it flushed).

Usage: python detect.py BROKERS INPUT OUTPUT GROUP RECORDS

ray.data.read_kafka reads the input topic from the earliest to the latest
offset (one read task per partition; no consumer group: GROUP is unused),
map_batches adds "lang" (ISO 639-1, or null) and "lang_confidence" with
lingua-py over W4's eight languages in high accuracy, one detector per
actor of a pool of two (one per CPU), in the single pass of detect.py
under bench/peers/quix, and Dataset.write_kafka writes the records, keyed
by id, to the output topic, each write task flushing its producer. Ray
runs locally on 2 CPUs (ray.init(num_cpus=2)). Ray's CPUs are logical: an
actor pool of two at the default 1 CPU each holds both, and then the read
tasks (1 CPU each by default) never start (seen here: the job hung). So
each actor asks for 0.75 CPU and each read and write task for 0.25, which
fit together in 2.

Timed from the read's start until write_kafka returns (every output
acknowledged); the actors' detector loading falls inside. Ray's processes
(the GCS, the raylet, its workers) are this process's descendants, so
the CPU time is that of the whole tree (utime+stime+cutime+cstime of
every descendant alive at the end, from /proc, less the same at the
start), and the peak memory that of the tree too: the largest sum of the
processes' proportional set sizes (Pss, which counts the shared object
store once), sampled every 100 ms. Prints the result line of
bench/peers/quix/peerrun.py on the stdout it started with; everything
else goes to stderr.
"""

import json
import os
import sys
import threading
import time

W4_LANGUAGES = ["CS", "DE", "EN", "ES", "IT", "PL", "PT", "RU"]


class Detector:
    """One lingua-py detector per actor; detects a batch of records."""

    def __init__(self):
        from lingua import IsoCode639_1, LanguageDetectorBuilder

        t0 = time.monotonic()
        codes = [getattr(IsoCode639_1, c) for c in W4_LANGUAGES]
        self.det = LanguageDetectorBuilder.from_iso_codes_639_1(*codes).with_preloaded_language_models().build()
        print("ray peer: detector loaded in %.2f s (pid %d)" % (time.monotonic() - t0, os.getpid()), file=sys.stderr)

    def __call__(self, batch):
        out = {"id": [], "source": [], "text": [], "lang": [], "lang_confidence": []}
        for value in batch["value"]:
            rec = json.loads(value)
            vals = self.det.compute_language_confidence_values(rec["text"])
            top = vals[0]
            out["id"].append(rec["id"])
            out["source"].append(rec["source"])
            out["text"].append(rec["text"])
            out["lang"].append(None if top.value == vals[1].value else top.language.iso_code_639_1.name.lower())
            out["lang_confidence"].append(top.value)
        return out


def tree():
    """The pids of this process and its descendants."""
    parent = {}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open("/proc/%s/stat" % pid) as f:
                    parent[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except OSError:
                pass
    pids, todo = [], [os.getpid()]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += [c for c, pp in parent.items() if pp == p]
    return pids


def tree_cpu():
    """CPU seconds of the tree: each live process's own and its reaped children's."""
    ticks = 0
    for pid in tree():
        try:
            with open("/proc/%d/stat" % pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            ticks += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        except OSError:
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def tree_kb(key):
    """The sum of one smaps_rollup field (Pss, Rss) over the tree, in KiB."""
    total = 0
    for pid in tree():
        try:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


class Sampler(threading.Thread):
    """The peak of the tree's Pss (and Rss) sums, every 100 ms until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.pss = self.rss = 0
        self.stopped = threading.Event()

    def run(self):
        while not self.stopped.is_set():
            self.pss, self.rss = max(self.pss, tree_kb("Pss")), max(self.rss, tree_kb("Rss"))
            self.stopped.wait(0.1)


def main():
    brokers, input_topic, output_topic, _group, records = sys.argv[1:6]
    result = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)  # Ray's own output to stderr: the harness reads one line
    import ray

    sampler = Sampler()
    sampler.start()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=True)
    ray.data.DataContext.get_current().enable_progress_bars = False

    try:
        cpu0, wall0 = tree_cpu(), time.monotonic()
        ds = ray.data.read_kafka(input_topic, bootstrap_servers=brokers, num_cpus=0.25)
        ds = ds.map_batches(Detector, batch_size=500, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=2), num_cpus=0.75)
        ds.write_kafka(output_topic, brokers, key_field="id", key_serializer="string", value_serializer="json",
                       ray_remote_args={"num_cpus": 0.25})
        wall1, cpu1 = time.monotonic(), tree_cpu()
    finally:
        sampler.stopped.set()
        sampler.join()
        ray.shutdown()
    print("ray peer: %d records; peak of the tree's Pss %d KiB, of its Rss sum %d KiB" % (int(records), sampler.pss, sampler.rss), file=sys.stderr)
    print("result seconds %.4f cpu_seconds %.4f peak_rss_kb %d" % (wall1 - wall0, cpu1 - cpu0, sampler.pss), file=result, flush=True)


if __name__ == "__main__":
    main()
