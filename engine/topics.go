package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/topology"
)

// EnsureTopics checks that every topic the topology reads or writes exists,
// creating the ones it declares with create:. Missing topics that it does not
// own are an error that names them all. Declared partition counts are
// checked too.
func EnsureTopics(ctx context.Context, t *topology.Topology, brokers []string, extra []kgo.Opt, log *slog.Logger) error {
	cl, err := seedClient(brokers, extra)
	if err != nil {
		return fmt.Errorf("engine: kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	want := map[string]*topology.Dataset{}
	for _, d := range append(t.Sources(), t.Sinks()...) {
		if d.Repartition == nil && d.RepartitionOf == nil && d.Sides == nil { // created below
			want[d.Topic] = d
		}
	}
	if t.DeadLetter != nil {
		want[t.DeadLetter.Topic] = t.DeadLetter
	}
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)

	details, err := adm.ListTopics(ctx, names...)
	if err != nil {
		return fmt.Errorf("engine: listing topics on %v: %w", brokers, err)
	}
	var missing []string
	var errs []error
	for _, name := range names {
		d := want[name]
		td, ok := details[name]
		exists := ok && td.Err == nil
		if ok && td.Err != nil && !errors.Is(td.Err, kerr.UnknownTopicOrPartition) {
			errs = append(errs, fmt.Errorf("topic %q: %w", name, td.Err))
			continue
		}
		if !exists {
			if d.Create == nil {
				missing = append(missing, name)
				continue
			}
			resp, err := adm.CreateTopic(ctx, int32(d.Create.Partitions), int16(d.Create.Replication), configs(d.Create.Config), name)
			if err == nil {
				err = resp.Err
			}
			if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
				errs = append(errs, fmt.Errorf("creating topic %q: %w", name, err))
				continue
			}
			log.Info("created topic", "topic", name, "dataset", d.Name, "partitions", d.Create.Partitions)
			continue
		}
		if d.Partitions > 0 && len(td.Partitions) != d.Partitions {
			errs = append(errs, fmt.Errorf("topic %q of dataset %q has %d partitions; the topology declares %d", name, d.Name, len(td.Partitions), d.Partitions))
		}
	}
	if len(missing) > 0 {
		errs = append(errs, fmt.Errorf("missing topics: %s (create them, or declare create: on the datasets the job owns)", strings.Join(missing, ", ")))
	}
	if len(errs) == 0 {
		parts, repl := map[string]int{}, map[string]int{}
		for name, td := range details {
			parts[name] = len(td.Partitions)
			for _, p := range td.Partitions {
				repl[name] = max(repl[name], len(p.Replicas))
			}
		}
		if err := ensureInternal(ctx, adm, t, parts, repl, log); err != nil {
			errs = append(errs, err)
		} else if err := ensureChangelogs(ctx, adm, t, parts, repl, log); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("engine: %w", errors.Join(errs...))
	}
	return nil
}

// seedClient returns a client of the brokers with the extra options (TLS,
// SASL) appended: the one-off clients of topic checks, restores, table
// reads and resets.
func seedClient(brokers []string, extra []kgo.Opt) (*kgo.Client, error) {
	return kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, extra...)...)
}

func configs(m map[string]string) map[string]*string {
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]*string, len(m))
	for k, v := range m {
		out[k] = kadm.StringPtr(v)
	}
	return out
}

// ensureInternal creates the repartition and merge topics the compiler
// inserted, upstream ones first: each gets the partitions: its dataset
// declares, or else the largest partition count among the sources whose
// tasks write it, and their largest replication factor (the broker's default
// when none is known). parts and repl get
// the counts of the topics made.
func ensureInternal(ctx context.Context, adm *kadm.Client, t *topology.Topology, parts, repl map[string]int, log *slog.Logger) error {
	var errs []error
	for _, r := range t.Internal() { // a chain's upstream topic is counted first
		n, rf := r.Partitions, -1 // -1: the broker's default, if no source's is known
		for _, src := range t.Feeders(r) {
			if r.Partitions == 0 {
				n = max(n, parts[src.Topic])
			}
			if f := repl[src.Topic]; f > 0 {
				rf = max(rf, f)
			}
		}
		if n == 0 {
			errs = append(errs, fmt.Errorf("internal topic %s: no partition count (its sources are unknown)", r.Topic))
			continue
		}
		resp, err := adm.CreateTopic(ctx, int32(n), int16(rf), internalConfig, r.Topic)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
			log.Info("created internal topic", "topic", r.Topic, "dataset", r.Name, "partitions", n)
		case errors.Is(err, kerr.TopicAlreadyExists):
			// Its records are placed by key hash: a count that
			// changed would send a key's records to two partitions.
			td, derr := adm.ListTopics(ctx, r.Topic)
			if got := len(td[r.Topic].Partitions); derr == nil && got > 0 && got != n {
				errs = append(errs, fmt.Errorf("internal topic %s has %d partitions; the topology wants %d (delete it with the group's state to change the count)", r.Topic, got, n))
			}
			keepForever(ctx, adm, r.Topic, log)
		default:
			errs = append(errs, fmt.Errorf("creating internal topic %s: %w", r.Topic, err))
			continue
		}
		parts[r.Topic], repl[r.Topic] = n, rf
	}
	return errors.Join(errs...)
}

// internalConfig is the config of the repartition and merge topics: they
// keep their records until the job purges them (Options.PurgeInterval).
// Under the broker's default retention, a segment whose records carry old
// timestamps, as a replay of old data writes (records keep their source
// timestamps), would be deleted as soon as it rolls, maybe before the job
// read it: records lost.
var internalConfig = map[string]*string{"retention.ms": kadm.StringPtr("-1")}

// keepForever sets an existing internal topic's retention to internalConfig's,
// if it is not already: a topic made by an older version, or by hand. A
// replica without the right to alter it logs a warning and runs on.
//
// Replicas that start together race to create the topic: the one that
// loses may ask a broker that does not know the topic yet, which answers
// UNKNOWN_TOPIC_OR_PARTITION. That answer is retried for a while.
func keepForever(ctx context.Context, adm *kadm.Client, topic string, log *slog.Logger) {
	err := keepForeverOnce(ctx, adm, topic, log)
retry:
	for wait := 50 * time.Millisecond; errors.Is(err, kerr.UnknownTopicOrPartition) && wait <= 2*time.Second; wait *= 2 {
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			err = errors.Join(err, ctx.Err())
			break retry
		}
		err = keepForeverOnce(ctx, adm, topic, log)
	}
	if err != nil {
		log.Warn("cannot make an internal topic keep its records until purged; records older than its retention.ms may be deleted before the job reads them", "topic", topic, "err", err)
	}
}

// keepForeverOnce is one try of keepForever.
func keepForeverOnce(ctx context.Context, adm *kadm.Client, topic string, log *slog.Logger) error {
	rcs, err := adm.DescribeTopicConfigs(ctx, topic)
	if err == nil {
		var rc kadm.ResourceConfig
		if rc, err = rcs.On(topic, nil); err == nil {
			err = rc.Err
		}
		for _, c := range rc.Configs {
			if err == nil && c.Key == "retention.ms" && c.MaybeValue() == "-1" {
				return nil
			}
		}
	}
	if err == nil {
		var resp kadm.AlterConfigsResponses
		resp, err = adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: internalConfig["retention.ms"]}}, topic)
		if err == nil {
			var r kadm.AlterConfigsResponse
			if r, err = resp.On(topic, nil); err == nil {
				err = r.Err
			}
		}
		if err == nil {
			log.Info("internal topic now keeps its records until purged (retention.ms -1)", "topic", topic)
		}
	}
	return err
}

// ensureChangelogs creates the compacted changelog topic of each state
// store, with one partition per partition of the sources of the pipes that
// use it: partition i of a changelog holds the state of source partition i.
func ensureChangelogs(ctx context.Context, adm *kadm.Client, t *topology.Topology, partsOf, replOf map[string]int, log *slog.Logger) error {
	var errs []error
	for _, s := range t.Stores() {
		parts, repl := 0, -1 // -1: the broker's default, if no source's is known
		var first string
		for _, p := range t.Pipes {
			if !slices.Contains(p.Stores, s) {
				continue
			}
			for _, d := range t.UpstreamSources(p) {
				n := partsOf[d.Topic]
				if parts != 0 && n != parts {
					errs = append(errs, fmt.Errorf("store %s needs co-partitioned sources; %s has %d partitions, %s has %d", s, d.Topic, n, first, parts))
				}
				if parts == 0 {
					parts, first = n, d.Topic
				}
				if f := replOf[d.Topic]; f > 0 {
					repl = max(repl, f)
				}
			}
		}
		if parts == 0 {
			continue
		}
		topic := t.ChangelogTopic(s)
		cfg := map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}
		resp, err := adm.CreateTopic(ctx, int32(parts), int16(repl), cfg, topic)
		if err == nil {
			err = resp.Err
		}
		switch {
		case err == nil:
			log.Info("created changelog topic", "topic", topic, "store", s, "partitions", parts)
		case errors.Is(err, kerr.TopicAlreadyExists):
			// An existing changelog must have the sources' partition count.
			// One that another replica has just created may not show its
			// partitions yet; its creator checked them.
			td, derr := adm.ListTopics(ctx, topic)
			if got := len(td[topic].Partitions); derr == nil && got > 0 && got != parts {
				errs = append(errs, fmt.Errorf("changelog %s has %d partitions; the sources have %d", topic, got, parts))
			}
		default:
			errs = append(errs, fmt.Errorf("creating changelog %s: %w", topic, err))
		}
	}
	return errors.Join(errs...)
}
