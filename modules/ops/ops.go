// Package ops assembles the operations status of an edge process, served as
// GET /api/v1/ops/status and drawn by the operations page: the live counts
// per region and mode (from the lobby view), the events accepted and
// rejected with their rates over the last minute (from the ingest metrics),
// and the NATS side (events stream, archive lag, workers, partition owners
// and their lag), read through a ClusterSource at most once per refresh
// interval however many pages poll.
package ops

import (
	"context"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Defaults of Config.
const (
	// DefaultRefreshEvery is the default least time between two reads of the
	// cluster status from NATS.
	DefaultRefreshEvery = time.Second
	// DefaultTimeout is the default bound of one cluster status read.
	DefaultTimeout = 2 * time.Second
	// DefaultRateWindow is the default span of the ingest rate history.
	DefaultRateWindow = time.Minute
	// DefaultSampleEvery is the default interval of the ingest rate samples.
	DefaultSampleEvery = time.Second
)

// Counts gives a copy of the live counts (lobby.View).
type Counts interface {
	CountsSnapshot() lobby.CountsSnapshot
}

// ClusterSource reads the NATS side of the status. It never fails as a
// whole: a part it could not read carries that part's error, the others
// are filled in. The partition lag is left to the Service.
type ClusterSource interface {
	ClusterStatus(ctx context.Context) Cluster
}

// Config configures a Service; zero durations take the defaults.
type Config struct {
	// InstanceID names this process (its --instance-id).
	InstanceID string
	// Roles are the roles this process runs (edge, worker, archiver).
	Roles []string
	// RefreshEvery is the least time between two cluster reads (default 1s).
	RefreshEvery time.Duration
	// Timeout bounds one cluster read (default 2s).
	Timeout time.Duration
	// RateWindow is how far back the ingest rates go (default 1 minute).
	RateWindow time.Duration
	// SampleEvery is how often the ingest counters are sampled (default 1s).
	SampleEvery time.Duration
	// ArchiveOff says why this process's archiver does not archive (for
	// example "no --postgres-url"): the status then says archiving is off,
	// so that the archive lag reads as events waiting in the stream. Empty
	// when it archives, or when this process runs no archiver (whether
	// another process archives is not known here).
	ArchiveOff string
}

func (c Config) withDefaults() Config {
	if c.RefreshEvery <= 0 {
		c.RefreshEvery = DefaultRefreshEvery
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.RateWindow <= 0 {
		c.RateWindow = DefaultRateWindow
	}
	if c.SampleEvery <= 0 {
		c.SampleEvery = DefaultSampleEvery
	}
	return c
}

// Deps are what a Service reads.
type Deps struct {
	// Counts gives the live counts (required).
	Counts Counts
	// Cluster reads the NATS side (required).
	Cluster ClusterSource
	// Accepted and Rejected are the ingest counters
	// (ingest.Metrics.Accepted and Rejected), labelled by "source"; nil
	// ones count nothing.
	Accepted, Rejected prometheus.Collector
}

// Service builds Status answers. It is safe for concurrent use.
type Service struct {
	cfg     Config
	deps    Deps
	build   Build
	started time.Time
	now     func() time.Time

	refreshMu sync.Mutex // held during a cluster read: concurrent polls share it
	mu        sync.Mutex
	cluster   Cluster
	readAt    time.Time // when cluster was read; zero before the first read
	samples   []sample  // oldest first, at most window/every + 1

	stop chan struct{}
	done chan struct{}
}

type sample struct {
	at                 time.Time
	accepted, rejected float64
}

// NewService returns a Service; Start begins sampling the ingest counters.
func NewService(cfg Config, deps Deps) *Service {
	return &Service{cfg: cfg.withDefaults(), deps: deps, build: ReadBuild(), started: time.Now(), now: time.Now}
}

// Start samples the ingest counters every SampleEvery in the background
// until Stop. It returns at once.
func (s *Service) Start() {
	s.stop, s.done = make(chan struct{}), make(chan struct{})
	s.Sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(s.cfg.SampleEvery)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.Sample()
			}
		}
	}()
}

// Stop ends the sampling started by Start and waits for it.
func (s *Service) Stop() {
	if s.stop == nil {
		return
	}
	close(s.stop)
	<-s.done
	s.stop = nil
}

// Sample records the ingest counters now; Start calls it every SampleEvery.
func (s *Service) Sample() {
	acc, rej := sumValues(s.deps.Accepted), sumValues(s.deps.Rejected)
	smp := sample{at: s.now(), accepted: total(acc), rejected: total(rej)}
	s.mu.Lock()
	defer s.mu.Unlock()
	keep := int(s.cfg.RateWindow/s.cfg.SampleEvery) + 1
	s.samples = append(s.samples, smp)
	if n := len(s.samples); n > keep {
		s.samples = slices.Delete(s.samples, 0, n-keep)
	}
}

// Status is the answer of GET /api/v1/ops/status.
type Status struct {
	// InstanceID names the process that answered (--instance-id).
	InstanceID string `json:"instance_id"`
	// Roles are the roles that process runs.
	Roles []string `json:"roles"`
	// Build describes the binary.
	Build Build `json:"build"`
	// StartedAt is when the process started.
	StartedAt time.Time `json:"started_at"`
	// GeneratedAt is when this answer was made.
	GeneratedAt time.Time `json:"generated_at"`
	// Counts are the live counts of the lobby view.
	Counts CountsStatus `json:"counts"`
	// Ingest counts the events this process accepted and rejected.
	Ingest IngestStatus `json:"ingest"`
	// Cluster is the NATS side, read at most once per refresh interval.
	Cluster Cluster `json:"cluster"`
}

// Build describes the running binary (from runtime/debug.ReadBuildInfo).
type Build struct {
	// Version is the main module's version ("(devel)" for a local build).
	Version string `json:"version"`
	// Revision is the VCS revision the binary was built from, if known.
	Revision string `json:"revision,omitempty"`
	// Time is the VCS commit time, if known.
	Time string `json:"time,omitempty"`
	// Modified reports a build from a work tree with uncommitted changes.
	Modified bool `json:"modified"`
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string `json:"go_version"`
}

// ReadBuild describes the running binary.
func ReadBuild() Build {
	b := Build{Version: "unknown"}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Version, b.GoVersion = info.Main.Version, info.GoVersion
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.time":
			b.Time = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// CountsStatus are the live counts of the lobby view, zeros included.
type CountsStatus struct {
	// Regions are the catalog's regions, in catalog order.
	Regions []string `json:"regions"`
	// GameModes are the catalog's game modes, in catalog order.
	GameModes []int `json:"game_modes"`
	// PlayerCounts[r][m] is the live player count of Regions[r] and GameModes[m].
	PlayerCounts [][]int64 `json:"player_counts"`
	// RegionTotals[r] is the sum of PlayerCounts[r].
	RegionTotals []int64 `json:"region_totals"`
	// Total is the sum of every count.
	Total int64 `json:"total"`
	// Shards is the number of partitions whose count shard the view holds.
	Shards int `json:"shards"`
	// Synced reports whether the view has loaded every stored shard.
	Synced bool `json:"synced"`
	// LastChange is when a count last changed in the view.
	LastChange time.Time `json:"last_change"`
}

// IngestStatus counts the events this process accepted and rejected, by
// source ("http": posted to this edge; "nats": published directly and
// checked by this process's partition owners), with the rates over the
// rate window.
type IngestStatus struct {
	// Accepted counts the accepted events by source since the process started.
	Accepted map[string]float64 `json:"accepted"`
	// Rejected counts the rejected events by source since the process started.
	Rejected map[string]float64 `json:"rejected"`
	// WindowSeconds is the span the rates cover at most.
	WindowSeconds float64 `json:"window_seconds"`
	// Rates are the events per second between successive samples, oldest first.
	Rates []Rate `json:"rates"`
}

// Rate is the ingest rate over one sample interval.
type Rate struct {
	// At is the end of the interval.
	At time.Time `json:"at"`
	// Accepted is the accepted events per second (every source).
	Accepted float64 `json:"accepted_per_second"`
	// Rejected is the rejected events per second (every source).
	Rejected float64 `json:"rejected_per_second"`
}

// Cluster is the NATS side of the status. Each part has an Error, empty
// when the part was read.
type Cluster struct {
	// ReadAt is when this was read from NATS.
	ReadAt time.Time `json:"read_at"`
	// Stream is the events stream.
	Stream StreamStatus `json:"stream"`
	// Archive is the archiver's durable consumer.
	Archive ArchiveStatus `json:"archive"`
	// Workers are the live workers (heartbeats in gamemodes_workers).
	Workers WorkersStatus `json:"workers"`
	// Partitions are the partitions' owners and lag.
	Partitions PartitionsStatus `json:"partitions"`
}

// StreamStatus is the events stream's state.
type StreamStatus struct {
	// Name is the stream's name.
	Name string `json:"name"`
	// Messages is the number of events stored.
	Messages uint64 `json:"messages"`
	// Bytes is the size of the events stored.
	Bytes uint64 `json:"bytes"`
	// FirstSeq is the sequence of the oldest event stored.
	FirstSeq uint64 `json:"first_seq"`
	// LastSeq is the sequence of the newest event stored.
	LastSeq uint64 `json:"last_seq"`
	// Consumers is the number of consumers on the stream.
	Consumers int `json:"consumers"`
	// Error says why the stream could not be read; empty when it was.
	Error string `json:"error,omitempty"`
}

// ArchiveStatus is the archive lag: the state of the durable consumer
// "archiver" that feeds Postgres.
type ArchiveStatus struct {
	// Consumer is the durable consumer's name.
	Consumer string `json:"consumer"`
	// NumPending is the number of events not yet delivered to the archiver.
	NumPending uint64 `json:"num_pending"`
	// NumAckPending is the number of events delivered but not yet
	// acknowledged (being written to Postgres).
	NumAckPending int `json:"num_ack_pending"`
	// Lag is NumPending + NumAckPending: the events not yet archived.
	Lag uint64 `json:"lag"`
	// AckFloorSeq is the stream sequence up to which every event is archived.
	AckFloorSeq uint64 `json:"ack_floor_seq"`
	// Error says why the consumer could not be read (for example no
	// archiver ever started); empty when it was.
	Error string `json:"error,omitempty"`
	// Off says why archiving is off (Config.ArchiveOff): the events wait in
	// the stream, Lag of them; empty otherwise.
	Off string `json:"off,omitempty"`
}

// WorkersStatus lists the live workers.
type WorkersStatus struct {
	// Members are the live workers' ids, sorted.
	Members []string `json:"members"`
	// Error says why the workers bucket could not be read; empty when it was.
	Error string `json:"error,omitempty"`
}

// PartitionsStatus are the partitions' owners and lag.
type PartitionsStatus struct {
	// Count is the events stream's partition count.
	Count int `json:"count"`
	// Items has one entry per partition, 0 to Count-1.
	Items []PartitionStatus `json:"items"`
	// LeasesError says why the leases bucket could not be read; empty when it was.
	LeasesError string `json:"leases_error,omitempty"`
	// ShardsError says why the count shards could not be read; empty when they were.
	ShardsError string `json:"shards_error,omitempty"`
}

// PartitionStatus is one partition's owner and lag.
type PartitionStatus struct {
	// Partition is the partition's number.
	Partition int `json:"partition"`
	// Owner is the worker holding the partition's lease; empty when none does.
	Owner string `json:"owner"`
	// ShardOwner is the worker that last wrote the partition's count shard.
	ShardOwner string `json:"shard_owner"`
	// AppliedSeq is the stream sequence up to which every event of the
	// partition is applied (from its count shard); 0 without a shard.
	AppliedSeq uint64 `json:"applied_seq"`
	// DeliveredSeq is the sequence of the last event the partition's owner
	// had applied when it wrote its count shard: the counts include every
	// event up to it.
	DeliveredSeq uint64 `json:"delivered_seq"`
	// DurableLag is DeliveredSeq minus AppliedSeq: the span of stream
	// sequences whose events are counted but whose player writes were not
	// yet persisted when the shard was written (0 when caught up).
	DurableLag uint64 `json:"durable_lag"`
	// Lag is the stream's last sequence minus AppliedSeq (0 when the
	// stream or the shards could not be read): how many events, of every
	// partition, the stream stored after the last one this partition
	// applied. It is an upper bound of the partition's unapplied events;
	// a partition that had no event for a while shows the events stored
	// for the others since.
	Lag uint64 `json:"lag"`
}

// Status assembles the current status. The cluster part is read from NATS
// when the last read is older than RefreshEvery, once for every caller
// waiting meanwhile; the read is bounded by Timeout and does not depend on
// ctx ending (a poll that gives up does not spoil the shared read).
func (s *Service) Status(ctx context.Context) Status {
	now := s.now()
	st := Status{
		InstanceID:  s.cfg.InstanceID,
		Roles:       s.cfg.Roles,
		Build:       s.build,
		StartedAt:   s.started,
		GeneratedAt: now,
		Counts:      countsStatus(s.deps.Counts.CountsSnapshot()),
		Ingest:      s.ingestStatus(),
		Cluster:     s.clusterStatus(ctx),
	}
	if st.Roles == nil {
		st.Roles = []string{}
	}
	return st
}

func (s *Service) clusterStatus(ctx context.Context) Cluster {
	s.refreshMu.Lock()
	defer s.refreshMu.Unlock()
	s.mu.Lock()
	c, readAt := s.cluster, s.readAt
	s.mu.Unlock()
	if !readAt.IsZero() && s.now().Sub(readAt) < s.cfg.RefreshEvery {
		return c
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Timeout)
	defer cancel()
	c = s.deps.Cluster.ClusterStatus(rctx)
	c.ReadAt = s.now()
	c.Archive.Off = s.cfg.ArchiveOff
	fillLag(&c)
	s.mu.Lock()
	s.cluster, s.readAt = c, c.ReadAt
	s.mu.Unlock()
	return c
}

// fillLag sets each partition's lag from the stream's last sequence.
func fillLag(c *Cluster) {
	if c.Partitions.Items == nil {
		c.Partitions.Items = []PartitionStatus{}
	}
	if c.Workers.Members == nil {
		c.Workers.Members = []string{}
	}
	for i := range c.Partitions.Items {
		p := &c.Partitions.Items[i]
		p.Lag = 0
		if c.Stream.Error == "" && c.Partitions.ShardsError == "" && c.Stream.LastSeq > p.AppliedSeq {
			p.Lag = c.Stream.LastSeq - p.AppliedSeq
		}
	}
}

func countsStatus(snap lobby.CountsSnapshot) CountsStatus {
	cs := CountsStatus{
		Regions: snap.Regions, GameModes: snap.GameModes, PlayerCounts: snap.Counts,
		RegionTotals: make([]int64, len(snap.Counts)),
		Shards:       snap.Shards, Synced: snap.Synced, LastChange: snap.LastChange,
	}
	for r, perMode := range snap.Counts {
		for _, n := range perMode {
			cs.RegionTotals[r] += n
		}
		cs.Total += cs.RegionTotals[r]
	}
	return cs
}

func (s *Service) ingestStatus() IngestStatus {
	is := IngestStatus{
		Accepted:      sumValues(s.deps.Accepted),
		Rejected:      sumValues(s.deps.Rejected),
		WindowSeconds: s.cfg.RateWindow.Seconds(),
		Rates:         []Rate{},
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := 1; i < len(s.samples); i++ {
		a, b := s.samples[i-1], s.samples[i]
		secs := b.at.Sub(a.at).Seconds()
		if secs <= 0 {
			continue
		}
		is.Rates = append(is.Rates, Rate{At: b.at, Accepted: max(0, b.accepted-a.accepted) / secs, Rejected: max(0, b.rejected-a.rejected) / secs})
	}
	return is
}

// sumValues sums a counter vector's values by their "source" label; a nil
// collector gives an empty map.
func sumValues(c prometheus.Collector) map[string]float64 {
	out := map[string]float64{}
	if c == nil {
		return out
	}
	ch := make(chan prometheus.Metric)
	go func() {
		c.Collect(ch)
		close(ch)
	}()
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil || d.GetCounter() == nil {
			continue
		}
		source := ""
		for _, l := range d.GetLabel() {
			if l.GetName() == "source" {
				source = l.GetValue()
			}
		}
		out[source] += d.GetCounter().GetValue()
	}
	return out
}

func total(m map[string]float64) float64 {
	var t float64
	for _, v := range m {
		t += v
	}
	return t
}
