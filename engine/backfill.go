package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/topology"
)

// validBackfillID is what a backfill id may be: it names a consumer
// group, topics, transactional ids and a state directory.
var validBackfillID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// BackfillGroup returns the consumer group of backfill id of a topology
// whose live group is live: <live>-backfill-<id>. Compiled under it
// (topology.WithGroup), the topology has its own transactional ids,
// internal and changelog topics and state directory.
func BackfillGroup(live, id string) (string, error) {
	if !validBackfillID.MatchString(id) || strings.Contains(id, "..") {
		return "", fmt.Errorf("backfill id %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", id)
	}
	return live + "-backfill-" + id, nil
}

// BackfillOptions configures PlanBackfill and StartBackfill.
type BackfillOptions struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// From and To bound the range of each source partition: from the
	// first offset of From to the first offset of To, excluded. With
	// explicit offset lists, only the partitions listed in both are
	// processed.
	From, To Target
	// ClientOpts are appended to the admin client's options (TLS, SASL).
	ClientOpts []kgo.Opt
}

// BackfillRange is the range of one source partition.
type BackfillRange struct {
	Topic      string
	Partition  int32
	Start, End int64
	// Committed is the backfill group's committed offset when it was
	// looked at: -1 for a new backfill.
	Committed int64
}

// BackfillPlan is what a backfill processes.
type BackfillPlan struct {
	Ranges []BackfillRange
	// Offsets is the sum of End-Start: the records to process, plus the
	// transaction markers among them.
	Offsets int64
	// Resumed is set when the backfill group has committed an offset
	// past a range's Start: an earlier run (or a replica started before
	// this one) has processed part of the range, and the run goes on from
	// the committed offsets. Committed offsets that are all the starts
	// (set by another replica of the same first start, or by a start
	// stopped before its first commit) are a fresh start.
	Resumed bool
	// Fixed is set when the ranges are those an earlier start of the
	// backfill wrote to its plan topic, not those just resolved.
	Fixed bool
}

// Bounds returns the plan as the engine's Options.Bounds.
func (p *BackfillPlan) Bounds() *Bounds {
	b := &Bounds{End: map[string]map[int32]int64{}, Start: map[string]map[int32]int64{}}
	for _, r := range p.Ranges {
		if b.End[r.Topic] == nil {
			b.End[r.Topic], b.Start[r.Topic] = map[int32]int64{}, map[int32]int64{}
		}
		b.End[r.Topic][r.Partition], b.Start[r.Topic][r.Partition] = r.End, r.Start
	}
	return b
}

// ErrEmptyRange is returned by PlanBackfill when the range holds no
// record in any partition.
var ErrEmptyRange = errors.New("the range holds no records")

// PlanBackfill resolves o.From and o.To to a range of offsets in every
// partition of t's source topics. t may be compiled under any group:
// only its sources count.
func PlanBackfill(ctx context.Context, t *topology.Topology, o BackfillOptions) (*BackfillPlan, error) {
	if len(o.Brokers) == 0 {
		return nil, errors.New("engine: backfill: no brokers given")
	}
	if o.From.Kind == TargetTime && o.To.Kind == TargetTime && o.From.Time.After(o.To.Time) {
		return nil, fmt.Errorf("engine: backfill: --from %s is after --to %s", o.From, o.To)
	}
	if o.From.Kind == TargetLatest && o.To.Kind != TargetLatest {
		return nil, fmt.Errorf("engine: backfill: --from %s is after --to %s", o.From, o.To)
	}
	cl, err := seedClient(o.Brokers, o.ClientOpts)
	if err != nil {
		return nil, fmt.Errorf("engine: backfill: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics := t.ExternalTopicsRead()
	from, err := o.From.Resolve(ctx, adm, o.Brokers, o.ClientOpts, topics)
	if err != nil {
		return nil, fmt.Errorf("engine: backfill: --from: %w", err)
	}
	to, err := o.To.Resolve(ctx, adm, o.Brokers, o.ClientOpts, topics)
	if err != nil {
		return nil, fmt.Errorf("engine: backfill: --to: %w", err)
	}
	_, ends, err := listBounds(ctx, adm, topics)
	if err != nil {
		return nil, fmt.Errorf("engine: backfill: %w", err)
	}
	plan := &BackfillPlan{}
	var errs []error
	for _, e := range ends.Offsets().Sorted() {
		r := BackfillRange{Topic: e.Topic, Partition: e.Partition, Start: e.At, End: e.At, Committed: -1}
		s, okS := from.Lookup(e.Topic, e.Partition)
		f, okE := to.Lookup(e.Topic, e.Partition)
		if okS && okE {
			r.Start, r.End = s.At, f.At
		}
		if r.Start > r.End {
			errs = append(errs, fmt.Errorf("%s[%d]: --from %s is offset %d, after --to %s at offset %d", r.Topic, r.Partition, o.From, r.Start, o.To, r.End))
		}
		plan.Offsets += max(0, r.End-r.Start)
		plan.Ranges = append(plan.Ranges, r)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("engine: backfill: %w", errors.Join(errs...))
	}
	if plan.Offsets == 0 {
		return nil, fmt.Errorf("engine: backfill: %w between --from %s and --to %s in %s", ErrEmptyRange, o.From, o.To, strings.Join(topics, ", "))
	}
	return plan, nil
}

// StartBackfill readies the group of bt (the topology compiled under the
// backfill's group) for plan. The first start of a backfill keeps plan's
// ranges in the backfill's plan topic (PlanTopic); a later one (a resume,
// another replica) replaces plan's with them (plan.Fixed). Then, when the
// group has no committed offsets on its sources, it commits each range's
// start; when it has some, the backfill goes on from them (the ranges'
// Committed), and plan.Resumed is set if one is past its range's start.
// With dryRun it only looks. A replica of the same backfill that started
// first has set them already: the coordinator refuses the commit, and
// StartBackfill reads them again.
func StartBackfill(ctx context.Context, bt *topology.Topology, plan *BackfillPlan, o BackfillOptions, dryRun bool) error {
	cl, err := seedClient(o.Brokers, o.ClientOpts)
	if err != nil {
		return fmt.Errorf("engine: backfill: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	resolved := slices.Clone(plan.Ranges)
	if err := fixPlan(ctx, cl, adm, bt.Group, plan, dryRun, o.ClientOpts, o.Brokers); err != nil {
		return fmt.Errorf("engine: backfill: %w", err)
	}
	plan.Fixed = !slices.EqualFunc(resolved, plan.Ranges, func(a, b BackfillRange) bool {
		return a.Topic == b.Topic && a.Partition == b.Partition && a.Start == b.Start && a.End == b.End
	})
	topics := bt.ExternalTopicsRead()
	for attempt := 0; ; attempt++ {
		committed, err := adm.FetchOffsetsForTopics(ctx, bt.Group, topics...)
		if err == nil {
			err = committed.Error()
		}
		if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
			return fmt.Errorf("engine: backfill: fetching the offsets of group %s: %w", bt.Group, err)
		}
		plan.Resumed = false
		started := false // the starts are committed, by this start or another replica's
		for i, r := range plan.Ranges {
			plan.Ranges[i].Committed = -1
			if c, ok := committed.Lookup(r.Topic, r.Partition); ok && c.Err == nil && c.At >= 0 {
				plan.Ranges[i].Committed = c.At
				started = true
				plan.Resumed = plan.Resumed || c.At != r.Start
			}
		}
		if started || dryRun {
			return nil
		}
		starts := kadm.Offsets{}
		for _, r := range plan.Ranges {
			starts.AddOffset(r.Topic, r.Partition, r.Start, -1)
		}
		resp, err := adm.CommitOffsets(ctx, bt.Group, starts)
		if err == nil {
			err = resp.Error()
		}
		if err == nil {
			return nil
		}
		if !groupActive(err) || attempt > 0 {
			return fmt.Errorf("engine: backfill: setting the start offsets of group %s: %w", bt.Group, err)
		}
	}
}

// RedirectSinks points t's sinks and dead letters at other topics: the
// dataset named in to gets that topic, every other gets its topic with
// suffix appended ("" keeps it). A redirected topic that does not exist
// is created like the one it replaces (the dataset's create:, or the
// live topic's partition count and replication). It returns the topics t
// now writes that the live topology live writes too.
func RedirectSinks(ctx context.Context, t, live *topology.Topology, to map[string]string, suffix string, brokers []string, clientOpts []kgo.Opt) (liveSinks []string, err error) {
	sinks := t.Sinks()
	if t.DeadLetter != nil {
		sinks = append(sinks, t.DeadLetter)
	}
	byName := map[string]*topology.Dataset{}
	for _, d := range sinks {
		if d.Repartition == nil { // not the sink of a repartition topic
			byName[d.Name] = d
		}
	}
	var unknown []string
	for name := range to {
		if byName[name] == nil {
			unknown = append(unknown, name)
		}
	}
	if len(unknown) > 0 {
		slices.Sort(unknown)
		return nil, fmt.Errorf("--sink: %s: not a sink of the topology (its sinks: %s)", strings.Join(unknown, ", "), strings.Join(slices.Sorted(maps.Keys(byName)), ", "))
	}
	var redirected []*topology.Dataset
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		d := byName[name]
		topic, ok := to[name]
		if !ok && suffix != "" {
			topic, ok = d.Topic+suffix, true
		}
		if !ok || topic == d.Topic {
			continue
		}
		d.Topic = topic
		redirected = append(redirected, d)
	}
	if len(redirected) > 0 {
		if err := createLike(ctx, redirected, live, brokers, clientOpts); err != nil {
			return nil, err
		}
	}
	liveTopics := map[string]bool{}
	for _, d := range live.Sinks() {
		liveTopics[d.Topic] = true
	}
	if live.DeadLetter != nil {
		liveTopics[live.DeadLetter.Topic] = true
	}
	for _, name := range slices.Sorted(maps.Keys(byName)) {
		if d := byName[name]; liveTopics[d.Topic] && !slices.Contains(liveSinks, d.Topic) {
			liveSinks = append(liveSinks, d.Topic)
		}
	}
	return liveSinks, nil
}

// createLike gives each redirected dataset that declares no create: the
// partition count and replication of the live topic it replaced, so that
// the engine creates its new topic if it is missing.
func createLike(ctx context.Context, ds []*topology.Dataset, live *topology.Topology, brokers []string, clientOpts []kgo.Opt) error {
	var need []string
	for _, d := range ds {
		if d.Create == nil {
			need = append(need, live.Datasets[d.Name].Topic)
		}
	}
	if len(need) == 0 {
		return nil
	}
	cl, err := seedClient(brokers, clientOpts)
	if err != nil {
		return fmt.Errorf("engine: backfill: %w", err)
	}
	defer cl.Close()
	td, err := kadm.NewClient(cl).ListTopics(ctx, need...)
	if err != nil {
		return fmt.Errorf("engine: backfill: listing %v: %w", need, err)
	}
	for _, d := range ds {
		if d.Create != nil {
			continue
		}
		liveTopic := live.Datasets[d.Name].Topic
		t, ok := td[liveTopic]
		if !ok || t.Err != nil || len(t.Partitions) == 0 {
			continue // the engine reports the new topic missing, if it is
		}
		repl := 0
		for _, p := range t.Partitions {
			repl = max(repl, len(p.Replicas))
		}
		d.Create = &topology.Create{Partitions: len(t.Partitions), Replication: repl}
	}
	return nil
}

// CleanupBackfill deletes what a finished backfill made for itself: its
// internal and changelog topics, its consumer group and this machine's
// state directory of it (bt is the topology compiled under the backfill's
// group). Its sink topics are left: they are its output. Like Reset, it
// refuses a group with members.
func CleanupBackfill(ctx context.Context, bt *topology.Topology, o ResetOptions) (*ResetReport, error) {
	o.Latest, o.From = false, time.Time{}
	rep, err := Reset(ctx, bt, o)
	if err != nil || o.DryRun {
		return rep, err
	}
	// Reset left the group with its start offsets: it goes too, and the
	// plan topic.
	cl, err := seedClient(o.Brokers, o.ClientOpts)
	if err != nil {
		return rep, fmt.Errorf("engine: backfill cleanup: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	if resp, err := adm.DeleteTopic(ctx, PlanTopic(bt.Group)); err == nil && resp.Err == nil {
		rep.Deleted = append(rep.Deleted, PlanTopic(bt.Group))
	} else if err == nil && !errors.Is(resp.Err, kerr.UnknownTopicOrPartition) {
		return rep, fmt.Errorf("engine: backfill cleanup: deleting %s: %w", PlanTopic(bt.Group), resp.Err)
	}
	if _, err := adm.DeleteGroup(ctx, bt.Group); err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		if groupActive(err) {
			err = fmt.Errorf("%w: %w", ErrGroupActive, err)
		}
		return rep, fmt.Errorf("engine: backfill cleanup: deleting group %s: %w", bt.Group, err)
	}
	rep.Offsets = nil
	return rep, nil
}
