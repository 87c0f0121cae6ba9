package topology

import (
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/streamerio/streamer/internal/spec"
)

// processing applies the defaults of the processing block's settings that
// the file leaves out, and refuses values that would not work where the
// file sets them, rather than replacing them silently.
func (c *compiler) processing(t *Topology, root *yaml.Node) {
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	block := mappingValue(root, "processing")
	if n := mappingValue(block, "commit_interval"); n != nil && t.CommitInterval == 0 {
		c.d.add(spec.PosOf(n), "commit_interval: must be positive: it is how long a transaction collects records before it commits (default %v)", defaultCommitInterval)
	}
	if n := mappingValue(block, "min_commit_interval"); n != nil && t.MinCommitInterval <= 0 {
		c.d.add(spec.PosOf(n), "min_commit_interval: must be positive: it is how long a transaction stays open at least once the replica has read all there is (default %v; set it to commit_interval to commit only at that pace)", defaultMinCommitInterval)
	}
	if n := mappingValue(block, "max_poll_records"); n != nil && t.MaxPollRecords <= 0 {
		c.d.add(spec.PosOf(n), "max_poll_records: must be at least 1, got %d (default %d)", t.MaxPollRecords, defaultMaxPollRecords)
	}
	if t.CommitInterval <= 0 {
		t.CommitInterval = defaultCommitInterval
	}
	if t.MinCommitInterval <= 0 {
		t.MinCommitInterval = defaultMinCommitInterval
	}
	if t.MaxPollRecords <= 0 {
		t.MaxPollRecords = defaultMaxPollRecords
	}
}

// The defaults of the processing block's settings.
const (
	defaultCommitInterval = 100 * time.Millisecond
	// defaultMinCommitInterval caps an idle-ish replica at 50 commits a
	// second, while its outputs wait 20 ms plus the commit.
	defaultMinCommitInterval = 20 * time.Millisecond
	defaultMaxPollRecords    = 10000
)

// ownError reports whether an error that building pipe p gave, at pos,
// stands on its own though p's config or datasets did not resolve: one at
// a position of its own inside the config (an expression's), not at the
// pipe or its config as a whole, where it may only repeat a reported
// error (a missing field, an unknown dataset) in other words. The compiler
// builds such a pipe anyway so that one run reports every error of it.
func (c *compiler) ownError(p *Pipe, pos spec.Pos) bool {
	if pos == p.Pos || pos == p.cfgPos || !pos.IsValid() {
		return false
	}
	for _, d := range c.d.list {
		if !d.Warning && d.Line == pos.Line && d.Col == pos.Col {
			return false // said already, at that very place
		}
	}
	return true
}

// keepSchema gives the outputs of a pipe that failed to build the schema
// of its input, when its type keeps it (pipes.Spec.KeepsSchema), so that
// the pipes downstream are still checked.
func (c *compiler) keepSchema(p *Pipe) {
	typ, ok := c.types.Lookup(p.Type)
	if !ok || !typ.Spec.KeepsSchema || len(p.Inputs) != 1 || p.Inputs[0].Schema == nil {
		return
	}
	for _, o := range p.Outputs {
		if o.Schema == nil {
			o.Schema = p.Inputs[0].Schema
		}
	}
}
