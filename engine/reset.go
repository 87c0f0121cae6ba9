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

	"github.com/streamerio/streamer/state"
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
	// DryRun reports what Reset would do, and does nothing. It works
	// while replicas run (ResetReport.Members counts them).
	DryRun bool
	// ClientOpts are appended to the admin client's options (TLS, SASL).
	ClientOpts []kgo.Opt

	// step, when set, is told each step done (tests).
	step func(string)
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
	// Members is how many replicas the group had when Reset began: a
	// dry run reports them; a reset with any is refused.
	Members int
}

// ErrGroupActive is returned by Reset when replicas are still members of
// the group.
var ErrGroupActive = errors.New("the group has active members")

// Reset makes t's next run process its sources again, from scratch, as
// Kafka Streams' application reset tool does. Every replica must be
// stopped: Reset refuses a group with members, through the coordinator's
// own refusals (no check-then-act), and fails if a replica joins while it
// runs. It deletes the topics the
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
	if g, ok := groups[t.Group]; ok && g.Err == nil {
		rep.Members = len(g.Members)
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
		// The group names a directory to remove: it must be one plain
		// element under the state directory, whatever the topology says
		// (the compiler checks names; this is the last line of defence).
		if err := state.CheckPathName(t.Group); err != nil {
			return rep, fmt.Errorf("engine: reset: group %q cannot name a directory inside the state directory %s: %w", t.Group, o.StateDir, err)
		}
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
		if errors.Is(err, errLocked) {
			return rep, fmt.Errorf("engine: reset: %w: a replica of group %s runs on this machine (it holds %s); stop them first", ErrGroupActive, t.Group, dir)
		}
		if err != nil {
			return rep, fmt.Errorf("engine: reset: %w", err)
		}
		defer lk.Close()
	}

	// No check-then-act: the coordinator refuses to delete a group with
	// members, and refuses offsets from outside a group with members,
	// atomically. The group goes first; its new offsets are set at once,
	// so a replica that joins from then on starts from them; the job's
	// topics and state go next; and the group is deleted and its offsets
	// set once more at the end, which fails if any replica joined
	// meanwhile.
	if err := emptyGroup(ctx, adm, t.Group, rep.Offsets); err != nil {
		return rep, fmt.Errorf("engine: reset: %w", err)
	}
	if o.step != nil {
		o.step("group emptied")
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
	if dir != "" {
		// Through an os.Root: a symbolic link cannot lead the removal out
		// of the state directory either.
		root, err := os.OpenRoot(o.StateDir)
		if err == nil {
			err = errors.Join(root.RemoveAll(t.Group), root.Close())
		}
		if err != nil {
			return rep, fmt.Errorf("engine: reset: removing the state directory %s: %w", dir, err)
		}
		rep.StateDir = dir
	}
	joined := func(err error) error {
		return fmt.Errorf("engine: reset: %w: a replica joined group %s while it was being reset, and may have run on what the reset deleted; stop every replica and reset again: %w", ErrGroupActive, t.Group, err)
	}
	if err := emptyGroup(ctx, adm, t.Group, rep.Offsets); err != nil {
		return rep, joined(err)
	}
	// A replica that joined and left in between made its topics again.
	if back, err := adm.ListTopics(ctx, deleting...); err == nil {
		for _, topic := range deleting {
			if d, ok := back[topic]; ok && d.Err == nil {
				return rep, joined(fmt.Errorf("%s exists again", topic))
			}
		}
	}
	return rep, nil
}

// emptyGroup deletes group (the coordinator refuses while it has members)
// and commits offsets to it (refused as well once a member has joined).
func emptyGroup(ctx context.Context, adm *kadm.Client, group string, offsets kadm.Offsets) error {
	if _, err := adm.DeleteGroup(ctx, group); err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		if errors.Is(err, kerr.NonEmptyGroup) {
			return fmt.Errorf("%w: replicas of group %s are running; stop them first", ErrGroupActive, group)
		}
		return fmt.Errorf("deleting group %s: %w", group, err)
	}
	committed, err := adm.CommitOffsets(ctx, group, offsets)
	if err == nil {
		err = committed.Error()
	}
	if errors.Is(err, kerr.UnknownMemberID) || errors.Is(err, kerr.IllegalGeneration) || errors.Is(err, kerr.RebalanceInProgress) {
		return fmt.Errorf("%w: a replica joined group %s: %w", ErrGroupActive, group, err)
	}
	if err != nil {
		return fmt.Errorf("setting the offsets of group %s: %w", group, err)
	}
	return nil
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
