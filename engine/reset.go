package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/topology"
)

// ResetOptions configures Reset.
type ResetOptions struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// From is where the group starts reading its source topics again: the
	// first record at or after this time in each partition (the end of a
	// partition with none). Zero: the start of each partition. Ignored
	// when Latest is set.
	From time.Time
	// Latest starts the group at the end of its source topics instead:
	// it then processes only what arrives after the reset.
	Latest bool
	// StateDir is this machine's state directory (Options.StateDir);
	// <StateDir>/<group> is removed. Empty: none is removed. Other
	// machines' directories need no removing: a store whose changelog
	// was deleted is rebuilt when its replica restores it.
	StateDir string
	// DryRun reports what Reset would do, and does nothing.
	DryRun bool
	// ClientOpts are appended to the admin client's options (TLS, SASL).
	ClientOpts []kgo.Opt
}

// ResetReport says what Reset did, or would do.
type ResetReport struct {
	Group string
	// Offsets are where the group now starts in each source partition.
	Offsets kadm.Offsets
	// Deleted are the repartition, merge and changelog topics that
	// existed, and were deleted.
	Deleted []string
	// StateDir is the local state directory removed, "" if none was.
	StateDir string
}

// ErrGroupActive is returned by Reset when replicas are still members of
// the group.
var ErrGroupActive = errors.New("the group has active members")

// Reset makes t's next run process its sources again, from scratch, as
// Kafka Streams' application reset tool does. Every replica must be
// stopped: Reset refuses a group with members. It deletes the topics the
// job made for itself (repartition, merge and changelog topics: the next
// run makes them again, empty), sets the group's committed offsets on its
// source topics to ResetOptions.From (or their ends, with Latest) and
// forgets its offsets on everything else, and removes this machine's state
// directory. It deletes no source or output topic: outputs written before
// the reset stay, and the run after it writes them again.
//
// On error, the report says what was done before it.
func Reset(ctx context.Context, t *topology.Topology, o ResetOptions) (*ResetReport, error) {
	if len(o.Brokers) == 0 {
		return nil, errors.New("engine: reset: no brokers given")
	}
	cl, err := seedClient(o.Brokers, o.ClientOpts)
	if err != nil {
		return nil, fmt.Errorf("engine: reset: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	rep := &ResetReport{Group: t.Group}

	groups, err := adm.DescribeGroups(ctx, t.Group)
	if err != nil {
		return rep, fmt.Errorf("engine: reset: describing group %s: %w", t.Group, err)
	}
	if g, ok := groups[t.Group]; ok && g.Err == nil && len(g.Members) > 0 {
		return rep, fmt.Errorf("engine: reset: %w: %d replicas of group %s are running (%s); stop them first", ErrGroupActive, len(g.Members), t.Group, g.State)
	}

	internal := map[string]bool{}
	var owned []string // the job's own topics
	for _, d := range t.Internal() {
		internal[d.Topic] = true
		owned = append(owned, d.Topic)
	}
	for _, s := range t.Stores() {
		owned = append(owned, t.ChangelogTopic(s))
	}
	var sources []string
	for _, topic := range t.TopicsRead() {
		if !internal[topic] {
			sources = append(sources, topic)
		}
	}
	var starts kadm.ListedOffsets
	switch {
	case o.Latest:
		starts, err = adm.ListEndOffsets(ctx, sources...)
	case o.From.IsZero():
		starts, err = adm.ListStartOffsets(ctx, sources...)
	default:
		starts, err = adm.ListOffsetsAfterMilli(ctx, o.From.UnixMilli(), sources...)
	}
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return rep, fmt.Errorf("engine: reset: listing the offsets of %v: %w", sources, err)
	}
	rep.Offsets = starts.Offsets()
	exist, err := adm.ListTopics(ctx, owned...)
	if err != nil {
		return rep, fmt.Errorf("engine: reset: listing topics: %w", err)
	}
	var deleting []string
	for _, topic := range owned {
		if td, ok := exist[topic]; ok && td.Err == nil {
			deleting = append(deleting, topic)
		}
	}
	dir := ""
	if o.StateDir != "" {
		dir = filepath.Join(o.StateDir, t.Group)
		if _, err := os.Stat(dir); err != nil {
			dir = ""
		}
	}
	if o.DryRun {
		rep.Deleted, rep.StateDir = deleting, dir
		return rep, nil
	}
	if dir != "" {
		// A replica of the group running on this state directory holds
		// its lock (materialiser): its stores are not to be removed.
		lk, err := lockGroupDir(dir)
		if err != nil {
			return rep, fmt.Errorf("engine: reset: %w", err)
		}
		defer lk.Close()
	}

	if len(deleting) > 0 {
		resp, err := adm.DeleteTopics(ctx, deleting...)
		if err == nil {
			err = resp.Error()
		}
		if err != nil {
			return rep, fmt.Errorf("engine: reset: deleting %v: %w", deleting, err)
		}
		rep.Deleted = deleting
		if err := awaitDeleted(ctx, adm, deleting); err != nil {
			return rep, fmt.Errorf("engine: reset: %w", err)
		}
	}
	// The group's offsets go, those of the deleted topics with them; then
	// the sources' are set anew.
	if _, err := adm.DeleteGroup(ctx, t.Group); err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return rep, fmt.Errorf("engine: reset: deleting the offsets of group %s: %w", t.Group, err)
	}
	committed, err := adm.CommitOffsets(ctx, t.Group, rep.Offsets)
	if err == nil {
		err = committed.Error()
	}
	if err != nil {
		return rep, fmt.Errorf("engine: reset: setting the offsets of group %s: %w", t.Group, err)
	}
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			return rep, fmt.Errorf("engine: reset: %w", err)
		}
		rep.StateDir = dir
	}
	return rep, nil
}

// awaitDeleted waits until the broker no longer knows the topics: a run
// started at once would otherwise find them half deleted.
func awaitDeleted(ctx context.Context, adm *kadm.Client, topics []string) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		td, err := adm.ListTopics(ctx, topics...)
		if err == nil && !slices.ContainsFunc(topics, func(topic string) bool { d, ok := td[topic]; return ok && d.Err == nil }) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("topics %v still exist 30 s after their deletion", topics)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}
