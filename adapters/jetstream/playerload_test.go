package jetstream_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
)

// TestLoadPartitionReadsEveryLivePlayerOnce stores players, deletes some,
// and loads partitions both ways: all at once (one pass over the players
// stream) and one alone (a filtered watch). Each partition must get exactly
// its live players, each once, with their stored values.
func TestLoadPartitionReadsEveryLivePlayerOnce(t *testing.T) {
	ns := natstest.RunServer(t)
	s := newStack(t, ns.ClientURL(), time.Hour, topology.DefaultPartitions)
	const n = 6000
	fillPlayers(t, s, n)
	kv, err := s.js.KeyValue(context.Background(), topology.PlayersBucket)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int]map[string]string{}
	for i := 0; i < n; i++ {
		token := domain.UserToken("u" + strconv.Itoa(i))
		p := domain.PartitionOf(token, s.topo.Partitions)
		key := strconv.Itoa(p) + "." + token
		if i%7 == 0 {
			if err := kv.Delete(context.Background(), key); err != nil {
				t.Fatal(err)
			}
			continue
		}
		e, err := kv.Get(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if want[p] == nil {
			want[p] = map[string]string{}
		}
		want[p][token] = string(e.Value())
	}
	// A fence is not a player.
	if _, err := s.store.Claim(context.Background(), 3, "tester"); err != nil {
		t.Fatal(err)
	}

	check := func(how string, got map[int]map[string]partition.StoredPlayer) {
		t.Helper()
		for p, players := range got {
			if len(players) != len(want[p]) {
				t.Errorf("%s: partition %d: loaded %d players, %d live", how, p, len(players), len(want[p]))
			}
			for token, sp := range players {
				if v, ok := want[p][token]; !ok || v != string(sp.Value) {
					t.Errorf("%s: partition %d: player %s loaded as %q, stored %q (live %v)", how, p, token, sp.Value, v, ok)
				}
				if sp.Written.IsZero() {
					t.Errorf("%s: partition %d: player %s without write time", how, p, token)
				}
			}
		}
	}
	check("all at once", loadAll(t, s, allPartitions(s.topo.Partitions)))
	check("one alone", loadAll(t, s, []int{5}))
	check("two together", loadAll(t, s, []int{7, 9}))
}

// TestLoadPartitionGivesUpWithItsContext: an owner whose context ends while
// its partition is being read returns at once with the context's error,
// and the other partitions of the same pass still load completely.
func TestLoadPartitionGivesUpWithItsContext(t *testing.T) {
	ns := natstest.RunServer(t)
	s := newStack(t, ns.ClientURL(), time.Hour, topology.DefaultPartitions)
	per := fillPlayers(t, s, 20000)
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error, 1)
	go func() {
		_, err := s.store.LoadPartition(ctx, 0, func([]partition.StoredPlayer) { cancel() })
		gaveUp <- err
	}()
	got := loadAll(t, s, allPartitions(s.topo.Partitions)[1:])
	if err := <-gaveUp; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled load returned %v, want context.Canceled", err)
	}
	for p := 1; p < s.topo.Partitions; p++ {
		if len(got[p]) != per[p] {
			t.Errorf("partition %d: loaded %d players, stored %d", p, len(got[p]), per[p])
		}
	}
}
