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
acknowledged); the actors' start and detector loading fall inside. Ray's
processes (the GCS, the raylet, its workers and actors) are this
process's descendants, so the CPU time is that of the whole tree: each
process's utime+stime from /proc, sampled every 200 ms (the actors exit
before write_kafka returns: their last sample counts), at the end less
at the start, less the sampler's own CPU time. The peak memory is the
tree's too: the largest sum of the processes' proportional set sizes
(Pss, which counts shared pages such as the object store's once), every
third sample. Prints the result line of bench/peers/quix/peerrun.py
on the stdout it started with; everything else, the CPU seconds by kind
of process among it, goes to stderr.
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
    """The pids of this process and its descendants (/proc/PID/task/TID/children)."""
    pids, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    todo += [int(c) for c in f.read().split()]
        except OSError:
            pass  # it has just exited
    return pids


def sample(pid, memory):
    """A process's name, CPU seconds (its own utime+stime: no children's, so
    that none is counted twice), and when memory, its Pss and Rss in KiB;
    None once it is gone."""
    mem = {}
    try:
        with open("/proc/%d/stat" % pid) as f:
            name, fields = f.read().split(" (", 1)[1].rsplit(")", 1)
        if memory:
            with open("/proc/%d/smaps_rollup" % pid) as f:
                for line in f:
                    key, _, rest = line.partition(":")
                    if key in ("Pss", "Rss"):
                        mem[key] = int(rest.split()[0])
    except (OSError, IndexError):
        return None
    secs = sum(int(x) for x in fields.split()[11:13]) / os.sysconf("SC_CLK_TCK")
    return name, secs, mem.get("Pss", 0), mem.get("Rss", 0)


class Sampler(threading.Thread):
    """Samples the tree every 200 ms until stopped: the last CPU seconds
    seen of every process (so that one which exits before the end, as the
    actors do when their operator is done, still counts, less at most its
    last 200 ms), and every 600 ms the peaks of the Pss and Rss sums
    (reading smaps_rollup is the costly part). Its own CPU time so far,
    measurement and not Ray's, is in self.own."""

    def __init__(self):
        super().__init__(daemon=True)
        self.cpu, self.pss, self.rss, self.own = {}, 0, 0, 0.0
        self.lock, self.stopped = threading.Lock(), threading.Event()

    def run(self):
        n = 0
        while True:
            self.snapshot(memory=n % 3 == 0)
            self.own, n = time.thread_time(), n + 1
            if self.stopped.wait(0.2):
                break

    def snapshot(self, memory=False):
        """Samples the tree now; returns the CPU seconds of every process seen so far, by pid."""
        pss = rss = 0
        with self.lock:
            for pid in tree():
                got = sample(pid, memory)
                if got:
                    name, secs, p, r = got
                    self.cpu[pid] = (name, secs)
                    pss, rss = pss + p, rss + r
            self.pss, self.rss = max(self.pss, pss), max(self.rss, rss)
            return dict(self.cpu)


def cpu_by_name(cpu0, cpu1):
    """The CPU seconds each kind of process spent from cpu0 to cpu1."""
    out = {}
    for pid, (name, secs) in cpu1.items():
        out[name] = out.get(name, 0) + secs - cpu0.get(pid, (name, 0))[1]
    return out


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
        cpu0, own0, wall0 = sampler.snapshot(), sampler.own, time.monotonic()
        ds = ray.data.read_kafka(input_topic, bootstrap_servers=brokers, num_cpus=0.25)
        ds = ds.map_batches(Detector, batch_size=500, batch_format="numpy", compute=ray.data.ActorPoolStrategy(size=2), num_cpus=0.75)
        ds.write_kafka(output_topic, brokers, key_field="id", key_serializer="string", value_serializer="json",
                       ray_remote_args={"num_cpus": 0.25})
        wall1, cpu1, own1 = time.monotonic(), sampler.snapshot(), sampler.own
    finally:
        sampler.stopped.set()
        sampler.join()
        ray.shutdown()
    by_name = sorted(cpu_by_name(cpu0, cpu1).items(), key=lambda kv: -kv[1])
    print("ray peer: %d records; peak of the tree's Pss %d KiB, of its Rss sum %d KiB; CPU seconds by process: %s; of which the sampler's own (left out) %.2f"
          % (int(records), sampler.pss, sampler.rss, ", ".join("%s %.2f" % kv for kv in by_name), own1 - own0), file=sys.stderr)
    cpu = sum(cpu_by_name(cpu0, cpu1).values()) - (own1 - own0)
    print("result seconds %.4f cpu_seconds %.4f peak_rss_kb %d" % (wall1 - wall0, cpu, sampler.pss), file=result, flush=True)


if __name__ == "__main__":
    main()
