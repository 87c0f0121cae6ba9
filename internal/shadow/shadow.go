// Package shadow compares what two versions of a topology wrote, dataset by
// dataset: the report of a shadow run (`streamer backfill NEW --compare
// OLD`). It reads both outputs with read_committed, pairs their records by
// key, and counts the records only in one, the pairs whose values differ
// (with the fields that differ, and by how much where they are numbers) and
// the pairs that are equal.
package shadow

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/topicread"
	"github.com/streamerio/streamer/pipes"
)

// Pair is one dataset present in both versions: the topics each wrote it
// to, and how to decode its values (nil: compare the bytes).
type Pair struct {
	Dataset            string
	OldTopic, NewTopic string
	OldDecode          func([]byte) (any, error)
	NewDecode          func([]byte) (any, error)
}

// Diff is the comparison of one dataset.
type Diff struct {
	Pair
	// Old and New count the records each version wrote.
	Old, New int
	// Same counts the pairs of records with equal values; Changed those
	// whose values differ; OnlyOld and OnlyNew the records without a
	// counterpart of the same key.
	Same, Changed, OnlyOld, OnlyNew int
	// Fields are the fields that differ among the changed pairs, by name.
	Fields []Field
	// Samples are a few records of each kind of difference.
	Samples []Sample
}

// Differs reports whether the versions wrote different records.
func (d *Diff) Differs() bool { return d.Changed+d.OnlyOld+d.OnlyNew > 0 }

// Field is one field's changes among a dataset's changed pairs.
type Field struct {
	Name    string
	Changed int
	// Numeric counts the changes between two numbers; MeanAbs and MaxAbs
	// are the mean and largest absolute difference among them.
	Numeric         int
	MeanAbs, MaxAbs float64
}

// Sample is one differing record, or pair.
type Sample struct {
	Kind     string // "changed", "only old" or "only new"
	Key      string
	Old, New string // the values as text, "" when absent
	// Fields are the fields that differ: "name: old → new".
	Fields []string
}

// SamplesPerKind is how many samples of each kind a Diff keeps.
const SamplesPerKind = 3

// Compare reads both topics of every pair and compares them. idle is how
// long a read waits for more records once none come (topicread.All);
// clientOpts are the connection's TLS and SASL options.
func Compare(ctx context.Context, brokers []string, clientOpts []kgo.Opt, pairs []Pair, idle time.Duration) ([]*Diff, error) {
	var out []*Diff
	for _, p := range pairs {
		d := &Diff{Pair: p}
		old, err := read(ctx, brokers, clientOpts, p.OldTopic, p.OldDecode, idle, &d.Old)
		if err != nil {
			return nil, err
		}
		nw, err := read(ctx, brokers, clientOpts, p.NewTopic, p.NewDecode, idle, &d.New)
		if err != nil {
			return nil, err
		}
		d.compare(old, nw)
		out = append(out, d)
	}
	return out, nil
}

type value struct {
	v    any
	text string
}

// read returns a topic's values by key, in the order of their partition.
func read(ctx context.Context, brokers []string, clientOpts []kgo.Opt, topic string, decode func([]byte) (any, error), idle time.Duration, n *int) (map[string][]value, error) {
	out := map[string][]value{}
	var derr error
	err := topicread.AllOpts(ctx, brokers, clientOpts, idle, func(r *kgo.Record) {
		*n++
		v := value{v: string(r.Value), text: string(r.Value)}
		if decode != nil {
			dv, err := decode(r.Value)
			if err != nil && derr == nil {
				derr = fmt.Errorf("decoding %s[%d]@%d: %w", r.Topic, r.Partition, r.Offset, err)
			}
			v.v = dv
			if b, err := json.Marshal(dv); err == nil {
				v.text = string(b)
			}
		}
		out[string(r.Key)] = append(out[string(r.Key)], v)
	}, topic)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", topic, err)
	}
	return out, derr
}

// compare pairs the records of each key in order: the i-th of the old
// version with the i-th of the new.
func (d *Diff) compare(old, nw map[string][]value) {
	fields := map[string]*Field{}
	samples := map[string]int{}
	sample := func(s Sample) {
		if samples[s.Kind] < SamplesPerKind {
			samples[s.Kind]++
			d.Samples = append(d.Samples, s)
		}
	}
	keys := map[string]bool{}
	for k := range old {
		keys[k] = true
	}
	for k := range nw {
		keys[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		o, n := old[k], nw[k]
		for i := range max(len(o), len(n)) {
			switch {
			case i >= len(n):
				d.OnlyOld++
				sample(Sample{Kind: "only old", Key: k, Old: o[i].text})
			case i >= len(o):
				d.OnlyNew++
				sample(Sample{Kind: "only new", Key: k, New: n[i].text})
			case reflect.DeepEqual(o[i].v, n[i].v):
				d.Same++
			default:
				d.Changed++
				sample(Sample{Kind: "changed", Key: k, Old: o[i].text, New: n[i].text, Fields: fieldDiff(o[i].v, n[i].v, fields)})
			}
		}
	}
	for _, f := range fields {
		if f.Numeric > 0 {
			f.MeanAbs /= float64(f.Numeric)
		}
		d.Fields = append(d.Fields, *f)
	}
	slices.SortFunc(d.Fields, func(a, b Field) int {
		return cmp.Or(cmp.Compare(b.Changed, a.Changed), strings.Compare(a.Name, b.Name))
	})
}

// fieldDiff records the fields of two object values that differ, and
// returns them as "name: old → new". Values that are not objects count as
// one field, named "(value)".
func fieldDiff(o, n any, fields map[string]*Field) []string {
	om, ok1 := o.(map[string]any)
	nm, ok2 := n.(map[string]any)
	if !ok1 || !ok2 {
		om, nm = map[string]any{"(value)": o}, map[string]any{"(value)": n}
	}
	names := map[string]bool{}
	for k := range om {
		names[k] = true
	}
	for k := range nm {
		names[k] = true
	}
	var out []string
	for _, name := range slices.Sorted(maps.Keys(names)) {
		ov, inO := om[name]
		nv, inN := nm[name]
		if inO == inN && reflect.DeepEqual(ov, nv) {
			continue
		}
		f := fields[name]
		if f == nil {
			f = &Field{Name: name}
			fields[name] = f
		}
		f.Changed++
		if a, ok := number(ov); ok && inO {
			if b, ok := number(nv); ok && inN {
				delta := math.Abs(b - a)
				f.Numeric++
				f.MeanAbs += delta
				f.MaxAbs = max(f.MaxAbs, delta)
			}
		}
		out = append(out, fmt.Sprintf("%s: %s → %s", name, text(ov, inO), text(nv, inN)))
	}
	return out
}

func number(v any) (float64, bool) {
	if x, ok := v.(json.Number); ok {
		f, err := x.Float64()
		return f, err == nil
	}
	return pipes.Float(v)
}

func text(v any, present bool) string {
	if !present {
		return "(absent)"
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(bytes.TrimSpace(b))
}
