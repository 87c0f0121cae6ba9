package io.streamer.bench;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.lang.management.ManagementFactory;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
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

  /** The settings of every run: exactly_once_v2, 100 ms commits, two threads, snappy, batch and linger tuned. */
  static Properties props(String app, String brokers) {
    Properties p = new Properties();
    p.put(StreamsConfig.APPLICATION_ID_CONFIG, app);
    p.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    p.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
    p.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 100);
    p.put(StreamsConfig.NUM_STREAM_THREADS_CONFIG, 2);
    p.put(StreamsConfig.STATE_DIR_CONFIG, System.getProperty("java.io.tmpdir") + "/peers-kstreams-state");
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
    p.put(StreamsConfig.consumerPrefix(ConsumerConfig.MAX_POLL_RECORDS_CONFIG), 5000);
    p.put(StreamsConfig.producerPrefix(ProducerConfig.COMPRESSION_TYPE_CONFIG), "snappy");
    p.put(StreamsConfig.producerPrefix(ProducerConfig.BATCH_SIZE_CONFIG), 512 * 1024);
    p.put(StreamsConfig.producerPrefix(ProducerConfig.LINGER_MS_CONFIG), 5);
    return p;
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
    KafkaStreams streams = new KafkaStreams(b.build(), props(app, brokers));
    streams.start();
    while (System.in.read() >= 0) {
      // until the parent closes stdin
    }
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
    Properties ap = new Properties();
    ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    com.sun.management.OperatingSystemMXBean os =
        (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
    try (Admin admin = Admin.create(ap)) {
      if (args.length == 6) {
        latency(admin, brokers, input, prefix, partitions);
        return;
      }
      Map<TopicPartition, OffsetSpec> latest =
          admin.describeTopics(List.of(input)).allTopicNames().get().get(input).partitions().stream()
              .collect(Collectors.toMap(p -> new TopicPartition(input, p.partition()), p -> OffsetSpec.latest()));
      long end = admin.listOffsets(latest).all().get().values().stream().mapToLong(r -> r.offset()).sum();
      for (int round = 1; round <= rounds; round++) {
        String app = prefix + "-r" + round;
        String output = app + "-out";
        admin.createTopics(List.of(new NewTopic(output, partitions, (short) 1))).all().get();

        StreamsBuilder b = new StreamsBuilder();
        AtomicLong startNanos = new AtomicLong(0);
        AtomicLong startCPU = new AtomicLong(0);
        b.stream(input, Consumed.with(Serdes.ByteArray(), Serdes.ByteArray()))
            .filter((k, v) -> keep(v))
            .mapValues(v -> {
              if (startNanos.get() == 0) {
                long cpu = os.getProcessCpuTime();
                if (startNanos.compareAndSet(0, System.nanoTime())) {
                  startCPU.set(cpu);
                }
              }
              return shape(v);
            })
            .to(output, Produced.with(Serdes.ByteArray(), Serdes.ByteArray()));

        Properties p = props(app, brokers);
        KafkaStreams streams = new KafkaStreams(b.build(), p);
        streams.start();
        long committed = 0;
        while (committed < end) {
          Thread.sleep(10);
          committed = 0;
          Map<TopicPartition, OffsetAndMetadata> offs =
              admin.listConsumerGroupOffsets(app).partitionsToOffsetAndMetadata().get();
          for (OffsetAndMetadata o : offs.values()) {
            if (o != null) {
              committed += o.offset();
            }
          }
          if (streams.state() == KafkaStreams.State.ERROR || streams.state() == KafkaStreams.State.NOT_RUNNING) {
            throw new IllegalStateException("streams stopped: " + streams.state());
          }
        }
        long stopNanos = System.nanoTime();
        long stopCPU = os.getProcessCpuTime();
        System.out.printf("round %d records %d seconds %.4f cpu_seconds %.4f output %s%n", round, end,
            (stopNanos - startNanos.get()) / 1e9, (stopCPU - startCPU.get()) / 1e9, output);
        System.out.flush();
        streams.close();
        streams.cleanUp();
      }
    }
  }
}
