package io.streamer.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.lang.management.ManagementFactory;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.CloseOptions;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.processor.StateRestoreListener;
import org.apache.kafka.streams.state.KeyValueStore;

/**
 * The Kafka Streams peer of bench/peers/w6.yaml (issue 16, W6, recovery): a
 * count and a sum of amount per key, in a persistent (RocksDB) store whose
 * changelog a replica that lost its disk restores. Exactly once
 * (exactly_once_v2), with the settings of {@link Common#props}.
 *
 * <p>The store's value is the same JSON as the streamer aggregate's state,
 * {@code {"n":{"n":N},"total":{"n":N,"s":S}}}, so that both changelogs hold
 * the same keys with values of the same size; the output is the streamer
 * aggregate's output, {@code {"key":K,"n":N,"total":S}}.
 *
 * <p>Usage: Recover BROKERS INPUT APP OUTPUT STATE_DIR MODE. MODE fill: run
 * until the application's committed offsets reach the end of INPUT, close,
 * and print {@code filled seconds S}. MODE restore (STATE_DIR empty): start,
 * and once the instance is RUNNING and the restores of all the changelog's
 * partitions have ended (a StateRestoreListener), print {@code ready seconds S
 * restore_seconds R restored N cpu_seconds C rss_kb K restore_began B} (S from
 * the JVM's start, C the process CPU since then, K its VmHWM, B when the
 * first restore began, from the JVM's start), then process until
 * stdin closes.
 */
public final class Recover {
  private static final ObjectMapper JSON = new ObjectMapper();

  /**
   * Closing leaves the group, so that the next run's member is not kept
   * waiting for the session timeout (45 s) of this one: W6 times the
   * restore, not the group's failure detection. The streamer leaves its
   * group on close too.
   */
  private static final CloseOptions LEAVE =
      CloseOptions.groupMembershipOperation(CloseOptions.GroupMembershipOperation.LEAVE_GROUP)
          .withTimeout(Duration.ofMinutes(1));

  private Recover() {}

  /** The aggregate with one more record: the streamer aggregate's state layout. */
  static String add(byte[] record, String agg) {
    try {
      double amount = JSON.readTree(record).get("amount").asDouble();
      long n = 0;
      double s = 0;
      if (agg != null) {
        JsonNode a = JSON.readTree(agg);
        n = a.get("n").get("n").asLong();
        s = a.get("total").get("s").asDouble();
      }
      n++;
      s += amount;
      return "{\"n\":{\"n\":" + n + "},\"total\":{\"n\":" + n + ",\"s\":" + num(s) + "}}";
    } catch (java.io.IOException e) {
      throw new RuntimeException(e);
    }
  }

  /** A double as Go's encoding/json writes it for these values (no ".0" on whole numbers). */
  static String num(double d) {
    if (d == Math.rint(d) && Math.abs(d) < 1e15) {
      return Long.toString((long) d);
    }
    return Double.toString(d);
  }

  static byte[] output(String key, String agg) {
    try {
      JsonNode a = JSON.readTree(agg);
      return ("{\"key\":" + JSON.writeValueAsString(key) + ",\"n\":" + a.get("n").get("n").asLong()
          + ",\"total\":" + num(a.get("total").get("s").asDouble()) + "}").getBytes(java.nio.charset.StandardCharsets.UTF_8);
    } catch (java.io.IOException e) {
      throw new RuntimeException(e);
    }
  }

  static long vmHWM() throws java.io.IOException {
    for (String l : Files.readAllLines(Path.of("/proc/self/status"))) {
      if (l.startsWith("VmHWM:")) {
        return Long.parseLong(l.replaceAll("[^0-9]", ""));
      }
    }
    return 0;
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 6 || !(args[5].equals("fill") || args[5].equals("restore"))) {
      System.err.println("usage: Recover BROKERS INPUT APP OUTPUT STATE_DIR fill|restore");
      System.exit(2);
    }
    String brokers = args[0], input = args[1], app = args[2], output = args[3], stateDir = args[4];
    boolean fill = args[5].equals("fill");
    com.sun.management.OperatingSystemMXBean os = Common.os();
    long jvmStart = ManagementFactory.getRuntimeMXBean().getStartTime();

    StreamsBuilder b = new StreamsBuilder();
    b.stream(input, Consumed.with(Serdes.String(), Serdes.ByteArray()))
        .groupByKey(Grouped.with(Serdes.String(), Serdes.ByteArray()))
        .aggregate(() -> null, (k, v, agg) -> add(v, agg),
            Materialized.<String, String, KeyValueStore<Bytes, byte[]>>as("totals")
                .withKeySerde(Serdes.String()).withValueSerde(Serdes.String()))
        .toStream()
        .map((k, agg) -> KeyValue.pair(k, output(k, agg)))
        .to(output, Produced.with(Serdes.String(), Serdes.ByteArray()));

    Properties p = Common.props(app, brokers);
    p.put(StreamsConfig.STATE_DIR_CONFIG, stateDir);
    KafkaStreams streams = new KafkaStreams(b.build(p), p);

    // Restores by changelog partition: when each began and ended, and the records restored.
    Map<TopicPartition, Boolean> restoring = new ConcurrentHashMap<>();
    AtomicLong restored = new AtomicLong();
    AtomicLong firstStart = new AtomicLong(Long.MAX_VALUE);
    AtomicLong firstStartMillis = new AtomicLong(Long.MAX_VALUE);
    AtomicLong lastEnd = new AtomicLong(0);
    streams.setGlobalStateRestoreListener(new StateRestoreListener() {
      @Override
      public void onRestoreStart(TopicPartition tp, String store, long start, long end) {
        restoring.put(tp, true);
        firstStart.accumulateAndGet(System.nanoTime(), Math::min);
        firstStartMillis.accumulateAndGet(System.currentTimeMillis(), Math::min);
      }

      @Override
      public void onBatchRestored(TopicPartition tp, String store, long batchEnd, long n) {}

      @Override
      public void onRestoreEnd(TopicPartition tp, String store, long total) {
        restored.addAndGet(total);
        lastEnd.accumulateAndGet(System.nanoTime(), Math::max);
        restoring.put(tp, false);
      }
    });

    try (Admin admin = Common.admin(brokers)) {
      long t0 = System.nanoTime();
      streams.start();
      if (fill) {
        Common.awaitCommitted(admin, app, streams, Set.of(input), Common.endOffsets(admin, input), 100);
        System.out.printf("filled seconds %.4f%n", (System.nanoTime() - t0) / 1e9);
        System.out.flush();
        streams.close(LEAVE);
        return;
      }
      // Ready: RUNNING, and the restores of all the changelog's partitions (one per input partition) have ended.
      int partitions = admin.describeTopics(List.of(input)).allTopicNames().get().get(input).partitions().size();
      while (true) {
        Common.checkRunning(streams);
        if (streams.state() == KafkaStreams.State.RUNNING && restoring.size() == partitions && !restoring.containsValue(true)) {
          break;
        }
        Thread.sleep(2);
      }
      long readyMillis = System.currentTimeMillis() - jvmStart;
      long cpu = os.getProcessCpuTime();
      System.out.printf("ready seconds %.4f restore_seconds %.4f restored %d cpu_seconds %.4f rss_kb %d restore_began %.4f%n",
          readyMillis / 1e3, (lastEnd.get() - firstStart.get()) / 1e9, restored.get(), cpu / 1e9, vmHWM(),
          (firstStartMillis.get() - jvmStart) / 1e3);
      System.out.flush();
      Common.awaitStdinClosed();
      streams.close(LEAVE);
    }
  }
}
