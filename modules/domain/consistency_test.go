package domain

import (
	"encoding/base64"
	"math"
	"math/rand/v2"
	"testing"
)

func TestConsistencyTokenRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	cases := []ConsistencyToken{{0, 1}, {31, 1}, {127, 128}, {128, 16383}, {65535, math.MaxUint64}, {5, 1 << 35}}
	for range 2000 {
		cases = append(cases, ConsistencyToken{Partition: r.IntN(maxTokenPartition), Seq: 1 + r.Uint64N(1<<uint(1+r.IntN(63)))})
	}
	for _, want := range cases {
		s := want.String()
		if len(s) > 19 {
			t.Fatalf("token %q of %+v is longer than 19 characters", s, want)
		}
		got, err := ParseConsistencyToken(s)
		if err != nil || got != want {
			t.Fatalf("ParseConsistencyToken(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	if got := (ConsistencyToken{Partition: 3, Seq: 42}).String(); got != "AQMq" {
		t.Fatalf("token of partition 3, seq 42 = %q, want AQMq", got)
	}
}

func TestParseConsistencyTokenRejects(t *testing.T) {
	enc := func(b ...byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	for _, s := range []string{
		"",
		"AQMq=",                     // padding
		"AQM+",                      // standard alphabet
		"AQ Mq",                     // space
		"AQN",                       // non-zero trailing bits (Strict)
		"%41QMq",                    // escaped
		enc(2, 3, 42),               // unknown version
		enc(0, 3, 42),               // version 0
		enc(1),                      // no partition
		enc(1, 3),                   // no sequence
		enc(1, 3, 0x80),             // truncated varint
		enc(1, 3, 42, 0),            // extra byte
		enc(1, 3, 0),                // sequence 0
		enc(1, 0x83, 0x00, 42),      // non-minimal varint
		enc(1, 0x80, 0x80, 0x04, 1), // partition 65536
		enc(1, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02), // sequence overflows 64 bits
		"v1.3.42",
		string(make([]byte, MaxConsistencyTokenLen+1)),
	} {
		got, err := ParseConsistencyToken(s)
		v, ok := AsValidationError(err)
		if !ok || v.Code != CodeInvalidConsistencyToken || v.Message == "" {
			t.Errorf("ParseConsistencyToken(%q) = %+v, %v; want %s", s, got, err, CodeInvalidConsistencyToken)
		}
	}
}

func FuzzParseConsistencyToken(f *testing.F) {
	for _, s := range []string{"AQMq", "", "AQ", "AQMqAA", "v1.3.42"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := ParseConsistencyToken(s)
		if err != nil {
			if v, ok := AsValidationError(err); !ok || v.Code != CodeInvalidConsistencyToken {
				t.Fatalf("error %v is not %s", err, CodeInvalidConsistencyToken)
			}
			return
		}
		if tok.String() != s || tok.Seq == 0 || tok.Partition < 0 || tok.Partition >= maxTokenPartition {
			t.Fatalf("accepted %q as %+v", s, tok)
		}
	})
}
