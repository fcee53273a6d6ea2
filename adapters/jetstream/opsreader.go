package jetstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/ops"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// OpsReader implements ops.ClusterSource: it reads the events stream's
// state, the archiver's durable consumer, the live workers, the partition
// leases and the count shards' headers. One read is five NATS requests made
// at once: a stream info, a consumer info, and one batched direct get of
// the last value of every key (jetstreamext.GetLastMsgsFor) per bucket:
// workers, leases and counts. The edge user of nats/config may make them.
type OpsReader struct {
	js         jetstream.JetStream
	catalog    *domain.Catalog
	partitions int
}

// NewOpsReader returns a reader for a stream of partitions partitions,
// decoding count shards with catalog.
func NewOpsReader(js jetstream.JetStream, catalog *domain.Catalog, partitions int) *OpsReader {
	return &OpsReader{js: js, catalog: catalog, partitions: partitions}
}

// ClusterStatus reads every part at once; a part that fails carries its
// error and leaves the others alone. The partitions' lag is left to the
// caller (ops.Service).
func (r *OpsReader) ClusterStatus(ctx context.Context) ops.Cluster {
	c := ops.Cluster{
		Stream:     ops.StreamStatus{Name: topology.EventsStream},
		Archive:    ops.ArchiveStatus{Consumer: ArchiveConsumer},
		Workers:    ops.WorkersStatus{Members: []string{}},
		Partitions: ops.PartitionsStatus{Count: r.partitions, Items: make([]ops.PartitionStatus, r.partitions)},
	}
	for p := range c.Partitions.Items {
		c.Partitions.Items[p].Partition = p
	}
	var wg sync.WaitGroup
	wg.Go(func() { r.readStream(ctx, &c.Stream) })
	wg.Go(func() { r.readArchive(ctx, &c.Archive) })
	wg.Go(func() {
		keys, err := lastValues(ctx, r.js, topology.WorkersBucket)
		if err != nil {
			c.Workers.Error = err.Error()
			return
		}
		for k := range keys {
			c.Workers.Members = append(c.Workers.Members, k)
		}
		slices.Sort(c.Workers.Members)
	})
	// Leases and shards write different fields of the same items.
	wg.Go(func() {
		leases, err := lastValues(ctx, r.js, topology.LeasesBucket)
		if err != nil {
			c.Partitions.LeasesError = err.Error()
			return
		}
		for k, v := range leases {
			if p, ok := topology.ParseShardKey(k); ok && p < r.partitions {
				c.Partitions.Items[p].Owner = string(v)
			}
		}
	})
	wg.Go(func() {
		shards, err := lastValues(ctx, r.js, topology.CountsBucket)
		if err != nil {
			c.Partitions.ShardsError = err.Error()
			return
		}
		var bad []error
		for k, v := range shards {
			p, ok := topology.ParseShardKey(k)
			if !ok || p >= r.partitions {
				continue
			}
			h, _, _, err := r.catalog.DecodeShard(v)
			if err != nil {
				bad = append(bad, fmt.Errorf("%s: %w", k, err))
				continue
			}
			it := &c.Partitions.Items[p]
			it.ShardOwner, it.AppliedSeq, it.DeliveredSeq = h.Owner, h.AppliedSeq, h.DeliveredSeq
			it.DurableLag = h.DeliveredSeq - h.AppliedSeq
		}
		if err := errors.Join(bad...); err != nil {
			c.Partitions.ShardsError = err.Error()
		}
	})
	wg.Wait()
	return c
}

func (r *OpsReader) readStream(ctx context.Context, st *ops.StreamStatus) {
	s, err := r.js.Stream(ctx, topology.EventsStream)
	if err != nil {
		st.Error = fmt.Sprintf("stream %s info: %v", topology.EventsStream, err)
		return
	}
	state := s.CachedInfo().State
	st.Messages, st.Bytes, st.FirstSeq, st.LastSeq, st.Consumers = state.Msgs, state.Bytes, state.FirstSeq, state.LastSeq, state.Consumers
}

func (r *OpsReader) readArchive(ctx context.Context, st *ops.ArchiveStatus) {
	c, err := r.js.Consumer(ctx, topology.EventsStream, ArchiveConsumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		st.Error = fmt.Sprintf("durable consumer %q not found: no archiver has started yet", ArchiveConsumer)
		return
	}
	if err != nil {
		st.Error = fmt.Sprintf("consumer %s info: %v", ArchiveConsumer, err)
		return
	}
	info := c.CachedInfo()
	st.NumPending, st.NumAckPending, st.AckFloorSeq = info.NumPending, info.NumAckPending, info.AckFloor.Stream
	st.Lag = info.NumPending + uint64(max(0, info.NumAckPending))
}

// hdrNumPending is set by the server on each message of a batched direct
// get: how many messages of the answer follow.
const hdrNumPending = "Nats-Num-Pending"

// lastValues reads the live keys of a bucket and their values with one
// batched direct get (see lastEntries).
func lastValues(ctx context.Context, js jetstream.JetStream, bucket string) (map[string][]byte, error) {
	entries, err := lastEntries(ctx, js, bucket)
	if err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(entries))
	for k, e := range entries {
		out[k] = e.value
	}
	return out, nil
}

// lastEntry is a key's last value and its revision.
type lastEntry struct {
	value []byte
	rev   uint64
}

// lastEntries reads the live keys of a bucket, their values and revisions
// with one batched direct get; deleted, purged and expired keys are left
// out. The answer is complete when its last message says nothing is
// pending (or the server found no key); one cut short by ctx is an error,
// not a smaller bucket.
func lastEntries(ctx context.Context, js jetstream.JetStream, bucket string) (map[string]lastEntry, error) {
	prefix := "$KV." + bucket + "."
	msgs, err := jetstreamext.GetLastMsgsFor(ctx, js, topology.BucketStream(bucket), []string{prefix + ">"})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", bucket, err)
	}
	out := map[string]lastEntry{}
	complete := false
	for m, err := range msgs {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			complete = true // the bucket is empty
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bucket %s: %w", bucket, err)
		}
		complete = m.Header.Get(hdrNumPending) == "0"
		if isDeletion(m.Header) {
			continue
		}
		if key, ok := strings.CutPrefix(m.Subject, prefix); ok {
			out[key] = lastEntry{value: m.Data, rev: m.Sequence}
		}
	}
	if !complete {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("bucket %s: %w", bucket, err)
		}
		return nil, fmt.Errorf("bucket %s: incomplete answer", bucket)
	}
	return out, nil
}
