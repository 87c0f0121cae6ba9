package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// PlanTopic returns the topic that keeps the ranges of the backfill whose
// group is group: <group>-plan, one partition, one record.
func PlanTopic(group string) string { return group + "-plan" }

// storedRange is a BackfillRange as the plan topic keeps it.
type storedRange struct {
	Topic      string `json:"topic"`
	Partition  int32  `json:"partition"`
	Start, End int64
}

// fixPlan makes every start of a backfill use the ranges of its first:
// relative positions (now, 24h) resolve anew at each start, and a resumed
// run or a replica started later would otherwise have other ends than the
// group's committed offsets were made for. The first start writes its
// ranges to the plan topic; every start then uses the first record there
// (two first starts at once: the earlier write wins for both). With dryRun
// it only reads.
func fixPlan(ctx context.Context, cl *kgo.Client, adm *kadm.Client, group string, plan *BackfillPlan, dryRun bool, extra []kgo.Opt, brokers []string) error {
	topic := PlanTopic(group)
	td, err := adm.ListTopics(ctx, topic)
	if err != nil {
		return fmt.Errorf("listing %s: %w", topic, err)
	}
	if d, ok := td[topic]; !ok || d.Err != nil {
		if dryRun {
			return nil
		}
		resp, err := adm.CreateTopic(ctx, 1, -1, map[string]*string{"retention.ms": kadm.StringPtr("-1")}, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("creating %s: %w", topic, err)
		}
		var rs []storedRange
		for _, r := range plan.Ranges {
			rs = append(rs, storedRange{r.Topic, r.Partition, r.Start, r.End})
		}
		b, err := json.Marshal(rs)
		if err != nil {
			return err
		}
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Partition: 0, Value: b}).FirstErr(); err != nil {
			return fmt.Errorf("writing the plan to %s: %w", topic, err)
		}
	}
	b, err := firstRecord(ctx, brokers, extra, topic)
	if err != nil {
		return err
	}
	var rs []storedRange
	if err := json.Unmarshal(b, &rs); err != nil {
		return fmt.Errorf("the plan in %s: %w", topic, err)
	}
	plan.Ranges, plan.Offsets = plan.Ranges[:0], 0
	for _, r := range rs {
		plan.Ranges = append(plan.Ranges, BackfillRange{Topic: r.Topic, Partition: r.Partition, Start: r.Start, End: r.End, Committed: -1})
		plan.Offsets += max(0, r.End-r.Start)
	}
	return nil
}

// firstRecord returns the value of the record at offset 0 of partition 0.
func firstRecord(ctx context.Context, brokers []string, extra []kgo.Opt, topic string) ([]byte, error) {
	cl, err := seedClient(brokers, append([]kgo.Opt{kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().At(0)}})}, extra...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil, fmt.Errorf("reading the plan in %s: %w", topic, ctx.Err())
		}
		if err := fs.Err(); err != nil {
			return nil, fmt.Errorf("reading the plan in %s: %w", topic, err)
		}
		if recs := fs.Records(); len(recs) > 0 {
			return recs[0].Value, nil
		}
	}
}
