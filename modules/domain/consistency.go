package domain

import (
	"encoding/base64"
	"encoding/binary"
)

// CodeInvalidConsistencyToken is the error code of a consistency token that
// is not one this service issued.
const CodeInvalidConsistencyToken = "invalid_consistency_token"

// MaxConsistencyTokenLen bounds the text of a consistency token; the ones
// this service issues have at most 19 characters.
const MaxConsistencyTokenLen = 64

// consistencyTokenV1 is the version byte of the current encoding.
const consistencyTokenV1 = 1

// maxTokenPartition bounds the partition a token may name: far above any
// stream's partition count, low enough to keep tokens short.
const maxTokenPartition = 1 << 16

// ConsistencyToken names a stored event for read-your-writes: the partition
// of its user and its sequence in the events stream. Once the count shard of
// Partition has applied Seq, the event is reflected in the lobby lists. Its
// text form is opaque to clients: the unpadded base64url of a version byte
// (1) and the partition and sequence as unsigned varints.
type ConsistencyToken struct {
	Partition int
	Seq       uint64
}

// String returns the token's text form.
func (t ConsistencyToken) String() string {
	b := make([]byte, 0, 1+2*binary.MaxVarintLen64)
	b = append(b, consistencyTokenV1)
	b = binary.AppendUvarint(b, uint64(t.Partition))
	b = binary.AppendUvarint(b, t.Seq)
	return base64.RawURLEncoding.EncodeToString(b)
}

// ParseConsistencyToken reads a token's text form. Anything but the exact
// text String produces for a partition below 65536 and a sequence of at
// least 1 is a *ValidationError with code invalid_consistency_token.
func ParseConsistencyToken(s string) (ConsistencyToken, error) {
	bad := func(msg string) (ConsistencyToken, error) {
		return ConsistencyToken{}, invalid(CodeInvalidConsistencyToken, msg)
	}
	if s == "" {
		return bad("the consistency token is empty")
	}
	if len(s) > MaxConsistencyTokenLen {
		return bad("the consistency token is too long")
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil || len(b) == 0 || b[0] != consistencyTokenV1 {
		return bad("not a consistency token of this service (use the consistency_token of a POST /api/v1/event answer as it is)")
	}
	p, n := binary.Uvarint(b[1:])
	if n <= 0 {
		return bad("the consistency token is truncated")
	}
	seq, m := binary.Uvarint(b[1+n:])
	if m <= 0 || 1+n+m != len(b) {
		return bad("the consistency token is truncated or has extra bytes")
	}
	t := ConsistencyToken{Partition: int(min(p, maxTokenPartition)), Seq: seq}
	if p >= maxTokenPartition || seq == 0 || t.String() != s {
		return bad("the consistency token is not one this service issues")
	}
	return t, nil
}
