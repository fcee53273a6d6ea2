package lobby

import "time"

// CountsSnapshot is a consistent copy of the view's live counts, for the
// operations page: every region and mode, zeros included.
type CountsSnapshot struct {
	// Regions are the catalog's regions, in catalog order.
	Regions []string
	// GameModes are the catalog's game modes, in catalog order.
	GameModes []int
	// Counts holds the live player count per region and mode:
	// Counts[r][m] is the count of Regions[r] and GameModes[m].
	Counts [][]int64
	// Shards is the number of partitions whose count shard the view holds.
	Shards int
	// Synced reports whether the view has loaded every stored shard.
	Synced bool
	// LastChange is when the view last applied a change of any count.
	LastChange time.Time
}

// CountsSnapshot copies the current totals of every region and mode. It
// takes the view's lock once and allocates the copy; it is meant for
// occasional reads (the operations page), not for the lobby's hot path.
func (v *View) CountsSnapshot() CountsSnapshot {
	s := CountsSnapshot{
		Regions:    v.catalog.Regions(),
		GameModes:  v.catalog.GameModes(),
		Counts:     make([][]int64, v.catalog.NumRegions()),
		Synced:     v.synced.Load(),
		LastChange: time.Unix(0, v.lastChange.Load()),
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	for r := range s.Counts {
		s.Counts[r] = append([]int64(nil), v.totals.Region(r)...)
	}
	s.Shards = len(v.shards)
	return s
}
