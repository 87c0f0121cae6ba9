package topology

import (
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
	if n := mappingValue(block, "max_poll_records"); n != nil && t.MaxPollRecords <= 0 {
		c.d.add(spec.PosOf(n), "max_poll_records: must be at least 1, got %d (default %d)", t.MaxPollRecords, defaultMaxPollRecords)
	}
	if t.CommitInterval <= 0 {
		t.CommitInterval = defaultCommitInterval
	}
	if t.MaxPollRecords <= 0 {
		t.MaxPollRecords = defaultMaxPollRecords
	}
}

const defaultMaxPollRecords = 10000
