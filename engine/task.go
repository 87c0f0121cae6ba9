package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/serde"
	"github.com/streamerio/streamer/topology"
)

// Header keys on dead-letter records.
const (
	HeaderError     = "streamer.error"
	HeaderStage     = "streamer.stage" // decode, process or encode
	HeaderPipe      = "streamer.pipe"
	HeaderDataset   = "streamer.dataset"
	HeaderTopic     = "streamer.source.topic"
	HeaderPartition = "streamer.source.partition"
	HeaderOffset    = "streamer.source.offset"
)

// Task runs a topology's pipes over the records of one source partition. It
// is the seam between processing and Kafka: it takes consumed records and
// hands records to produce to an emit function, and knows nothing of clients,
// groups or transactions. The engine owns one Task per assigned partition;
// tests and `streamer test` drive Tasks directly.
//
// A Task is not safe for concurrent use.
type Task struct {
	top       *topology.Topology
	source    *topology.Dataset
	partition int32
	log       *slog.Logger
	stats     *Stats

	steps   []*step
	batches map[*topology.Dataset][]*pipes.Record
	// projected is the projection: the top-level fields the pipes use and
	// how deep, when the source can decode just those; nil means decode
	// everything.
	projected *serde.Fields
	projector serde.Projecting
	// policy and the ProjectAuto trial: batches and the best time per
	// record seen in each mode (0 full, 1 projected).
	policy    Projection
	trials    [2]int
	trialBest [2]float64
	decided   bool
	decidedAt time.Time // when the last trial ended
	// slab holds encoded values (see encode).
	slab []byte
	// timing and encodeTime measure encoding during a trial batch.
	timing     bool
	encodeTime time.Duration
	hooks      *hooks
	opener     StateOpener
	stores     []*changelogStore
	emit       func(*kgo.Record) // set during Process, for changelog writes
	// sides holds, for a merge source, the side of each decoded record
	// of the batch.
	sides []int
}

type step struct {
	p    *topology.Pipe
	pipe pipes.Pipe
	out  *pipes.Output
}

// ErrFailed wraps the error of a record whose pipe has on_error: fail, and of
// a pipe whose Process returned an error. The transaction must abort.
var ErrFailed = errors.New("record failed")

// TaskOptions configures a Task. The zero value works.
type TaskOptions struct {
	// Logger receives the pipes' logs. Default: slog.Default().
	Logger *slog.Logger
	// Stats is updated as records flow. Default: a fresh Stats.
	Stats *Stats
	// Now is the wall clock pipes see through pipes.Env.Now; tests
	// replace it. Default: time.Now.
	Now func() time.Time
	// Projection says when to decode only the fields the pipes use (see
	// pipes.FieldUser). Default: ProjectAuto.
	Projection Projection
	// Hooks observe the task's pipes and outputs (see Hook).
	Hooks []Hook
	// State opens the stores of stateful pipes. Default: in-memory stores.
	State StateOpener
	// Tables opens the table datasets join pipes look records up in.
	// Default: empty in-memory tables.
	Tables TableOpener
}

// Projection is a policy for partial decoding.
type Projection int

const (
	// ProjectAuto times both ways on the first batches and keeps the
	// faster: projection wins big on wide records whose pipes touch a few
	// fields, and loses a little when they use most of the record.
	ProjectAuto Projection = iota
	// ProjectNever always decodes whole values.
	ProjectNever
	// ProjectAlways decodes only the used fields whenever possible.
	ProjectAlways
)

// trialBatches is how many batches ProjectAuto times in each mode. The
// slower mode's batches are the trial's cost (on wide records whole
// decoding is twice the price, and 8 trial batches per partition were a
// tenth of a 1.5M-record run); the best of 3 is steady enough.
const trialBatches = 3

// retrialAfter is how long ProjectAuto keeps a choice before it times both
// ways again: the records may have changed shape, and a choice made while
// the machine was busy in some way the thread clock does not see (another
// thread of this process on the same core) is not kept forever. A trial's
// slow batches cost a few milliseconds.
const retrialAfter = 10 * time.Minute

// NewTask builds the pipes of a topology for one partition of a source
// dataset.
func NewTask(t *topology.Topology, source string, partition int32, o TaskOptions) (*Task, error) {
	src, ok := t.Datasets[source]
	if !ok || !src.IsSource() {
		return nil, fmt.Errorf("engine: %q is not a source dataset of topology %q", source, t.Name)
	}
	log, stats := o.Logger, o.Stats
	if log == nil {
		log = slog.Default()
	}
	if stats == nil {
		stats = NewStats()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	k := &Task{top: t, source: src, partition: partition, log: log, stats: stats, batches: map[*topology.Dataset][]*pipes.Record{}, policy: o.Projection, hooks: sortHooks(o.Hooks), opener: o.State}
	tables := o.Tables
	if tables == nil {
		tables = NewMemoryTables(t)
	}
	// Only the pipes downstream of this source run in this task.
	for _, p := range t.TaskPipes(src) {
		env := p.Env(partition)
		env.Logger = log.With("pipe", p.Name)
		env.Now = o.Now
		env.Stores = k.openStore
		env.Tables = func(name string) (pipes.Table, error) { return tables.OpenTable(name, partition) }
		for _, h := range o.Hooks {
			env.Hooks = append(env.Hooks, h)
		}
		pipe, err := p.Config.New(env)
		if err != nil {
			k.Close()
			return nil, fmt.Errorf("engine: building pipe %q: %w", p.Name, err)
		}
		k.steps = append(k.steps, &step{p: p, pipe: pipe, out: pipes.NewOutput(len(p.Outputs))})
	}
	k.project()
	return k, nil
}

// project decides whether the source can be decoded partially: when it is
// JSON, every pipe in the task says which fields it uses, and every sink
// reached writes JSON too, so the unread members can be copied through.
func (k *Task) project() {
	proj, ok := k.source.Codec.(serde.Projecting)
	if !ok || k.policy == ProjectNever {
		return
	}
	// A field is read shallowly only if every pipe that uses it says so.
	fields := map[string]serde.Use{}
	for _, s := range k.steps {
		fu, ok := s.pipe.(pipes.FieldUser)
		if !ok {
			return
		}
		used, ok := fu.UsedFields()
		if !ok {
			return
		}
		shallow := map[string]bool{}
		if sr, ok := s.pipe.(pipes.ShallowReader); ok {
			for _, f := range sr.ShallowFields() {
				shallow[f] = true
			}
		}
		for _, f := range used {
			if shallow[f] && fields[f] != serde.Whole {
				fields[f] = serde.Shallow
			} else {
				fields[f] = serde.Whole
			}
		}
	}
	for _, s := range k.steps {
		for _, ds := range s.p.Outputs {
			if _, ok := ds.Codec.(serde.Projecting); (ds.IsSink() || len(ds.Merges) > 0) && !ok {
				return
			}
		}
	}
	k.projected, k.projector = serde.NewFields(fields), proj
}

// useProjection says how to decode the next batch: during ProjectAuto's
// trial the modes alternate; then the faster per record is kept.
func (k *Task) useProjection() (projected, timing bool) {
	if k.projected == nil {
		return false, false
	}
	if k.policy == ProjectAlways {
		return true, false
	}
	if k.decided && time.Since(k.decidedAt) >= retrialAfter {
		k.trials, k.decided = [2]int{}, false
	}
	if k.trials[0] < trialBatches || k.trials[1] < trialBatches {
		return k.trials[1] <= k.trials[0], true
	}
	projected = k.trialBest[1] < k.trialBest[0]
	if !k.decided {
		k.decided, k.decidedAt = true, time.Now()
		k.log.Debug("decoding mode chosen", "source", k.source.Name, "projected", projected,
			"whole_ns_per_record", int(k.trialBest[0]), "projected_ns_per_record", int(k.trialBest[1]))
	}
	return projected, false
}

// Projection returns the top-level fields the task decodes and how, and
// false when it decodes whole values.
func (k *Task) Projection() (map[string]serde.Use, bool) {
	if k.projected == nil {
		return nil, false
	}
	return k.projected.Uses(), true
}

// Close releases the pipes' resources and closes the stores, dropping
// writes not committed.
func (k *Task) Close() error {
	var errs []error
	for _, s := range k.steps {
		if c, ok := s.pipe.(pipes.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	for _, s := range k.stores {
		errs = append(errs, s.Store.Close())
	}
	return errors.Join(errs...)
}

// Process runs one batch of consumed records through the pipes, in offset
// order, and calls emit for every record to produce: sink records and dead
// letters. A returned error (wrapping ErrFailed, or the context's) means the
// batch must not commit.
func (k *Task) Process(ctx context.Context, in []*kgo.Record, emit func(*kgo.Record)) error {
	// A ProjectAuto trial batch is cut short: its mode may be the slow one,
	// and a poll can hand a partition tens of thousands of records.
	for len(in) > trialRecords {
		if _, timing := k.useProjection(); !timing {
			break
		}
		if err := k.process(ctx, in[:trialRecords], emit); err != nil {
			return err
		}
		in = in[trialRecords:]
	}
	return k.process(ctx, in, emit)
}

// trialRecords is the most records a ProjectAuto trial batch holds.
const trialRecords = 500

func (k *Task) process(ctx context.Context, in []*kgo.Record, emit func(*kgo.Record)) error {
	if len(in) == 0 {
		return nil
	}
	k.stats.RecordsIn.Add(int64(len(in)))
	clear(k.batches)
	k.emit = emit
	defer func() { k.emit = nil }()
	// A source whose records a merge topic needs forwards them as they
	// came: the task of the merge decodes them.
	for _, m := range k.source.Merges {
		for _, kr := range in {
			emit(mergeRecord(m, kr.Key, kr.Value, kr.Headers, kr.Timestamp))
		}
	}
	if len(k.source.Readers) == 0 {
		return nil // only forwarded
	}

	// Only decoding and encoding differ between the two modes, so only
	// they are timed: pipes and produce (which can block) would add noise.
	// They are timed on the thread's CPU clock (cputime.go), with the
	// goroutine kept on its thread, so that time spent waiting for a core
	// on a busy machine does not count: timed by the wall clock, a trial
	// under load picked whole decoding, 1.6x the cost of projection on the
	// bench's orders.
	projected, timing := k.useProjection()
	var start time.Duration
	if timing {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		start = threadTime()
	}

	// Decode into one slab of records to keep allocations per batch, not
	// per record.
	slab := make([]pipes.Record, len(in))
	origins := make([]pipes.Origin, len(in))
	recs := make([]*pipes.Record, 0, len(in))
	k.sides = k.sides[:0]
	for i, kr := range in {
		ds, side, headers, err := k.sideOf(kr)
		var v any
		var unread []byte
		switch {
		case err != nil:
		case projected:
			v, unread, err = k.projector.DecodeProjected(kr.Value, k.projected)
		default:
			if hc, ok := ds.Codec.(serde.HeaderCodec); ok { // encrypted
				v, headers, err = hc.DecodeRecord(kr.Value, headers)
			} else {
				v, err = ds.Codec.Decode(kr.Value)
			}
		}
		if err != nil && serde.IsUnavailable(err) {
			// Not the record's fault (the registry is down): fail the batch,
			// so the transaction aborts and the records are read again.
			return fmt.Errorf("%w: decoding %s[%d]@%d: %w", ErrFailed, kr.Topic, kr.Partition, kr.Offset, err)
		}
		if err != nil {
			first := ds.Readers[0]
			for _, h := range k.hooks.decode {
				h.OnDecodeError(ds.Name, first.Name, first.OnError == topology.DeadLetter)
			}
			readers := make([]string, len(ds.Readers))
			for j, p := range ds.Readers {
				readers[j] = p.Name
			}
			if err := k.fail(first.OnError, "decode", strings.Join(readers, ","), kr, err, emit); err != nil {
				return err
			}
			continue
		}
		origins[i] = origin(kr)
		slab[i] = pipes.Record{Key: kr.Key, Value: v, Unread: unread, Timestamp: kr.Timestamp, Headers: pipesHeaders(headers), Origin: &origins[i]}
		recs = append(recs, &slab[i])
		if k.source.Sides != nil {
			k.sides = append(k.sides, side)
		}
	}
	k.batches[k.source] = recs
	if timing {
		mode := 0
		if projected {
			mode = 1
		}
		decodeTime := threadTime() - start
		k.encodeTime, k.timing = 0, true
		defer func() {
			// The best batch, not the sum: on a busy machine a batch's wall
			// time takes in GC assists and preemption, and one such spike
			// in the sum used to pick the slower mode.
			k.timing = false
			perRecord := float64(decodeTime+k.encodeTime) / float64(len(in))
			if k.trials[mode] == 0 || perRecord < k.trialBest[mode] {
				k.trialBest[mode] = perRecord
			}
			k.trials[mode]++
		}()
	}

	for _, s := range k.steps {
		if k.source.Sides != nil && s.p == k.source.Readers[0] {
			if err := k.runMerged(ctx, s, recs, emit); err != nil {
				return err
			}
			continue
		}
		for i, ds := range s.p.Inputs {
			recs := k.batches[ds]
			if len(recs) == 0 {
				continue
			}
			if !lastReader(ds, s.p) {
				// Another pipe reads this dataset after us: keep its
				// records intact for it.
				cp := make([]*pipes.Record, len(recs))
				for j, r := range recs {
					cp[j] = r.Clone()
				}
				recs = cp
			}
			if err := k.run(ctx, s, pipes.Batch{Input: i, Records: recs}, emit); err != nil {
				return err
			}
		}
	}
	return nil
}

// runMerged hands the pipe that reads a merge topic its records in the
// order they arrived: in one batch if it reads interleaved inputs, or else
// in runs of one input each.
func (k *Task) runMerged(ctx context.Context, s *step, recs []*pipes.Record, emit func(*kgo.Record)) error {
	if len(recs) == 0 {
		return nil
	}
	if ir, ok := s.pipe.(pipes.InterleavedReader); ok && ir.ReadsInterleaved() {
		return k.run(ctx, s, pipes.Batch{Inputs: k.sides, Records: recs}, emit)
	}
	start := 0
	for i := 1; i <= len(recs); i++ {
		if i < len(recs) && k.sides[i] == k.sides[start] {
			continue
		}
		if err := k.run(ctx, s, pipes.Batch{Input: k.sides[start], Records: recs[start:i]}, emit); err != nil {
			return err
		}
		start = i
	}
	return nil
}

// HeaderSide is the header of a merge topic's records that says which
// input of the merged pipe a record is: its position in the pipe's from:.
const HeaderSide = "streamer.merge.side"

// sideHeaders are the values of HeaderSide, made once.
var sideHeaders = func() [][]byte {
	out := make([][]byte, 16)
	for i := range out {
		out[i] = strconv.AppendInt(nil, int64(i), 10)
	}
	return out
}()

// mergeRecord is a record of a merge topic: key, value and timestamp as
// given, the headers with the side's appended. The producer partitions it
// by key.
func mergeRecord(m topology.MergeTarget, key, value []byte, headers []kgo.RecordHeader, ts time.Time) *kgo.Record {
	side := strconv.AppendInt(nil, int64(m.Side), 10)
	if m.Side < len(sideHeaders) {
		side = sideHeaders[m.Side]
	}
	hs := append(headers[:len(headers):len(headers)], kgo.RecordHeader{Key: HeaderSide, Value: side})
	return &kgo.Record{Topic: m.Source.Topic, Key: key, Value: value, Headers: hs, Timestamp: ts}
}

// sideOf returns the dataset a consumed record decodes as, and the headers
// its record carries: for a merge source, the side its header names,
// without that header.
func (k *Task) sideOf(kr *kgo.Record) (ds *topology.Dataset, side int, headers []kgo.RecordHeader, err error) {
	sides := k.source.Sides
	if sides == nil {
		return k.source, 0, kr.Headers, nil
	}
	for i := len(kr.Headers) - 1; i >= 0; i-- {
		h := kr.Headers[i]
		if h.Key != HeaderSide {
			continue
		}
		n, perr := strconv.Atoi(string(h.Value))
		if perr != nil || n < 0 || n >= len(sides) {
			break
		}
		headers = kr.Headers[:i:i]
		if i < len(kr.Headers)-1 {
			headers = append(headers, kr.Headers[i+1:]...)
		}
		return sides[n], n, headers, nil
	}
	return sides[0], 0, kr.Headers, fmt.Errorf("a record of merge topic %s without a valid %s header (0 to %d)", kr.Topic, HeaderSide, len(sides)-1)
}

func lastReader(ds *topology.Dataset, p *topology.Pipe) bool {
	return ds.Readers[len(ds.Readers)-1] == p
}

func (k *Task) run(ctx context.Context, s *step, b pipes.Batch, emit func(*kgo.Record)) error {
	s.out.Reset()
	b.Partition = k.partition
	recs := b.Records
	start := time.Now()
	if err := s.pipe.Process(ctx, &b, s.out); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%w: pipe %q failed a batch of %d records from %s[%d]: %w", ErrFailed, s.p.Name, len(recs), k.source.Topic, k.partition, err)
	}
	pb := PipeBatch{Pipe: s.p.Name, In: len(recs), Duration: time.Since(start)}
	for _, f := range s.out.Failures() {
		if err := k.fail(s.p.OnError, "process", s.p.Name, originRecord(f.Record.Origin), k.redact(f.Record, f.Err), emit); err != nil {
			return err
		}
		pb.count(s.p.OnError)
	}
	for port, ds := range s.p.Outputs {
		out := s.out.Records(port)
		pb.Out += len(out)
		if len(out) == 0 {
			continue
		}
		if ds.IsSink() || len(ds.Merges) > 0 {
			now := time.Now()
			for _, r := range out {
				v, hs, err := k.encode(ds, r)
				if err != nil && serde.IsUnavailable(err) {
					return fmt.Errorf("%w: encoding for %q: %w", ErrFailed, ds.Name, err)
				}
				if err != nil {
					if err := k.fail(s.p.OnError, "encode", s.p.Name, originRecord(r.Origin), fmt.Errorf("dataset %q: %w", ds.Name, err), emit); err != nil {
						return err
					}
					pb.count(s.p.OnError)
					continue
				}
				for _, m := range ds.Merges {
					emit(mergeRecord(m, r.Key, v, hs, r.Timestamp))
				}
				if !ds.IsSink() {
					continue
				}
				for _, h := range k.hooks.output {
					h.OnOutput(ds.Name, now.Sub(r.Timestamp))
				}
				emit(&kgo.Record{Topic: ds.Topic, Key: r.Key, Value: v, Headers: hs, Timestamp: r.Timestamp})
			}
		}
		if len(ds.Readers) > 0 {
			k.batches[ds] = append(k.batches[ds], out...)
		}
	}
	for _, h := range k.hooks.pipe {
		h.OnPipeBatch(pb)
	}
	return nil
}

// redact removes from a failed record's error the plaintext of the fields
// its source decrypted (serde.Redactor), before it reaches a dead letter or
// a log.
func (k *Task) redact(r *pipes.Record, err error) error {
	if r == nil || err == nil {
		return err
	}
	msg := err.Error()
	for _, ds := range append([]*topology.Dataset{k.source}, k.source.Sides...) {
		if rd, ok := ds.Codec.(serde.Redactor); ok {
			msg = rd.Redact(r.Value, msg)
		}
	}
	if msg != err.Error() {
		return errors.New(msg)
	}
	return err
}

func (pb *PipeBatch) count(policy topology.OnError) {
	pb.Failed++
	switch policy {
	case topology.DeadLetter:
		pb.DeadLettered++
	case topology.Skip:
		pb.Skipped++
	}
}

// encode returns the encoding of r for ds, and the headers to write with
// it: r's, or a serde.HeaderCodec's (encryption adds its data keys).
func (k *Task) encode(ds *topology.Dataset, r *pipes.Record) ([]byte, []kgo.RecordHeader, error) {
	if k.timing {
		defer func(start time.Duration) { k.encodeTime += threadTime() - start }(threadTime())
	}
	// Values are appended into one slab per many records rather than
	// allocated one by one; a value keeps its slab alive until the client
	// is done with the record.
	if cap(k.slab)-len(k.slab) < slabMin {
		k.slab = make([]byte, 0, slabSize)
	}
	dst := k.slab[len(k.slab):len(k.slab)]
	var v []byte
	var err error
	hs := kgoHeaders(r.Headers)
	if hc, ok := ds.Codec.(serde.HeaderCodec); ok {
		v, hs, err = hc.AppendEncodeRecord(dst, r.Value, hs)
	} else if p, ok := ds.Codec.(serde.Projecting); ok && r.Unread != nil {
		v, err = p.AppendEncodeWith(dst, r.Value, r.Unread)
	} else {
		v, err = ds.Codec.AppendEncode(dst, r.Value)
	}
	if err != nil {
		return nil, nil, err
	}
	if len(v) > 0 && cap(dst) > 0 && &v[0] == &dst[:1][0] {
		k.slab = k.slab[:len(k.slab)+len(v)]
		v = v[:len(v):len(v)] // so that no append reaches the next value
	}
	return v, hs, nil
}

// The value slab: a new one is started when less than slabMin bytes are
// left; values larger than that are allocated on their own by append.
const (
	slabSize = 256 << 10
	slabMin  = 4 << 10
)

// fail applies an on_error policy to a record.
func (k *Task) fail(policy topology.OnError, stage, pipe string, origin *kgo.Record, cause error, emit func(*kgo.Record)) error {
	where := "a record"
	if origin != nil {
		where = fmt.Sprintf("%s[%d]@%d", origin.Topic, origin.Partition, origin.Offset)
	}
	switch policy {
	case topology.Skip:
		k.stats.Skipped.Add(1)
		k.log.Debug("skipped a failed record", "pipe", pipe, "stage", stage, "record", where, "err", cause)
		return nil
	case topology.DeadLetter:
		k.stats.DeadLettered.Add(1)
		emit(DeadLetterRecord(k.top.DeadLetter.Topic, origin, k.source.Name, pipe, stage, cause))
		return nil
	}
	return fmt.Errorf("%w: pipe %q (%s) on %s: %v", ErrFailed, pipe, stage, where, cause)
}

// DeadLetterRecord builds the dead-letter record of a failed origin record:
// its raw key, value, timestamp and headers, plus headers saying why it
// failed and where it came from.
func DeadLetterRecord(topic string, origin *kgo.Record, dataset, pipe, stage string, cause error) *kgo.Record {
	r := &kgo.Record{Topic: topic}
	if origin != nil {
		r.Key, r.Value, r.Timestamp = origin.Key, origin.Value, origin.Timestamp
		r.Headers = append(r.Headers, origin.Headers...)
	}
	r.Headers = append(r.Headers,
		kgo.RecordHeader{Key: HeaderError, Value: []byte(cause.Error())},
		kgo.RecordHeader{Key: HeaderStage, Value: []byte(stage)},
		kgo.RecordHeader{Key: HeaderPipe, Value: []byte(pipe)},
		kgo.RecordHeader{Key: HeaderDataset, Value: []byte(dataset)},
	)
	if origin != nil {
		r.Headers = append(r.Headers,
			kgo.RecordHeader{Key: HeaderTopic, Value: []byte(origin.Topic)},
			kgo.RecordHeader{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(origin.Partition), 10)},
			kgo.RecordHeader{Key: HeaderOffset, Value: strconv.AppendInt(nil, origin.Offset, 10)},
		)
	}
	return r
}
