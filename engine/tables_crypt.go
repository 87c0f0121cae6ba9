package engine

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/crypt"
	"github.com/streamerio/streamer/serde"
	"github.com/streamerio/streamer/topology"
)

// Encrypted tables.
//
// The rows of a table whose dataset is encrypted are stored as consumed,
// still encrypted, framed with the wrapped data keys of their headers
// (serde.RecordFramer, crypt.Codec.AppendFramedRecord): the store's files
// hold no more plaintext than the table's topic, and a lookup decrypts the
// row it reads (tableHandle.Get, through the codec's Decode).
//
// Each row is decrypted once as it is read, to check it: a row that does
// not decrypt (wrong key, tampered, no data key header, not in the
// dataset's format) is skipped, logged with its topic, partition and
// offset (never its value), and counted (TableSkipHook); the key keeps the
// value it had, as a Kafka Streams table does with a row its
// deserialisation handler skips. Stored, it would fail every lookup of its
// key, and with it the batches that make them, for good. A key-encryption
// key that does not answer is an outage: the catch-up fails with
// pipes.ErrUnavailable and the engine pauses and retries it, as for a
// broker away.

var _ serde.RecordFramer = (*crypt.Codec)(nil)

// tableStoreName is the directory of a table's stores under
// <state-dir>/<group>: table-<dataset>, and table-<dataset>@encrypted for
// an encrypted table ('@' is in no dataset name), whose rows are framed:
// adding or removing a table's encryption starts a new store from its
// topic, rather than reading the old one's rows in the other format.
func tableStoreName(d *topology.Dataset) string {
	if _, ok := d.Codec.(serde.RecordFramer); ok {
		return "table-" + d.Name + "@encrypted"
	}
	return "table-" + d.Name
}

// TableSkipHook observes the table rows that are skipped because they do
// not decrypt.
type TableSkipHook interface {
	OnTableRowSkipped(table string, partition int32)
}

// framedRows returns the values apply stores for recs, index by index, when
// tp's dataset frames its records (it is encrypted); nil, with the values
// to be stored as consumed, otherwise. A row that does not decrypt has a
// nil value there, and is logged and counted; an outage is an error.
func (s *tableSyncer) framedRows(tp *tablePart, recs []*kgo.Record) ([][]byte, error) {
	fr, ok := tp.ds.Codec.(serde.RecordFramer)
	if !ok {
		return nil, nil
	}
	out := make([][]byte, len(recs))
	for i, r := range recs {
		if r.Key == nil || r.Value == nil {
			continue
		}
		b, err := fr.AppendFramedRecord(nil, r.Value, r.Headers)
		switch {
		case err == nil:
			out[i] = b
		case serde.IsUnavailable(err):
			return nil, fmt.Errorf("table %q partition %d offset %d: %w", tp.ds.Name, tp.key.partition, r.Offset, err)
		default:
			// The codec's errors name fields, never their values.
			s.log.Warn("a table row does not decrypt; skipped, its key keeps its previous value", "table", tp.ds.Name, "topic", r.Topic, "partition", r.Partition, "offset", r.Offset, "err", err)
			for _, h := range s.skips {
				h.OnTableRowSkipped(tp.ds.Name, tp.key.partition)
			}
		}
	}
	return out, nil
}
