package jetstream_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
)

// fillPlayers stores n present players spread over the partitions, as
// owners would have written them, and returns how many each partition has.
func fillPlayers(tb testing.TB, s *stack, n int) []int {
	tb.Helper()
	per := make([]int, s.topo.Partitions)
	for i := 0; i < n; i++ {
		token := domain.UserToken("u" + strconv.Itoa(i))
		p := domain.PartitionOf(token, s.topo.Partitions)
		slot, _ := s.catalog.SlotOf(testRegions[i%len(testRegions)], 1+i%4)
		value := s.catalog.EncodePlayer(domain.PlayerState{Present: true, Slot: slot, LastSeq: uint64(i + 1)})
		if _, err := s.js.PublishAsync(topology.PlayerSubject(p, token), value); err != nil {
			tb.Fatal(err)
		}
		per[p]++
		if i%50000 == 49999 {
			<-s.js.PublishAsyncComplete()
		}
	}
	<-s.js.PublishAsyncComplete()
	return per
}

// loadAll loads the given partitions at once, as a worker taking them
// over does, and returns each one's players by token.
func loadAll(tb testing.TB, s *stack, ps []int) map[int]map[string]partition.StoredPlayer {
	tb.Helper()
	out := make(map[int]map[string]partition.StoredPlayer, len(ps))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range ps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got := map[string]partition.StoredPlayer{}
			_, err := s.store.LoadPartition(context.Background(), p, func(b []partition.StoredPlayer) {
				for _, sp := range b {
					if _, dup := got[sp.Token]; dup {
						tb.Errorf("partition %d: player %s loaded twice", p, sp.Token)
					}
					got[sp.Token] = sp
				}
			})
			if err != nil {
				tb.Errorf("load partition %d: %v", p, err)
			}
			mu.Lock()
			out[p] = got
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// BenchmarkLoadPartitions measures how fast the players of every partition
// are read back when a worker takes all partitions over: b.N players are
// stored first, then every partition is loaded at once.
func BenchmarkLoadPartitions(b *testing.B) {
	ns := natstest.RunServer(b)
	s := newStack(b, ns.ClientURL(), time.Hour, topology.DefaultPartitions)
	per := fillPlayers(b, s, b.N)
	b.ResetTimer()
	start := time.Now()
	got := loadAll(b, s, allPartitions(s.topo.Partitions))
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "players/s")
	for p, n := range per {
		if len(got[p]) != n {
			b.Errorf("partition %d: loaded %d players, stored %d", p, len(got[p]), n)
		}
	}
}

func allPartitions(n int) []int {
	ps := make([]int, n)
	for i := range ps {
		ps[i] = i
	}
	return ps
}
