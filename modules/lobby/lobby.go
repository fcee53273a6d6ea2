// Package lobby keeps the live lobby lists in memory: the sum of every
// partition's count shard, ranked per region, ready to serve without a NATS
// round trip per read.
package lobby

import (
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/prometheus/client_golang/prometheus"
)

// View is the in-memory lobby view. It is safe for concurrent use: shard
// updates come from one watcher, reads from any number of requests.
type View struct {
	catalog *domain.Catalog

	mu     sync.Mutex
	shards map[int]domain.Counts
	totals domain.Counts

	// lists holds per region index the encoded answer of GET
	// popular_game_modes, nil when a change made it stale: it is encoded
	// again by the next read, so a burst of shard changes costs one encoding.
	lists      []atomic.Pointer[[]byte]
	synced     atomic.Bool
	lastChange atomic.Int64 // unix nanos of the last applied shard change
	changed    chan struct{}
	changedMu  sync.Mutex

	// Read-your-writes: each partition's applied sequence as its shard says,
	// and a channel per partition closed (and dropped) when it changes,
	// created by the first read waiting on it. Maps made on first use.
	appliedMu   sync.Mutex
	applied     map[int]uint64
	appliedWake map[int]chan struct{}
	partitions  atomic.Int64 // the stream's partition count; 0: unknown
	// versions holds per region index the version of its list (see
	// Snapshot); rev is the highest counts-bucket revision of a shard
	// change (see SetShard). Both are guarded by mu.
	versions []uint64
	rev      uint64
}

// NewView returns an empty view over the catalog's regions and modes.
func NewView(catalog *domain.Catalog, reg prometheus.Registerer) *View {
	v := &View{
		catalog: catalog,
		shards:  map[int]domain.Counts{},
		totals:  domain.NewCounts(catalog),
		lists:   make([]atomic.Pointer[[]byte], catalog.NumRegions()),
		changed: make(chan struct{}),
	}
	v.versions = make([]uint64, catalog.NumRegions())
	v.lastChange.Store(time.Now().UnixNano())
	if reg != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gamemodes_lobby_view_age_seconds",
			Help: "Seconds since the lobby view last applied a count-shard change.",
		}, func() float64 { return time.Since(time.Unix(0, v.lastChange.Load())).Seconds() }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "gamemodes_lobby_view_synced",
			Help: "1 once the lobby view has loaded every count shard.",
		}, func() float64 {
			if v.synced.Load() {
				return 1
			}
			return 0
		}))
		reg.MustRegister(playersCollector{v})
	}
	return v
}

// playersDesc describes gamemodes_lobby_players.
var playersDesc = prometheus.NewDesc("gamemodes_lobby_players",
	"Players counted in each region and game mode, as this edge's lobby view sums the count shards (zeros included).",
	[]string{"region", "game_mode"}, nil)

// playersCollector exports the view's totals at each scrape: one series per
// region and game mode of the catalog.
type playersCollector struct{ v *View }

// Describe sends the one descriptor.
func (c playersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- playersDesc }

// Collect sends every region and mode's count.
func (c playersCollector) Collect(ch chan<- prometheus.Metric) {
	cat := c.v.catalog
	counts := make([]int64, cat.NumRegions()*cat.NumModes())
	c.v.mu.Lock()
	for r := 0; r < cat.NumRegions(); r++ {
		copy(counts[r*cat.NumModes():], c.v.totals.Region(r))
	}
	c.v.mu.Unlock()
	for r := 0; r < cat.NumRegions(); r++ {
		for m := 0; m < cat.NumModes(); m++ {
			ch <- prometheus.MustNewConstMetric(playersDesc, prometheus.GaugeValue, float64(counts[r*cat.NumModes()+m]),
				cat.Region(r), strconv.Itoa(cat.GameMode(m)))
		}
	}
}

// SetShard replaces a partition's counts with those of its count shard
// (the view keeps counts; do not modify them afterwards). rev is the
// counts-bucket revision of the shard: a region it changes gets a list
// version of at least rev, so that a version means "the list as of that
// revision" on every edge (0: versions only count this view's changes).
// appliedSeq is the shard's applied sequence: every event of the partition
// up to it is reflected once SetShard returns, and the reads waiting for it
// are woken (see WaitApplied).
func (v *View) SetShard(partition int, rev, appliedSeq uint64, counts domain.Counts) {
	v.mu.Lock()
	v.rev = max(v.rev, rev)
	old, had := v.shards[partition]
	v.shards[partition] = counts
	v.applyDiff(old, had, counts, true)
	v.mu.Unlock()
	v.setApplied(partition, appliedSeq)
}

// DeleteShard removes a partition's counts (its shard was deleted at
// counts-bucket revision rev, see SetShard).
func (v *View) DeleteShard(partition int, rev uint64) {
	v.mu.Lock()
	v.rev = max(v.rev, rev)
	if old, had := v.shards[partition]; had {
		delete(v.shards, partition)
		v.applyDiff(old, true, domain.Counts{}, false)
	}
	v.mu.Unlock()
}

// applyDiff moves totals from old to new and republishes the regions that
// changed. Callers hold mu.
func (v *View) applyDiff(old domain.Counts, hadOld bool, cur domain.Counts, hasNew bool) {
	changed := false
	for r := 0; r < v.catalog.NumRegions(); r++ {
		tot := v.totals.Region(r)
		regionChanged := false
		for m := range tot {
			var o, n int64
			if hadOld {
				o = old.Region(r)[m]
			}
			if hasNew {
				n = cur.Region(r)[m]
			}
			if o != n {
				tot[m] += n - o
				regionChanged = true
			}
		}
		if regionChanged {
			v.lists[r].Store(nil)
			v.versions[r] = max(v.versions[r]+1, v.rev)
			changed = true
		}
	}
	if changed {
		v.lastChange.Store(time.Now().UnixNano())
		v.changedMu.Lock()
		close(v.changed)
		v.changed = make(chan struct{})
		v.changedMu.Unlock()
	}
}

type answer struct {
	Region    string             `json:"region"`
	GameModes []domain.ModeCount `json:"game_modes"`
}

// encode builds region r's answer from the totals; callers hold mu.
func (v *View) encode(r int) *[]byte {
	b, _ := json.Marshal(answer{Region: v.catalog.Region(r), GameModes: v.catalog.Rank(v.totals.Region(r))})
	return &b
}

// Catalog is the view's catalog of regions and modes.
func (v *View) Catalog() *domain.Catalog { return v.catalog }

// MarkSynced records that every stored shard has been loaded.
func (v *View) MarkSynced() { v.synced.Store(true) }

// Synced reports whether the view has loaded every stored shard.
func (v *View) Synced() bool { return v.synced.Load() }

// Popular returns the encoded lobby list of a region, or a validation error
// for a missing or unknown region. The returned bytes must not be modified.
func (v *View) Popular(region string) ([]byte, error) {
	if region == "" {
		return nil, &domain.ValidationError{Code: domain.CodeMissingRegion, Message: "query parameter region is required"}
	}
	r, ok := v.catalog.RegionIndex(region)
	if !ok {
		return nil, &domain.ValidationError{Code: domain.CodeInvalidRegion, Message: "unknown region"}
	}
	if b := v.lists[r].Load(); b != nil {
		return *b, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.listLocked(r), nil
}

// listLocked returns region r's encoded list, encoding it if a change made
// it stale; callers hold mu.
func (v *View) listLocked(r int) []byte {
	b := v.lists[r].Load()
	if b == nil {
		b = v.encode(r)
		v.lists[r].Store(b)
	}
	return *b
}

// Count returns the current total of one region and mode (0 if unknown).
func (v *View) Count(region string, mode int) int64 {
	slot, ok := v.catalog.SlotOf(region, mode)
	if !ok {
		return 0
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.totals.Get(slot)
}

// Changed returns a channel closed at the next change of any count.
func (v *View) Changed() <-chan struct{} {
	v.changedMu.Lock()
	defer v.changedMu.Unlock()
	return v.changed
}

// SetPartitions tells the view the events stream's partition count:
// WaitApplied then refuses a partition outside it.
func (v *View) SetPartitions(n int) { v.partitions.Store(int64(n)) }

// setApplied records a partition's applied sequence, read from the count
// shard just set: every event of the partition up to seq is reflected in
// the view. It wakes the reads waiting on the partition. The sequence is
// taken as the shard says, so a shard rebuilt for a new stream may lower it.
func (v *View) setApplied(partition int, seq uint64) {
	v.appliedMu.Lock()
	defer v.appliedMu.Unlock()
	v.initApplied()
	if v.applied[partition] == seq {
		return
	}
	v.applied[partition] = seq
	if wake, ok := v.appliedWake[partition]; ok {
		close(wake)
		delete(v.appliedWake, partition)
	}
}

// initApplied makes the applied maps on first use; callers hold appliedMu.
func (v *View) initApplied() {
	if v.applied == nil {
		v.applied = map[int]uint64{}
		v.appliedWake = map[int]chan struct{}{}
	}
}

// Applied returns the applied sequence of a partition's count shard as the
// view last saw it (0 before any).
func (v *View) Applied(partition int) uint64 {
	v.appliedMu.Lock()
	defer v.appliedMu.Unlock()
	return v.applied[partition]
}

// WaitApplied returns nil once the view reflects every event of partition
// up to stream sequence seq (its shard's applied sequence is at least seq),
// or ctx.Err() when ctx ends first. A partition outside the stream's
// (SetPartitions) is a *domain.ValidationError with code
// invalid_consistency_token. Waiting costs no goroutine: the caller sleeps
// on a channel closed when the partition's shard advances.
func (v *View) WaitApplied(ctx context.Context, partition int, seq uint64) error {
	if n := v.partitions.Load(); partition < 0 || (n > 0 && int64(partition) >= n) {
		return &domain.ValidationError{Code: domain.CodeInvalidConsistencyToken,
			Message: "the consistency token names partition " + strconv.Itoa(partition) + ", not one of this stream's"}
	}
	for {
		v.appliedMu.Lock()
		if v.applied[partition] >= seq {
			v.appliedMu.Unlock()
			return nil
		}
		v.initApplied()
		wake, ok := v.appliedWake[partition]
		if !ok {
			wake = make(chan struct{})
			v.appliedWake[partition] = wake
		}
		v.appliedMu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Snapshot returns the encoded lobby list of region index r (the answer of
// GET /api/v1/popular_game_modes) and its version, which increases with
// every change of that list (0 before any). The returned bytes must not be
// modified.
func (v *View) Snapshot(r int) (list []byte, version uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.listLocked(r), v.versions[r]
}

// Versions appends the current version of every region, by region index,
// to dst and returns it.
func (v *View) Versions(dst []uint64) []uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append(dst, v.versions...)
}
