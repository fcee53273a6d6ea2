package jetstream_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go/jetstream"
)

// BenchmarkWorkerApply measures the partition owners applying stored
// events: decode, validate, transition, pipelined CAS player write, shard
// flush. b.N events over 100,000 players are stored first; the clock runs
// from the worker's start until every partition's shard records the last
// event as applied.
func BenchmarkWorkerApply(b *testing.B) { benchWorkerApply(b) }

// BenchmarkWorkerApplyAtomicBatches is BenchmarkWorkerApply with the
// player writes sent as fenced atomic batches, as on a replicated bucket,
// on the same single node: the comparison that chose single writes there.
func BenchmarkWorkerApplyAtomicBatches(b *testing.B) {
	benchWorkerApply(b, jsadapter.WithAtomicBatches(true))
}

func benchWorkerApply(b *testing.B, opts ...jsadapter.PartitionStoreOption) {
	ns := natstest.RunServer(b)
	s := newStack(b, ns.ClientURL(), time.Hour, topology.DefaultPartitions)
	if len(opts) > 0 {
		store, err := jsadapter.NewPartitionStore(context.Background(), s.js, opts...)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(store.Close)
		s.store = store
	}
	js := s.js
	futures := make([]jetstream.PubAckFuture, 0, b.N)
	partitions := make([]int, 0, b.N)
	for i := 0; i < b.N; i++ {
		user := strconv.Itoa(i % 100000)
		body := fmt.Sprintf(`{"event_id":"w-%d","user_id":%q,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":%d,"region":"US"}}`, i, user, 1+i%4)
		f, err := js.PublishAsync(topology.EventSubject("US", domain.UserToken(user)), []byte(body))
		if err != nil {
			b.Fatal(err)
		}
		futures = append(futures, f)
		if i%20000 == 19999 {
			<-js.PublishAsyncComplete()
		}
		partitions = append(partitions, domain.PartitionOf(domain.UserToken(user), s.topo.Partitions))
	}
	<-js.PublishAsyncComplete()
	last := make([]uint64, s.topo.Partitions)
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			last[partitions[i]] = max(last[partitions[i]], ack.Sequence)
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	start := time.Now()
	s.startWorker("bench")
	for {
		done := true
		for p := 0; p < s.topo.Partitions; p++ {
			if shardOf(b, js, p).AppliedSeq < last[p] {
				done = false
				break
			}
		}
		if done {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}
