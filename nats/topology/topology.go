// Package topology is the NATS layout of gamemodes as code and the one owner
// of the wire contract: the events stream, the players, count-shard, workers
// and leases buckets and their streams, every subject, key and gamemodes
// header, and an idempotent Ensure that creates or updates them at start. It
// imports only nats.go, so the public client package uses its names too.
package topology

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Names of the stream and buckets.
const (
	EventsStream  = "GAMEMODES_EVENTS"
	PlayersBucket = "gamemodes_players"
	CountsBucket  = "gamemodes_counts"
	// WorkersBucket holds one key per live worker, refreshed by heartbeats.
	WorkersBucket = "gamemodes_workers"
	// LeasesBucket holds one key per owned partition: the owner's lease.
	LeasesBucket = "gamemodes_leases"
	// PlayersStream is the stream behind the players bucket.
	PlayersStream = kvStreamPrefix + PlayersBucket
	// kvStreamPrefix starts the name of the stream behind a KV bucket.
	kvStreamPrefix = "KV_"

	// EventsSubjectPrefix starts every subject reporters publish to: gamemodes.events.<REGION>.<user token>.
	EventsSubjectPrefix = "gamemodes.events"
	// EventsSubjects is the stream's subject filter.
	EventsSubjects = EventsSubjectPrefix + ".*.*"

	// PopularSubjectPrefix starts the core NATS subjects on which the lobby
	// list of a region is published: gamemodes.popular.<REGION>.
	PopularSubjectPrefix = "gamemodes.popular"
	// HeaderPopularVersion is the header of a lobby list message carrying
	// its version (decimal): it increases with every change of the region's
	// list and is the counts-bucket revision as of which the list is exact,
	// so it is comparable across publishers. A subscriber drops a message
	// whose version is not above the last one it kept.
	HeaderPopularVersion = "Gamemodes-Version"
	// HeaderPopularPublisher names the edge that published a lobby list.
	HeaderPopularPublisher = "Gamemodes-Publisher"
	// HeaderSource marks events stored by an edge (value SourceHTTP); events
	// published directly by game servers do not carry it.
	HeaderSource = "Gamemodes-Source"
	// SourceHTTP is HeaderSource's value on events an edge stored.
	SourceHTTP = "http"

	// PopularPublisherKey is the key, in the leases bucket, of the lease of
	// the one edge that publishes the lobby lists on NATS.
	PopularPublisherKey = "popular_publisher"

	// DefaultLeaseTTL is the default lifetime of memberships and leases.
	DefaultLeaseTTL = 3 * time.Second

	// DefaultPartitions is the partition count of a newly created events stream.
	DefaultPartitions = 32
	// MaxPartitions bounds the partition count.
	MaxPartitions = 1024

	// metaPartitions is the stream metadata key holding the partition count.
	metaPartitions = "gamemodes.partitions"
)

// Config is what Ensure creates. Partitions and Replicas only apply when the
// stream and buckets are created: existing ones keep their partition count
// (players are keyed by it) and replicas (change those with the nats CLI).
type Config struct {
	// Partitions is the number of player partitions (default 32).
	Partitions int
	// Replicas is the replication factor of the stream and buckets (1, or 3 in a cluster).
	Replicas int
	// PlayerTTL is how long a player stays counted without any event of theirs.
	PlayerTTL time.Duration
	// EventsMaxAge is how long events stay in the stream (the archiver's backlog limit).
	EventsMaxAge time.Duration
	// EventsMaxBytes bounds the stream's size; -1 for no bound.
	EventsMaxBytes int64
	// DuplicateWindow is how long an event_id is remembered for deduplication.
	DuplicateWindow time.Duration
	// LeaseTTL is how long a worker's membership and partition leases live
	// without renewal: the takeover time after a worker dies.
	LeaseTTL time.Duration
}

// Defaults fills zero fields with the documented defaults.
func (c Config) Defaults() Config {
	if c.Partitions == 0 {
		c.Partitions = DefaultPartitions
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.PlayerTTL == 0 {
		c.PlayerTTL = time.Hour
	}
	if c.EventsMaxAge == 0 {
		c.EventsMaxAge = 7 * 24 * time.Hour
	}
	if c.EventsMaxBytes == 0 {
		c.EventsMaxBytes = -1
	}
	if c.DuplicateWindow == 0 {
		c.DuplicateWindow = 2 * time.Minute
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	return c
}

// Validate checks the settings.
func (c Config) Validate() error {
	switch {
	case c.Partitions < 1 || c.Partitions > MaxPartitions:
		return fmt.Errorf("partitions %d: want 1-%d", c.Partitions, MaxPartitions)
	case c.Replicas < 1 || c.Replicas > 5:
		return fmt.Errorf("replicas %d: want 1-5", c.Replicas)
	case c.PlayerTTL < 2*time.Second:
		return fmt.Errorf("player TTL %s: want at least 2s", c.PlayerTTL)
	case c.LeaseTTL < time.Second:
		return fmt.Errorf("lease TTL %s: want at least 1s", c.LeaseTTL)
	case c.DuplicateWindow <= 0 || c.DuplicateWindow > c.EventsMaxAge:
		return fmt.Errorf("duplicate window %s: want more than 0 and at most the events max age %s", c.DuplicateWindow, c.EventsMaxAge)
	}
	return nil
}

// BucketStream is the name of the stream behind a KV bucket.
func BucketStream(bucket string) string { return kvStreamPrefix + bucket }

// EventSubject is the subject a reporter publishes an event to:
// gamemodes.events.<REGION>.<user token> (domain.UserToken of the user id).
func EventSubject(region, token string) string {
	return EventsSubjectPrefix + "." + region + "." + token
}

// PopularSubject is the subject of region's lobby list: gamemodes.popular.<REGION>.
func PopularSubject(region string) string { return PopularSubjectPrefix + "." + region }

// EventsTransform is the stream's subject transform: it prepends the
// partition of the user token and drops the token, so the stream holds at
// most partitions x regions subjects.
func EventsTransform(partitions int) *jetstream.SubjectTransformConfig {
	return &jetstream.SubjectTransformConfig{
		Source:      EventsSubjects,
		Destination: fmt.Sprintf("{{partition(%d,2)}}.%s.{{wildcard(1)}}", partitions, EventsSubjectPrefix),
	}
}

// PartitionEventsFilter is the stored-subject filter of one partition's events.
func PartitionEventsFilter(p int) string {
	return strconv.Itoa(p) + "." + EventsSubjectPrefix + ".*"
}

// ParseStoredEventSubject splits a stored subject "<p>.gamemodes.events.<REGION>".
func ParseStoredEventSubject(subject string) (partition int, region string, ok bool) {
	ps, rest, found := strings.Cut(subject, ".")
	if !found {
		return 0, "", false
	}
	region, found = strings.CutPrefix(rest, EventsSubjectPrefix+".")
	if !found || region == "" || strings.Contains(region, ".") {
		return 0, "", false
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 {
		return 0, "", false
	}
	return p, region, true
}

// PlayerKey is the players bucket key of a user token in a partition.
func PlayerKey(p int, token string) string { return strconv.Itoa(p) + "." + token }

// PlayerSubject is the stream subject behind a player key.
func PlayerSubject(p int, token string) string {
	return "$KV." + PlayersBucket + "." + strconv.Itoa(p) + "." + token
}

// FenceSubject is the players stream subject holding partition p's fence:
// the current owner's claim. It is outside every partition's key space (keys
// start with the partition number) and never expires.
func FenceSubject(p int) string { return "$KV." + PlayersBucket + "._fence." + strconv.Itoa(p) }

// PartitionPlayersFilter is the key filter of one partition's players.
func PartitionPlayersFilter(p int) string { return strconv.Itoa(p) + ".>" }

// PartitionPlayersSubjects is the players stream subject filter of one partition.
func PartitionPlayersSubjects(p int) string {
	return "$KV." + PlayersBucket + "." + strconv.Itoa(p) + ".>"
}

// ShardKey is the count-shard key of a partition.
func ShardKey(p int) string { return "p" + strconv.Itoa(p) }

// ParseShardKey returns the partition of a count-shard key.
func ParseShardKey(key string) (int, bool) {
	s, ok := strings.CutPrefix(key, "p")
	if !ok {
		return 0, false
	}
	p, err := strconv.Atoi(s)
	return p, err == nil && p >= 0
}

// Topology is what Ensure found or made.
type Topology struct {
	// Partitions is the events stream's partition count.
	Partitions int
	// PlayerTTL is the players bucket's TTL.
	PlayerTTL time.Duration
	// LeaseTTL is the lease bucket's TTL.
	LeaseTTL time.Duration
}

// EventsStreamConfig is the events stream as configured.
func EventsStreamConfig(c Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:             EventsStream,
		Description:      "gamemodes player events, partitioned by user token",
		Subjects:         []string{EventsSubjects},
		SubjectTransform: EventsTransform(c.Partitions),
		Retention:        jetstream.LimitsPolicy,
		Discard:          jetstream.DiscardOld,
		MaxAge:           c.EventsMaxAge,
		MaxBytes:         c.EventsMaxBytes,
		MaxMsgs:          -1,
		Storage:          jetstream.FileStorage,
		Replicas:         c.Replicas,
		Duplicates:       c.DuplicateWindow,
		Metadata:         map[string]string{metaPartitions: strconv.Itoa(c.Partitions)},
	}
}

// PlayersBucketConfig is the players bucket as configured: a key expires
// PlayerTTL after its last write, and the server writes NO expiry marker
// (no LimitMarkerTTL). A marker is written as a new message with
// "Nats-Rollup: sub" once the server has decided that the expired message
// was the key's last (nats-server filestore.go handleRemovalOrSdm, proposed
// through the stream on a cluster): a player write that lands between that
// decision and the marker's store is rolled up, i.e. removed, with it. The
// owners expire their players at their own deadlines and read no marker
// (modules/partition), so markers only cost. The stream allows per-message
// TTLs all the same (the fence's "never", the rebuild's TTLs), set by Ensure
// beside the atomic batches (see ensureBucket).
func PlayersBucketConfig(c Config) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      PlayersBucket,
		Description: "gamemodes player states by <partition>.<user token>",
		History:     1,
		TTL:         c.PlayerTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	}
}

// CountsBucketConfig is the count-shards bucket as configured.
func CountsBucketConfig(c Config) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket:      CountsBucket,
		Description: "gamemodes player counts, one shard per partition",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    c.Replicas,
	}
}

// WorkersBucketConfig is the worker membership bucket as configured.
func WorkersBucketConfig(c Config) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket: WorkersBucket, Description: "gamemodes live workers (heartbeats)",
		History: 1, TTL: c.LeaseTTL, LimitMarkerTTL: time.Second, Storage: jetstream.FileStorage, Replicas: c.Replicas,
	}
}

// LeasesBucketConfig is the partition lease bucket as configured.
func LeasesBucketConfig(c Config) jetstream.KeyValueConfig {
	return jetstream.KeyValueConfig{
		Bucket: LeasesBucket, Description: "gamemodes partition leases: key p<N>, value the owner",
		History: 1, TTL: c.LeaseTTL, LimitMarkerTTL: time.Second, Storage: jetstream.FileStorage, Replicas: c.Replicas,
	}
}

// Ensure creates the stream and buckets, or updates their mutable settings.
// It is safe to run concurrently from several processes.
func Ensure(ctx context.Context, js jetstream.JetStream, c Config) (Topology, error) {
	c = c.Defaults()
	if err := c.Validate(); err != nil {
		return Topology{}, fmt.Errorf("ensure topology: %w", err)
	}
	partitions, err := ensureEventsStream(ctx, js, c)
	if err != nil {
		return Topology{}, err
	}
	for _, kv := range []jetstream.KeyValueConfig{PlayersBucketConfig(c), CountsBucketConfig(c), WorkersBucketConfig(c), LeasesBucketConfig(c)} {
		if err := ensureBucket(ctx, js, kv); err != nil {
			return Topology{}, err
		}
	}
	return Topology{Partitions: partitions, PlayerTTL: c.PlayerTTL, LeaseTTL: c.LeaseTTL}, nil
}

// ensureBucket creates a bucket or updates it where it differs. An existing
// bucket keeps its replicas: a process started with the default --replicas
// 1 must not scale a cluster's buckets down. The players bucket's stream
// also allows atomic batches (the owners' fenced batches of player writes)
// and per-message TTLs without expiry markers (see PlayersBucketConfig): the
// KV API knows no such settings (an update through it switches atomic
// batches off, and asks to switch TTLs off, which the server refuses), so an
// existing bucket is updated as a stream, from its own configuration.
func ensureBucket(ctx context.Context, js jetstream.JetStream, kv jetstream.KeyValueConfig) error {
	players := kv.Bucket == PlayersBucket
	s, err := js.Stream(ctx, BucketStream(kv.Bucket))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := js.CreateKeyValue(ctx, kv); err != nil && !errors.Is(err, jetstream.ErrBucketExists) {
			return fmt.Errorf("ensure bucket %s: %w", kv.Bucket, err)
		}
		s, err = js.Stream(ctx, BucketStream(kv.Bucket))
	}
	if err != nil {
		return fmt.Errorf("ensure bucket %s: %w", kv.Bucket, err)
	}
	cfg := s.CachedInfo().Config
	kv.Replicas = cfg.Replicas
	if !bucketDiffers(cfg, kv) && (!players || playersExtrasSet(cfg)) {
		return nil
	}
	cfg.Description = kv.Description
	cfg.MaxAge = kv.TTL
	// The duplicate window of a bucket, as the KV API sets it: at most 2
	// minutes, and never above the TTL (the server refuses that).
	cfg.Duplicates = 2 * time.Minute
	if kv.TTL > 0 && kv.TTL < cfg.Duplicates {
		cfg.Duplicates = kv.TTL
	}
	cfg.MaxMsgsPerSubject = int64(kv.History)
	cfg.SubjectDeleteMarkerTTL = kv.LimitMarkerTTL
	if kv.LimitMarkerTTL > 0 {
		cfg.AllowMsgTTL = true
	}
	if players {
		cfg.AllowAtomicPublish, cfg.AllowMsgTTL = true, true
	}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("ensure bucket %s: update: %w", kv.Bucket, err)
	}
	return nil
}

// playersExtrasSet reports whether the players bucket's stream has the
// settings the KV API does not make: atomic batches and per-message TTLs
// allowed.
func playersExtrasSet(cfg jetstream.StreamConfig) bool {
	return cfg.AllowAtomicPublish && cfg.AllowMsgTTL
}

// bucketDiffers reports whether a bucket's stream differs from what the KV
// configuration would make of it, in the settings gamemodes chooses (the
// storage of an existing bucket is not changed).
func bucketDiffers(cfg jetstream.StreamConfig, kv jetstream.KeyValueConfig) bool {
	return cfg.Description != kv.Description || cfg.MaxAge != kv.TTL || cfg.MaxMsgsPerSubject != int64(kv.History) ||
		cfg.SubjectDeleteMarkerTTL != kv.LimitMarkerTTL || cfg.Replicas != kv.Replicas ||
		(kv.LimitMarkerTTL > 0 && !cfg.AllowMsgTTL)
}

func ensureEventsStream(ctx context.Context, js jetstream.JetStream, c Config) (int, error) {
	want := EventsStreamConfig(c)
	s, err := js.Stream(ctx, EventsStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err = js.CreateStream(ctx, want); err == nil || !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			if err != nil {
				return 0, fmt.Errorf("create events stream: %w", err)
			}
			return c.Partitions, nil
		}
		// Created concurrently by another process: fall through to update.
		s, err = js.Stream(ctx, EventsStream)
	}
	if err != nil {
		return 0, fmt.Errorf("events stream: %w", err)
	}
	partitions, err := partitionsOf(s.CachedInfo().Config)
	if err != nil {
		return 0, err
	}
	// Keep the existing partitioning and replicas; update what may change.
	want.Replicas = s.CachedInfo().Config.Replicas
	want.SubjectTransform = EventsTransform(partitions)
	want.Metadata = map[string]string{metaPartitions: strconv.Itoa(partitions)}
	if _, err := js.UpdateStream(ctx, want); err != nil {
		return 0, fmt.Errorf("update events stream: %w", err)
	}
	return partitions, nil
}

func partitionsOf(cfg jetstream.StreamConfig) (int, error) {
	p, err := strconv.Atoi(cfg.Metadata[metaPartitions])
	if err != nil || p < 1 || p > MaxPartitions {
		return 0, fmt.Errorf("events stream %s has no valid %s metadata (%q): not created by gamemodes?", cfg.Name, metaPartitions, cfg.Metadata[metaPartitions])
	}
	return p, nil
}

// Load reads the partition count and player TTL of an existing topology,
// for processes that do not create it.
func Load(ctx context.Context, js jetstream.JetStream) (Topology, error) {
	s, err := js.Stream(ctx, EventsStream)
	if err != nil {
		return Topology{}, fmt.Errorf("events stream: %w", err)
	}
	p, err := partitionsOf(s.CachedInfo().Config)
	if err != nil {
		return Topology{}, err
	}
	ps, err := js.Stream(ctx, PlayersStream)
	if err != nil {
		return Topology{}, fmt.Errorf("players bucket: %w", err)
	}
	ls, err := js.Stream(ctx, BucketStream(LeasesBucket))
	if err != nil {
		return Topology{}, fmt.Errorf("leases bucket: %w", err)
	}
	return Topology{Partitions: p, PlayerTTL: ps.CachedInfo().Config.MaxAge, LeaseTTL: ls.CachedInfo().Config.MaxAge}, nil
}
