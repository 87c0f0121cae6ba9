package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/topology"
)

// start checks, once, that every table topic exists (creating those the
// job owns) and that partitioned tables have the partition counts of the
// streams that join them.
func (s *tableSyncer) start() error {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.started {
		return s.startErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.check(ctx)
	if errors.Is(err, pipes.ErrUnavailable) {
		return err
	}
	s.started, s.startErr = true, err
	return err
}

func (s *tableSyncer) check(ctx context.Context) error {
	cl, err := s.m.client()
	if err != nil {
		return err
	}
	adm := kadm.NewClient(cl)
	tables := s.top.Tables()
	var topics []string
	for _, d := range tables {
		topics = append(topics, d.Topic)
	}
	for _, src := range s.top.Sources() {
		topics = append(topics, src.Topic)
	}
	md, err := adm.Metadata(ctx, topics...)
	if err != nil {
		return fmt.Errorf("%w: metadata of the table topics: %w", pipes.ErrUnavailable, err)
	}
	var errs []error
	for _, d := range tables {
		td, ok := md.Topics[d.Topic]
		if ok && td.Err == nil && len(td.Partitions) > 0 {
			continue
		}
		if d.Create == nil {
			errs = append(errs, fmt.Errorf("table %q: topic %s does not exist (create it, or declare create: on the dataset)", d.Name, d.Topic))
			continue
		}
		cfg := configs(d.Create.Config)
		if cfg == nil {
			cfg = map[string]*string{}
		}
		if _, set := cfg["cleanup.policy"]; !set {
			cfg["cleanup.policy"] = kadm.StringPtr("compact") // a table keeps the latest value per key
		}
		resp, err := adm.CreateTopic(ctx, int32(d.Create.Partitions), int16(d.Create.Replication), cfg, d.Topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("table %q: creating topic %s: %w", d.Name, d.Topic, err))
			continue
		}
		s.log.Info("created table topic", "topic", d.Topic, "dataset", d.Name, "partitions", d.Create.Partitions)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := s.refresh(ctx); err != nil {
		return err
	}
	for _, d := range tables {
		if d.Table != topology.TablePartitioned {
			continue
		}
		nt := s.meta[d.Topic].partitions
		for _, p := range s.top.Joiners(d) {
			for _, src := range s.top.UpstreamSources(p) {
				ns := len(md.Topics[src.Topic].Partitions)
				if ns != nt {
					errs = append(errs, fmt.Errorf("partitioned table %q (topic %s) has %d partitions, but stream %q (topic %s), which pipe %q joins with it, has %d: they must be co-partitioned (same partition count, same key); repartition one of them, or declare the table global",
						d.Name, d.Topic, nt, src.Name, src.Topic, p.Name, ns))
				}
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// refresh reads the table topics' ids, partition counts and leaders.
func (s *tableSyncer) refresh(ctx context.Context) error {
	cl, err := s.m.client()
	if err != nil {
		return err
	}
	var topics []string
	for _, d := range s.top.Tables() {
		topics = append(topics, d.Topic)
	}
	md, err := kadm.NewClient(cl).Metadata(ctx, topics...)
	if err != nil {
		return fmt.Errorf("%w: engine: metadata of the table topics: %w", pipes.ErrUnavailable, err)
	}
	meta := map[string]topicMeta{}
	for _, t := range topics {
		td := md.Topics[t]
		if td.Err != nil || len(td.Partitions) == 0 {
			return fmt.Errorf("%w: engine: metadata of table topic %s: %v", pipes.ErrUnavailable, t, td.Err)
		}
		m := topicMeta{id: td.ID, partitions: len(td.Partitions), leaders: map[int32]int32{}}
		for _, p := range td.Partitions {
			m.leaders[p.Partition] = p.Leader
		}
		meta[t] = m
	}
	s.mu.Lock()
	s.meta = meta
	s.mu.Unlock()
	return nil
}
