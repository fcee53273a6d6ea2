package domain

import (
	"math/rand/v2"
	"testing"
	"time"
)

var (
	sinkEvent      Event
	sinkBytes      []byte
	sinkTransition Transition
)

func BenchmarkDecodeEvent(b *testing.B) {
	c := DefaultCatalog()
	body := []byte(`{"event_id":"6f1c2b9e-1d2a-4c55-9a55-0d8c2f3b7a10","user_id":123456789,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":4,"region":"EU"},"timestamp":"2026-11-26T01:00:00Z"}`)
	now := time.Now()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		ev, err := c.DecodeEvent(body, now)
		if err != nil {
			b.Fatal(err)
		}
		sinkEvent = ev
	}
}

func BenchmarkApply(b *testing.B) {
	c := DefaultCatalog()
	counts := NewCounts(c)
	const users = 1 << 12
	states := make([]PlayerState, users)
	r := rand.New(rand.NewPCG(1, 1))
	type ev struct {
		user int
		typ  EventType
		slot Slot
	}
	evs := make([]ev, 1<<14)
	for i := range evs {
		evs[i] = ev{r.IntN(users), EventType(1 + r.IntN(2)), Slot{uint16(r.IntN(c.NumRegions())), uint16(r.IntN(c.NumModes()))}}
	}
	var seq uint64
	b.ReportAllocs()
	for b.Loop() {
		seq++
		e := evs[seq&(1<<14-1)]
		tr := Apply(states[e.user], e.typ, e.slot, seq)
		states[e.user] = tr.Next
		counts.Apply(tr)
		sinkTransition = tr
	}
}

func BenchmarkEncodePlayer(b *testing.B) {
	c := DefaultCatalog()
	st := PlayerState{Present: true, Slot: Slot{Region: 8, Mode: 9}, LastSeq: 123456789012}
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = c.EncodePlayer(st)
	}
}

func BenchmarkDecodePlayer(b *testing.B) {
	c := DefaultCatalog()
	v := c.EncodePlayer(PlayerState{Present: true, Slot: Slot{Region: 8, Mode: 9}, LastSeq: 123456789012})
	b.ReportAllocs()
	for b.Loop() {
		st, err := c.DecodePlayer(v)
		if err != nil {
			b.Fatal(err)
		}
		sinkTransition.Next = st
	}
}

func BenchmarkMarshalCanonical(b *testing.B) {
	e := Event{ID: "6f1c2b9e-1d2a-4c55-9a55-0d8c2f3b7a10", UserID: "123456789", Type: EventEnter,
		Region: "EU", GameMode: 4, Timestamp: time.Date(2026, 11, 26, 1, 0, 0, 123456789, time.UTC)}
	b.ReportAllocs()
	for b.Loop() {
		sinkBytes = e.MarshalCanonical()
	}
}

func BenchmarkEncodeShard(b *testing.B) {
	c := DefaultCatalog() // 20 regions x 10 modes
	r := rand.New(rand.NewPCG(2, 2))
	const partitions = 32
	counts := make([]Counts, partitions)
	for p := range counts {
		counts[p] = randomCounts(r, c, 1)
	}
	b.ReportAllocs()
	for b.Loop() {
		for p := range partitions {
			sinkBytes = c.EncodeShard(ShardHeader{Partition: p, Owner: "worker-1", AppliedSeq: 42}, counts[p])
		}
	}
}

func BenchmarkUserTokenPartition(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		sinkEvent.ID = UserToken("123456789")
		sinkTransition.Next.LastSeq = uint64(PartitionOf(sinkEvent.ID, 32))
	}
}
