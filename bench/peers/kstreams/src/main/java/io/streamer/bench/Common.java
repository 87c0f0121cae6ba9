package io.streamer.bench;

import java.lang.management.ManagementFactory;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
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
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsConfig;

/**
 * What the Kafka Streams peers share: the settings of every run, the admin
 * client, the input's end offsets, the wait for the committed offsets, and
 * the timed rounds with their result line
 * {@code round N records R seconds S cpu_seconds C output T} (parsed by
 * go run ./bench/peers).
 */
final class Common {
  private Common() {}

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

  /** An admin client of brokers; the caller closes it. */
  static Admin admin(String brokers) {
    Properties ap = new Properties();
    ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, brokers);
    return Admin.create(ap);
  }

  static com.sun.management.OperatingSystemMXBean os() {
    return (com.sun.management.OperatingSystemMXBean) ManagementFactory.getOperatingSystemMXBean();
  }

  /** The sum of topic's end offsets: how many records it holds. */
  static long endOffsets(Admin admin, String topic) throws Exception {
    Map<TopicPartition, OffsetSpec> latest =
        admin.describeTopics(List.of(topic)).allTopicNames().get().get(topic).partitions().stream()
            .collect(Collectors.toMap(p -> new TopicPartition(topic, p.partition()), p -> OffsetSpec.latest()));
    return admin.listOffsets(latest).all().get().values().stream().mapToLong(r -> r.offset()).sum();
  }

  /** Throws when streams has stopped (ERROR or NOT_RUNNING). */
  static void checkRunning(KafkaStreams streams) {
    KafkaStreams.State s = streams.state();
    if (s == KafkaStreams.State.ERROR || s == KafkaStreams.State.NOT_RUNNING) {
      throw new IllegalStateException("streams stopped: " + s);
    }
  }

  /**
   * Polls, every pollMillis, the offsets the group app has committed on
   * topics until their sum reaches end; throws when streams stops first.
   */
  static void awaitCommitted(Admin admin, String app, KafkaStreams streams, Set<String> topics, long end,
      long pollMillis) throws Exception {
    long committed = 0;
    while (committed < end) {
      Thread.sleep(pollMillis);
      committed = 0;
      Map<TopicPartition, OffsetAndMetadata> offs =
          admin.listConsumerGroupOffsets(app).partitionsToOffsetAndMetadata().get();
      for (Map.Entry<TopicPartition, OffsetAndMetadata> e : offs.entrySet()) {
        if (e.getValue() != null && topics.contains(e.getKey().topic())) {
          committed += e.getValue().offset();
        }
      }
      checkRunning(streams);
    }
  }

  /** Blocks until the parent closes stdin. */
  static void awaitStdinClosed() throws java.io.IOException {
    while (System.in.read() >= 0) {
      // until the parent closes stdin
    }
  }

  /**
   * A round's clock: started by the first record the application sees
   * ({@link #start}, from any stream thread), stopped by {@link #print}.
   */
  static final class Clock {
    private final com.sun.management.OperatingSystemMXBean os;
    private final AtomicLong startNanos = new AtomicLong(0);
    private final AtomicLong startCPU = new AtomicLong(0);

    Clock(com.sun.management.OperatingSystemMXBean os) {
      this.os = os;
    }

    /** Starts the clock at the first call; later calls do nothing. */
    void start() {
      if (startNanos.get() == 0) {
        long cpu = os.getProcessCpuTime();
        if (startNanos.compareAndSet(0, System.nanoTime())) {
          startCPU.set(cpu);
        }
      }
    }

    /** Stops the clock and prints the round's line. */
    void print(int round, long records, String output) {
      long stopNanos = System.nanoTime();
      long stopCPU = os.getProcessCpuTime();
      System.out.printf("round %d records %d seconds %.4f cpu_seconds %.4f output %s%n", round, records,
          (stopNanos - startNanos.get()) / 1e9, (stopCPU - startCPU.get()) / 1e9, output);
      System.out.flush();
    }
  }

  /** One round's application. */
  @FunctionalInterface
  interface Round {
    /**
     * Builds the application app, writing to output and starting clock at
     * its first record, starts it, and returns it once the round's work is
     * committed.
     */
    KafkaStreams run(int round, String app, String output, Clock clock) throws Exception;
  }

  /**
   * Runs rounds rounds in this JVM, so that later rounds run JIT-warm code:
   * round N a fresh application PREFIX-rN to a fresh output topic
   * PREFIX-rN-out of partitions partitions; prints each round's line with
   * records, then closes the application and removes its local state.
   */
  static void rounds(Admin admin, String prefix, int rounds, int partitions, long records, Round r)
      throws Exception {
    com.sun.management.OperatingSystemMXBean os = os();
    for (int round = 1; round <= rounds; round++) {
      String app = prefix + "-r" + round;
      String output = app + "-out";
      admin.createTopics(List.of(new NewTopic(output, partitions, (short) 1))).all().get();
      Clock clock = new Clock(os);
      KafkaStreams streams = r.run(round, app, output, clock);
      clock.print(round, records, output);
      streams.close();
      streams.cleanUp();
    }
  }
}
