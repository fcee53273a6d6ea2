package jetstream_test

import (
	"context"
	"testing"
	"time"

	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/modules/lease"
	"github.com/gamemodes/gamemodes/modules/lease/leasetest"
	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/modules/partition/partitiontest"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go/jetstream"
)

// The JetStream adapters keep the contracts the partition module's fakes
// keep (partitiontest), each subtest on a fresh embedded server.

// contractServer starts a single-node server with the topology for
// partitions partitions and returns a client as the binary makes it.
func contractServer(t *testing.T, partitions int) jetstream.JetStream {
	t.Helper()
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	js, err := jetstream.New(js.Conn(), jetstream.WithPublishAsyncMaxPending(65536))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := topology.Ensure(ctx, js, topology.Config{Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	return js
}

func contractStore(t *testing.T, opts ...jsadapter.PartitionStoreOption) partitiontest.StoreHarness {
	js := contractServer(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := jsadapter.NewPartitionStore(ctx, js, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return partitiontest.StoreHarness{Store: s, Limits: s.PlayerWriteLimits()}
}

// The store's two write paths: pipelined single fenced writes (what a
// single replica uses) and fenced atomic batches (a replicated bucket's).
func TestPartitionStoreKeepsTheStoreContract(t *testing.T) {
	t.Run("SingleWrites", func(t *testing.T) {
		partitiontest.StoreContract(t, func(t *testing.T) partitiontest.StoreHarness {
			h := contractStore(t)
			if h.Store.(*jsadapter.PartitionStore).AtomicBatches() {
				t.Fatal("a single replica chose atomic batches")
			}
			return h
		})
	})
	t.Run("AtomicBatches", func(t *testing.T) {
		partitiontest.StoreContract(t, func(t *testing.T) partitiontest.StoreHarness {
			return contractStore(t, jsadapter.WithAtomicBatches(true))
		})
	})
}

// On a replicated players bucket the store chooses fenced atomic batches
// by itself. One 3-node cluster serves every subtest: each starts from
// purged buckets.
func TestPartitionStoreKeepsTheStoreContractOnR3(t *testing.T) {
	if testing.Short() {
		t.Skip("a 3-node cluster")
	}
	c := natstest.RunCluster(t, 3)
	_, js := natstest.Connect(t, c.URLs())
	js, err := jetstream.New(js.Conn(), jetstream.WithPublishAsyncMaxPending(65536))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := topology.Ensure(ctx, js, topology.Config{Partitions: 8, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	partitiontest.StoreContract(t, func(t *testing.T) partitiontest.StoreHarness {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, name := range []string{topology.PlayersStream, "KV_" + topology.CountsBucket} {
			st, err := js.Stream(ctx, name)
			if err == nil {
				err = st.Purge(ctx)
			}
			if err != nil {
				t.Fatalf("purge %s: %v", name, err)
			}
		}
		s, err := jsadapter.NewPartitionStore(ctx, js)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
		if !s.AtomicBatches() {
			t.Fatal("a replicated players bucket without atomic batches")
		}
		return partitiontest.StoreHarness{Store: s, Limits: s.PlayerWriteLimits()}
	})
}

func TestSharedPartitionFeedKeepsTheFeedContract(t *testing.T) {
	partitiontest.FeedContract(t, func(t *testing.T, partitions int) partitiontest.FeedHarness {
		js := contractServer(t, partitions)
		return partitiontest.FeedHarness{
			Feed: jsadapter.NewSharedPartitionFeed(js, partitions),
			Publish: func(t *testing.T, region, token string, data []byte) uint64 {
				ack, err := js.Publish(context.Background(), topology.EventSubject(region, token), data)
				if err != nil {
					t.Fatal(err)
				}
				return ack.Sequence
			},
		}
	})
}

func contractCoordinator(t *testing.T) (*jsadapter.Coordinator, jetstream.JetStream) {
	js := contractServer(t, 8)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := jsadapter.NewCoordinator(ctx, js, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, js
}

func TestCoordinatorKeepsTheCoordinatorContract(t *testing.T) {
	partitiontest.CoordinatorContract(t, func(t *testing.T) partition.Coordinator {
		c, _ := contractCoordinator(t)
		return c
	})
}

func TestKVLeaseKeepsTheLeaseContract(t *testing.T) {
	leasetest.Contract(t, func(t *testing.T) (lease.Lease, func(*testing.T, string, uint64)) {
		c, js := contractCoordinator(t)
		return c.Lease(1), func(t *testing.T, member string, rev uint64) {
			kv, err := js.KeyValue(context.Background(), topology.LeasesBucket)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := kv.Update(context.Background(), topology.ShardKey(1), []byte(member), rev); err != nil {
				t.Fatal(err)
			}
		}
	})
}
