package io.streamer.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.util.List;
import java.util.Set;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.kstream.Consumed;
import org.apache.kafka.streams.kstream.Produced;

/**
 * The Kafka Streams peer of bench/topology.yaml (issue 16, W1): keep orders
 * with amount > -1000000, then add amount_eur and item_count, set
 * pipeline=bench, rename customer_id to customer, drop debug. Exactly once
 * (exactly_once_v2).
 *
 * <p>Usage: FilterMap BROKERS INPUT PREFIX ROUNDS PARTITIONS. Each round runs a
 * fresh application (PREFIX-rN) to a fresh output topic (PREFIX-rN-out) in
 * this JVM, so that later rounds run JIT-warm code. A round is timed from
 * the first record the map sees until the application's committed offsets
 * reach the end of the input (outputs and offsets commit in one
 * transaction), and prints one line per round:
 * {@code round N records R seconds S cpu_seconds C output T}.
 *
 * <p>With a sixth argument {@code latency} (bench/peers/latency.go) it runs
 * one application PREFIX on INPUT, which starts empty, to PREFIX-out until
 * its stdin closes, with the same settings.
 */
public final class FilterMap {
  private static final ObjectMapper JSON = new ObjectMapper();

  private FilterMap() {}

  static byte[] shape(byte[] value) {
    try {
      ObjectNode o = (ObjectNode) JSON.readTree(value);
      JsonNode amount = o.get("amount");
      JsonNode currency = o.get("currency");
      if ("EUR".equals(currency.asText())) {
        o.set("amount_eur", amount);
      } else {
        o.put("amount_eur", amount.asDouble() * 0.92);
      }
      o.put("item_count", o.get("items").size());
      o.put("pipeline", "bench");
      JsonNode customer = o.remove("customer_id");
      if (customer != null) {
        o.set("customer", customer);
      }
      o.remove("debug");
      return JSON.writeValueAsBytes(o);
    } catch (java.io.IOException e) {
      throw new RuntimeException(e);
    }
  }

  static boolean keep(byte[] value) {
    try {
      return JSON.readTree(value).get("amount").asDouble() > -1000000;
    } catch (java.io.IOException e) {
      throw new RuntimeException(e);
    }
  }

  /** Latency mode: runs PREFIX on INPUT to PREFIX-out until stdin closes. */
  static void latency(Admin admin, String brokers, String input, String app, int partitions) throws Exception {
    String output = app + "-out";
    admin.createTopics(List.of(new NewTopic(output, partitions, (short) 1))).all().get();
    StreamsBuilder b = new StreamsBuilder();
    b.stream(input, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
        .filter((k, v) -> keep(v))
        .mapValues(FilterMap::shape)
        .to(output, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
    KafkaStreams streams = new KafkaStreams(b.build(), Common.props(app, brokers));
    streams.start();
    Common.awaitStdinClosed();
    streams.close();
    streams.cleanUp();
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 5 && !(args.length == 6 && args[5].equals("latency"))) {
      System.err.println("usage: FilterMap BROKERS INPUT PREFIX ROUNDS PARTITIONS [latency]");
      System.exit(2);
    }
    String brokers = args[0], input = args[1], prefix = args[2];
    int rounds = Integer.parseInt(args[3]);
    int partitions = Integer.parseInt(args[4]);
    try (Admin admin = Common.admin(brokers)) {
      if (args.length == 6) {
        latency(admin, brokers, input, prefix, partitions);
        return;
      }
      long end = Common.endOffsets(admin, input);
      Common.rounds(admin, prefix, rounds, partitions, end, (round, app, output, clock) -> {
        StreamsBuilder b = new StreamsBuilder();
        b.stream(input, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
            .filter((k, v) -> keep(v))
            .mapValues(v -> {
              clock.start();
              return shape(v);
            })
            .to(output, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));
        KafkaStreams streams = new KafkaStreams(b.build(), Common.props(app, brokers));
        streams.start();
        Common.awaitCommitted(admin, app, streams, Set.of(input), end, 10);
        return streams;
      });
    }
  }
}
