package engine

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// topicIDFile, in a store's directory (Pebble ignores it), holds the ID of
// the topic the store's state was read from: its changelog, or its table's
// topic. A topic deleted and made again under its name, as a reset does,
// has a new ID. A store of the old one must then be rebuilt even when its
// checkpoint is below the new topic's end, where the checkpoint alone
// would have it go on from there on stale state: a replica whose state
// directory outlived a reset, given the partition after the new topic had
// grown past its checkpoint.
const topicIDFile = "STREAMER-TOPIC-ID"

// topicIDs returns the IDs of topics, all zero for a broker without topic
// IDs.
func topicIDs(ctx context.Context, cl *kgo.Client, topics ...string) (map[string]kadm.TopicID, error) {
	td, err := kadm.NewClient(cl).ListTopics(ctx, topics...)
	if err == nil {
		err = td.Error()
	}
	if err != nil {
		return nil, err
	}
	ids := make(map[string]kadm.TopicID, len(td))
	for name, d := range td {
		ids[name] = d.ID
	}
	return ids, nil
}

// sameTopic reports whether the store in dir was read from the topic with
// ID id, and the ID it was read from. A store without a recorded ID (new,
// or made by an older version, which it trusts as before) gets id
// recorded. A zero id (no topic IDs) is always the same.
func sameTopic(dir string, id kadm.TopicID) (had string, same bool, err error) {
	if id == (kadm.TopicID{}) {
		return "", true, nil
	}
	path := filepath.Join(dir, topicIDFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		had = strings.TrimSpace(string(b))
		return had, had == id.String(), nil
	case !errors.Is(err, fs.ErrNotExist):
		return "", false, err
	}
	return "", true, os.WriteFile(path, []byte(id.String()+"\n"), 0o644)
}
