package jetstream_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/ops"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
)

func clusterStatus(t *testing.T, r *jsadapter.OpsReader) ops.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return r.ClusterStatus(ctx)
}

func TestOpsReaderReportsStreamArchiveWorkersAndOwners(t *testing.T) {
	const partitions = 4
	ns := natstest.RunServer(t)
	s := newStack(t, ns.ClientURL(), time.Hour, partitions)
	r := jsadapter.NewOpsReader(s.js, s.catalog, partitions)

	// A fresh topology: everything readable and empty, but no archiver yet.
	c := clusterStatus(t, r)
	if c.Stream.Error != "" || c.Stream.Name != topology.EventsStream || c.Stream.Messages != 0 || c.Stream.LastSeq != 0 {
		t.Fatalf("fresh stream: %+v", c.Stream)
	}
	if !strings.Contains(c.Archive.Error, `"archiver" not found`) || c.Archive.Consumer != "archiver" {
		t.Fatalf("fresh archive: %+v", c.Archive)
	}
	if c.Workers.Error != "" || len(c.Workers.Members) != 0 {
		t.Fatalf("fresh workers: %+v", c.Workers)
	}
	if c.Partitions.LeasesError != "" || c.Partitions.ShardsError != "" || c.Partitions.Count != partitions || len(c.Partitions.Items) != partitions {
		t.Fatalf("fresh partitions: %+v", c.Partitions)
	}
	for p, it := range c.Partitions.Items {
		if it != (ops.PartitionStatus{Partition: p}) {
			t.Fatalf("fresh partition %d: %+v", p, it)
		}
	}

	// The archiver's durable consumer, then events, then two workers.
	if _, err := jsadapter.NewArchiveFeed(context.Background(), s.js, jsadapter.ArchiveFeedConfig{}); err != nil {
		t.Fatal(err)
	}
	lastSeqOf := map[int]uint64{}
	const events = 40
	for i := range events {
		user := fmt.Sprintf("u%d", i)
		ack, err := s.js.Publish(context.Background(), topology.EventSubject("US", user),
			fmt.Appendf(nil, `{"user_id":%q,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"US"}}`, user))
		if err != nil {
			t.Fatal(err)
		}
		lastSeqOf[domain.PartitionOf(user, partitions)] = ack.Sequence
	}
	startMember(t, s, ns.ClientURL(), "wa")
	startMember(t, s, ns.ClientURL(), "wb")

	// Wait until each partition is owned by a live worker that applied its
	// last event.
	var last ops.Cluster
	deadline := time.Now().Add(20 * time.Second)
	for {
		last = clusterStatus(t, r)
		if settled(last, lastSeqOf) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster status did not settle: %+v", last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if last.Stream.Error != "" || last.Stream.Messages != events || last.Stream.FirstSeq != 1 || last.Stream.LastSeq != events || last.Stream.Bytes == 0 || last.Stream.Consumers < 1 {
		t.Fatalf("stream: %+v", last.Stream)
	}
	// Nothing is archived: every event is pending for the archiver.
	if last.Archive.Error != "" || last.Archive.NumPending != events || last.Archive.NumAckPending != 0 || last.Archive.Lag != events || last.Archive.AckFloorSeq != 0 {
		t.Fatalf("archive: %+v", last.Archive)
	}
	if !slices.Equal(last.Workers.Members, []string{"wa", "wb"}) || last.Workers.Error != "" {
		t.Fatalf("workers: %+v", last.Workers)
	}
	owners := map[string]int{}
	for _, it := range last.Partitions.Items {
		owners[it.Owner]++
	}
	if owners["wa"] != 2 || owners["wb"] != 2 {
		t.Fatalf("partitions per owner %v, want 2 each", owners)
	}
}

// settled reports whether the partitions are balanced over the two live
// workers (a worker that joined takes its share shortly after) and each
// owner also wrote its shard, with its last event applied.
func settled(c ops.Cluster, lastSeqOf map[int]uint64) bool {
	if len(c.Workers.Members) != 2 {
		return false
	}
	owned := map[string]int{}
	for _, it := range c.Partitions.Items {
		if !slices.Contains(c.Workers.Members, it.Owner) || it.ShardOwner != it.Owner || it.AppliedSeq != lastSeqOf[it.Partition] ||
			it.DeliveredSeq != it.AppliedSeq || it.DurableLag != 0 {
			return false
		}
		owned[it.Owner]++
	}
	for _, m := range c.Workers.Members {
		if owned[m] != len(c.Partitions.Items)/len(c.Workers.Members) {
			return false
		}
	}
	return true
}

func TestOpsReaderReportsEachUnreadablePart(t *testing.T) {
	const partitions = 2
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	ctx := context.Background()
	if _, err := topology.Ensure(ctx, js, topology.Config{Partitions: partitions}); err != nil {
		t.Fatal(err)
	}
	counts, err := js.KeyValue(ctx, topology.CountsBucket)
	if err != nil {
		t.Fatal(err)
	}
	catalog := domain.MustCatalog(testRegions, []int{1, 2})
	good := catalog.EncodeShard(domain.ShardHeader{Partition: 0, Owner: "w0", AppliedSeq: 7, DeliveredSeq: 10}, domain.NewCounts(catalog))
	for key, v := range map[string][]byte{topology.ShardKey(0): good, topology.ShardKey(1): []byte("not a shard"), topology.ShardKey(9): good} {
		if _, err := counts.Put(ctx, key, v); err != nil {
			t.Fatal(err)
		}
	}
	leases, err := js.KeyValue(ctx, topology.LeasesBucket)
	if err != nil {
		t.Fatal(err)
	}
	// A released lease (deleted key) names no owner.
	if _, err := leases.Put(ctx, topology.ShardKey(1), []byte("gone")); err != nil {
		t.Fatal(err)
	}
	if err := leases.Delete(ctx, topology.ShardKey(1)); err != nil {
		t.Fatal(err)
	}
	r := jsadapter.NewOpsReader(js, catalog, partitions)
	c := clusterStatus(t, r)
	// The readable shard is reported; the unreadable one is named in the
	// error; a shard beyond the partition count is ignored.
	if c.Partitions.Items[0] != (ops.PartitionStatus{Partition: 0, ShardOwner: "w0", AppliedSeq: 7, DeliveredSeq: 10, DurableLag: 3}) ||
		c.Partitions.Items[1] != (ops.PartitionStatus{Partition: 1}) ||
		!strings.HasPrefix(c.Partitions.ShardsError, "p1: count shard:") || c.Partitions.LeasesError != "" {
		t.Fatalf("partitions: %+v", c.Partitions)
	}

	// With the server gone, every part says so, within the caller's deadline.
	ns.Shutdown()
	ns.WaitForShutdown()
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	c = r.ClusterStatus(short)
	if c.Stream.Error == "" || c.Archive.Error == "" || c.Workers.Error == "" || c.Partitions.LeasesError == "" || c.Partitions.ShardsError == "" {
		t.Fatalf("server down, every part must carry an error: %+v", c)
	}
	if len(c.Partitions.Items) != partitions || c.Partitions.Items[0].ShardOwner != "" {
		t.Fatalf("server down: partitions %+v", c.Partitions.Items)
	}
}
