package topology_test

import (
	"context"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go/jetstream"
)

func playersStreamConfig(t *testing.T, js jetstream.JetStream) jetstream.StreamConfig {
	t.Helper()
	s, err := js.Stream(context.Background(), topology.PlayersStream)
	if err != nil {
		t.Fatal(err)
	}
	return s.CachedInfo().Config
}

// The owners write players as atomic batches: Ensure allows them on the
// players bucket's stream when it creates it, keeps them allowed when it
// updates the bucket (the KV API would switch them off), and allows them
// again where someone switched them off.
func TestEnsureAllowsAtomicBatchesOnThePlayersBucket(t *testing.T) {
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	ctx := context.Background()
	ensure := func(ttl time.Duration) {
		t.Helper()
		if _, err := topology.Ensure(ctx, js, topology.Config{Partitions: 4, PlayerTTL: ttl}); err != nil {
			t.Fatal(err)
		}
	}
	ensure(time.Hour)
	if cfg := playersStreamConfig(t, js); !cfg.AllowAtomicPublish || cfg.MaxAge != time.Hour {
		t.Fatalf("created: allow atomic %v, max age %v", cfg.AllowAtomicPublish, cfg.MaxAge)
	}

	// A process with another player TTL updates the bucket.
	ensure(90 * time.Second)
	if cfg := playersStreamConfig(t, js); !cfg.AllowAtomicPublish || cfg.MaxAge != 90*time.Second {
		t.Fatalf("after an update: allow atomic %v, max age %v", cfg.AllowAtomicPublish, cfg.MaxAge)
	}

	// The same settings again change nothing.
	before := playersStreamConfig(t, js)
	ensure(90 * time.Second)
	if after := playersStreamConfig(t, js); !after.AllowAtomicPublish || after.MaxAge != before.MaxAge {
		t.Fatalf("after an unchanged ensure: %+v", after)
	}

	// Switched off by hand (or by an update through the KV API): Ensure puts it back.
	if _, err := js.CreateOrUpdateKeyValue(ctx, topology.PlayersBucketConfig(topology.Config{PlayerTTL: 90 * time.Second, Replicas: 1, Partitions: 4}.Defaults())); err != nil {
		t.Fatal(err)
	}
	if playersStreamConfig(t, js).AllowAtomicPublish {
		t.Fatal("the KV API kept atomic batches allowed; this test no longer shows the KV update switching them off")
	}
	ensure(90 * time.Second)
	if !playersStreamConfig(t, js).AllowAtomicPublish {
		t.Fatal("Ensure did not allow atomic batches again")
	}

	// The other buckets are plain KV buckets.
	for _, b := range []string{topology.CountsBucket, topology.WorkersBucket, topology.LeasesBucket} {
		s, err := js.Stream(ctx, "KV_"+b)
		if err != nil {
			t.Fatal(err)
		}
		if s.CachedInfo().Config.AllowAtomicPublish {
			t.Fatalf("%s allows atomic batches", b)
		}
	}
}
