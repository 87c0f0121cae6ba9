package engine

import (
	"unsafe"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/pipes"
)

// pipes.Header, which keeps the public pipes package free of franz-go, has
// the fields of kgo.RecordHeader in the same order: this conversion
// compiles only while that holds, which is what makes the slice
// conversions below sound.
var _ = pipes.Header(kgo.RecordHeader{})

// pipesHeaders returns hs as pipes headers, without copying. The result's
// capacity is its length, so that a pipe's append copies rather than
// writes into the consumed record's backing array.
func pipesHeaders(hs []kgo.RecordHeader) []pipes.Header {
	if hs == nil {
		return nil
	}
	return unsafe.Slice((*pipes.Header)(unsafe.Pointer(unsafe.SliceData(hs))), len(hs))
}

// kgoHeaders returns hs as kgo headers, without copying (see pipesHeaders).
func kgoHeaders(hs []pipes.Header) []kgo.RecordHeader {
	if hs == nil {
		return nil
	}
	return unsafe.Slice((*kgo.RecordHeader)(unsafe.Pointer(unsafe.SliceData(hs))), len(hs))
}

// origin returns what pipes see of a consumed record.
func origin(kr *kgo.Record) pipes.Origin {
	return pipes.Origin{Topic: kr.Topic, Partition: kr.Partition, Offset: kr.Offset, Timestamp: kr.Timestamp,
		Key: kr.Key, Value: kr.Value, Headers: pipesHeaders(kr.Headers)}
}

// originRecord returns the consumed record o describes, for dead letters,
// or nil when o is (a record made in a test).
func originRecord(o *pipes.Origin) *kgo.Record {
	if o == nil {
		return nil
	}
	return &kgo.Record{Topic: o.Topic, Partition: o.Partition, Offset: o.Offset, Timestamp: o.Timestamp,
		Key: o.Key, Value: o.Value, Headers: kgoHeaders(o.Headers)}
}
