package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"

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
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, extra...)...)
	if err != nil {
		return fmt.Errorf("engine: kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	want := map[string]*topology.Dataset{}
	for _, d := range append(t.Sources(), t.Sinks()...) {
		want[d.Topic] = d
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
		if err := ensureChangelogs(ctx, adm, t, details, log); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("engine: %w", errors.Join(errs...))
	}
	return nil
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

// ensureChangelogs creates the compacted changelog topic of each state
// store, with one partition per source partition: partition i of a
// changelog holds the state of source partition i.
func ensureChangelogs(ctx context.Context, adm *kadm.Client, t *topology.Topology, sources kadm.TopicDetails, log *slog.Logger) error {
	stores := t.Stores()
	if len(stores) == 0 {
		return nil
	}
	parts, repl := 0, 1
	for _, d := range t.Sources() {
		td := sources[d.Topic]
		n := len(td.Partitions)
		if parts != 0 && n != parts {
			return fmt.Errorf("stateful pipes need co-partitioned sources; %s has %d partitions, another source %d", d.Topic, n, parts)
		}
		parts = n
		for _, p := range td.Partitions {
			repl = max(repl, len(p.Replicas))
		}
	}
	var errs []error
	for _, s := range stores {
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
