package io.streamer.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.atomic.AtomicReference;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.Metric;
import org.apache.kafka.common.MetricName;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.Topology;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.JoinWindows;
import org.apache.kafka.streams.kstream.KStream;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.StreamJoined;

/**
 * The Kafka Streams peer of bench/join.yaml (issue 16, W5): each order is
 * re-keyed by its order_id, split into a left and a right stream (each a
 * filter that keeps every record, as the topology's to-left and to-right
 * pipes), and the two are joined, KStream-KStream, inner, within
 * {@code JoinWindows.ofTimeDifferenceAndGrace(1 min, 10 min)} (records
 * whose timestamps are at most a minute apart either way; grace 10 min, as
 * join.yaml's window and grace). The output is the left order with
 * {@code twin_amount} set to the right one's amount, keyed by order_id:
 * one output per order. Exactly once, with the settings of
 * {@link Common#props} and topology.optimization=all (the two
 * repartitions after the re-key become one topic; the self-join
 * optimization does not apply, as the join's sides are two filters: two
 * window stores, as for any two streams; the topology is printed to stderr).
 * The environment variable PEERS_KSTREAMS_OPTIMIZE, when set, replaces
 * topology.optimization ({@code none}: a repartition topic per side, two
 * copies of each order, as streamer's merge topic carries).
 *
 * <p>Usage: Join BROKERS INPUT PREFIX ROUNDS PARTITIONS. Each round runs a
 * fresh application PREFIX-rN to PREFIX-rN-out in this JVM. A round is
 * timed from the first record re-keyed until the stream thread that emitted
 * the last of the N outputs has committed a transaction after it (the
 * thread's commit-total metric, polled every 2 ms, as the streamer run
 * counts its commits), and prints {@code round N records R seconds S
 * cpu_seconds C output T}.
 */
public final class Join {
  private static final ObjectMapper JSON = new ObjectMapper();

  private Join() {}

  static String orderId(byte[] value) {
    try {
      return JSON.readTree(value).get("order_id").asText();
    } catch (java.io.IOException e) {
      throw new RuntimeException(e);
    }
  }

  /** The left order with twin_amount, the right order's amount. */
  static byte[] joined(byte[] left, byte[] right) {
    try {
      ObjectNode l = (ObjectNode) JSON.readTree(left);
      JsonNode r = JSON.readTree(right);
      l.set("twin_amount", r.get("amount"));
      return JSON.writeValueAsBytes(l);
    } catch (java.io.IOException e) {
      throw new RuntimeException(e);
    }
  }

  static double commits(KafkaStreams streams, String thread) {
    for (Map.Entry<MetricName, ? extends Metric> e : streams.metrics().entrySet()) {
      MetricName n = e.getKey();
      if (n.name().equals("commit-total") && n.group().equals("stream-thread-metrics")
          && thread.equals(n.tags().get("thread-id"))) {
        return ((Number) e.getValue().metricValue()).doubleValue();
      }
    }
    throw new IllegalStateException("no commit-total metric for thread " + thread);
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 5) {
      System.err.println("usage: Join BROKERS INPUT PREFIX ROUNDS PARTITIONS");
      System.exit(2);
    }
    String brokers = args[0], input = args[1], prefix = args[2];
    int rounds = Integer.parseInt(args[3]);
    int partitions = Integer.parseInt(args[4]);
    try (Admin admin = Common.admin(brokers)) {
      long end = Common.endOffsets(admin, input);
      Common.rounds(admin, prefix, rounds, partitions, end, (round, app, output, clock) -> {
        AtomicLong outputs = new AtomicLong(0);
        // The thread that emitted the last output and its commit count then.
        AtomicReference<String> lastThread = new AtomicReference<>();
        AtomicReference<Double> commitsThen = new AtomicReference<>();
        AtomicReference<KafkaStreams> self = new AtomicReference<>();
        StreamsBuilder b = new StreamsBuilder();
        KStream<String, byte[]> byId = b.stream(input, Consumed.with(Serdes.String(), Serdes.ByteArray()))
            .selectKey((k, v) -> {
              clock.start();
              return orderId(v);
            });
        KStream<String, byte[]> left = byId.filter((k, v) -> true);
        KStream<String, byte[]> right = byId.filter((k, v) -> true);
        left.join(right, Join::joined,
                JoinWindows.ofTimeDifferenceAndGrace(Duration.ofMinutes(1), Duration.ofMinutes(10)),
                StreamJoined.with(Serdes.String(), Serdes.ByteArray(), Serdes.ByteArray()))
            .peek((k, v) -> {
              if (outputs.incrementAndGet() == end) {
                String t = Thread.currentThread().getName();
                commitsThen.set(commits(self.get(), t));
                lastThread.set(t);
              }
            })
            .to(output, Produced.with(Serdes.String(), Serdes.ByteArray()));

        Properties p = Common.props(app, brokers);
        String optimize = System.getenv("PEERS_KSTREAMS_OPTIMIZE");
        p.put(StreamsConfig.TOPOLOGY_OPTIMIZATION_CONFIG, optimize != null ? optimize : StreamsConfig.OPTIMIZE);
        Topology topology = b.build(p);
        if (round == 1) {
          System.err.println(topology.describe());
        }
        KafkaStreams streams = new KafkaStreams(topology, p);
        self.set(streams);
        streams.start();
        while (true) {
          Thread.sleep(2);
          String t = lastThread.get();
          if (t != null && commits(streams, t) > commitsThen.get()) {
            break;
          }
          Common.checkRunning(streams);
        }
        return streams;
      });
    }
  }
}
