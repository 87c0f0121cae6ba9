package serde

import "github.com/twmb/franz-go/pkg/kgo"

// HeaderCodec is implemented by codecs that keep part of a record's
// encoding in its headers: encrypted datasets (package crypt) carry their
// wrapped data keys there. The engine decodes and encodes the records of
// such datasets with these methods; Decode and AppendEncode then serve
// values kept apart from any record (a stream join's waiting records).
type HeaderCodec interface {
	Codec
	// DecodeRecord returns the value of a record and the headers pipes
	// see: hs without the codec's own. It must not keep b.
	DecodeRecord(b []byte, hs []kgo.RecordHeader) (any, []kgo.RecordHeader, error)
	// AppendEncodeRecord appends the encoding of v to dst and returns the
	// headers to write with it: hs with the codec's own replaced. It does
	// not modify v or hs.
	AppendEncodeRecord(dst []byte, v any, hs []kgo.RecordHeader) ([]byte, []kgo.RecordHeader, error)
}

// Redactor is implemented by codecs whose decoded values hold secrets (the
// plaintext of encrypted fields). Redact returns msg with every such
// secret of v replaced, so that an error about a record (a dead letter's
// reason, a log line) does not disclose it.
type Redactor interface {
	Redact(v any, msg string) string
}

// RecordFramer is implemented by HeaderCodecs whose records are stored
// apart from their headers (a table's rows). AppendFramedRecord checks that
// a consumed record (value b, headers hs) decodes, and appends what the
// codec needs of both to dst, framed so that Decode reads it back; an error
// says the record does not decode (or, wrapping ErrUnavailable, that a
// dependency did not answer).
type RecordFramer interface {
	AppendFramedRecord(dst, b []byte, hs []kgo.RecordHeader) ([]byte, error)
}
