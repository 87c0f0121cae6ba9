package io.streamer.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.time.Duration;
import java.time.Instant;
import java.util.Properties;
import java.util.Set;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.KeyValue;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.KTable;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.kstream.Suppressed;
import org.apache.kafka.streams.kstream.TimeWindows;
import org.apache.kafka.streams.state.WindowStore;

/**
 * The Kafka Streams peer of bench/peers/w2.yaml (issue 16, W2): each order
 * joins its customer in a table (inner), then a 1-minute tumbling window per
 * customer (grace 0, event time = record timestamp) counts the orders and
 * sums their amounts, emitted once when the window closes (suppress
 * untilWindowCloses). Exactly once (exactly_once_v2), with the settings of
 * {@link Common#props} and topology.optimization=all.
 *
 * <p>Usage: Enrich BROKERS ORDERS CUSTOMERS PREFIX ROUNDS PARTITIONS. Each
 * round runs a fresh application PREFIX-rN to PREFIX-rN-out in this JVM. A
 * round is timed from the first join until the application's committed
 * offsets reach the end of both input topics, and prints {@code round N
 * records R seconds S cpu_seconds C output T}, R being the orders' count.
 * The output value is JSON: key, window_start, window_end (RFC 3339, UTC),
 * orders, revenue and segment, as the streamer topology writes them.
 */
public final class Enrich {
  private static final ObjectMapper JSON = new ObjectMapper();

  private Enrich() {}

  /** The join: "amount|segment" of an order and its customer. */
  static String join(byte[] order, byte[] customer) {
    try {
      JsonNode o = JSON.readTree(order);
      JsonNode c = JSON.readTree(customer);
      return o.get("amount").asDouble() + "|" + c.get("segment").asText();
    } catch (java.io.IOException e) {
      throw new RuntimeException(e);
    }
  }

  /** The aggregate "count|sum|segment" with one more joined order. */
  static String add(String joined, String agg) {
    int bar = joined.indexOf('|');
    double amount = Double.parseDouble(joined.substring(0, bar));
    String segment = joined.substring(bar + 1);
    String[] a = agg.split("\\|", 3);
    return (Long.parseLong(a[0]) + 1) + "|" + (Double.parseDouble(a[1]) + amount) + "|" + segment;
  }

  static byte[] output(String key, long start, long end, String agg) {
    String[] a = agg.split("\\|", 3);
    ObjectNode v = JSON.createObjectNode();
    v.put("key", key);
    v.put("window_start", Instant.ofEpochMilli(start).toString());
    v.put("window_end", Instant.ofEpochMilli(end).toString());
    v.put("orders", Long.parseLong(a[0]));
    v.put("revenue", Double.parseDouble(a[1]));
    v.put("segment", a[2]);
    try {
      return JSON.writeValueAsBytes(v);
    } catch (java.io.IOException e) {
      throw new RuntimeException(e);
    }
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 6) {
      System.err.println("usage: Enrich BROKERS ORDERS CUSTOMERS PREFIX ROUNDS PARTITIONS");
      System.exit(2);
    }
    String brokers = args[0], orders = args[1], customers = args[2], prefix = args[3];
    int rounds = Integer.parseInt(args[4]);
    int partitions = Integer.parseInt(args[5]);
    try (Admin admin = Common.admin(brokers)) {
      long ordersEnd = Common.endOffsets(admin, orders);
      long end = ordersEnd + Common.endOffsets(admin, customers);
      Common.rounds(admin, prefix, rounds, partitions, ordersEnd, (round, app, output, clock) -> {
        StreamsBuilder b = new StreamsBuilder();
        KTable<String, byte[]> table = b.table(customers, Consumed.with(Serdes.String(), Serdes.ByteArray()));
        b.stream(orders, Consumed.with(Serdes.String(), Serdes.ByteArray()))
            .join(table, (order, customer) -> {
              clock.start();
              return join(order, customer);
            })
            .groupByKey(Grouped.with(Serdes.String(), Serdes.String()))
            .windowedBy(TimeWindows.ofSizeAndGrace(Duration.ofMinutes(1), Duration.ZERO))
            .aggregate(() -> "0|0.0|", (k, v, agg) -> add(v, agg),
                Materialized.<String, String, WindowStore<Bytes, byte[]>>as("per-minute")
                    .withKeySerde(Serdes.String()).withValueSerde(Serdes.String()))
            .suppress(Suppressed.untilWindowCloses(Suppressed.BufferConfig.unbounded()))
            .toStream()
            .map((wk, agg) -> KeyValue.pair(wk.key(), output(wk.key(), wk.window().start(), wk.window().end(), agg)))
            .to(output, Produced.with(Serdes.String(), Serdes.ByteArray()));

        Properties p = Common.props(app, brokers);
        p.put(StreamsConfig.TOPOLOGY_OPTIMIZATION_CONFIG, StreamsConfig.OPTIMIZE);
        KafkaStreams streams = new KafkaStreams(b.build(p), p);
        streams.start();
        Common.awaitCommitted(admin, app, streams, Set.of(orders, customers), end, 10);
        return streams;
      });
    }
  }
}
