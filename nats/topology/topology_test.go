package topology_test

import (
	"context"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
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

	// Switched off by hand (an update through the KV API does it too):
	// Ensure puts it back.
	off := playersStreamConfig(t, js)
	off.AllowAtomicPublish = false
	if _, err := js.UpdateStream(ctx, off); err != nil {
		t.Fatal(err)
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

// A players bucket made by an earlier version has expiry markers
// (LimitMarkerTTL), which can roll up a write landing at expiry (see
// TestPlayersBucketKeepsAWriteThatLandsAtExpiry): Ensure turns them off,
// keeps per-message TTLs (which the server cannot turn off, and the
// fence's "never" needs) and atomic batches allowed, and the fence and
// player writes still work.
func TestEnsureTurnsExpiryMarkersOffOnAnExistingPlayersBucket(t *testing.T) {
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	ctx := context.Background()
	old := topology.PlayersBucketConfig(topology.Config{PlayerTTL: time.Hour}.Defaults())
	old.LimitMarkerTTL = 15 * time.Minute
	if _, err := js.CreateKeyValue(ctx, old); err != nil {
		t.Fatal(err)
	}
	if cfg := playersStreamConfig(t, js); cfg.SubjectDeleteMarkerTTL == 0 || !cfg.AllowMsgTTL {
		t.Fatalf("the old bucket has no markers: %+v", cfg)
	}
	if _, err := topology.Ensure(ctx, js, topology.Config{Partitions: 4, PlayerTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	cfg := playersStreamConfig(t, js)
	if cfg.SubjectDeleteMarkerTTL != 0 || !cfg.AllowMsgTTL || !cfg.AllowAtomicPublish || cfg.MaxAge != time.Hour {
		t.Fatalf("after Ensure: markers %v, msg TTL %v, atomic %v, max age %v", cfg.SubjectDeleteMarkerTTL, cfg.AllowMsgTTL, cfg.AllowAtomicPublish, cfg.MaxAge)
	}
	// Ensure again changes nothing.
	if _, err := topology.Ensure(ctx, js, topology.Config{Partitions: 4, PlayerTTL: time.Hour}); err != nil {
		t.Fatal(err)
	}
	if again := playersStreamConfig(t, js); again.SubjectDeleteMarkerTTL != 0 || !again.AllowAtomicPublish || !again.AllowMsgTTL {
		t.Fatalf("after a second Ensure: %+v", again)
	}
	fence := &nats.Msg{Subject: topology.FenceSubject(0), Data: []byte("w1"), Header: nats.Header{}}
	fence.Header.Set(jetstream.MsgTTLHeader, "never")
	if _, err := js.PublishMsg(ctx, fence); err != nil {
		t.Fatalf("fence with a per-message TTL: %v", err)
	}
	kv, err := js.KeyValue(ctx, topology.PlayersBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, topology.PlayerKey(0, "u1"), []byte("x")); err != nil {
		t.Fatal(err)
	}
}
