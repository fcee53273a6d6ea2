package domain

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
)

// ModeCount is one line of a lobby list.
type ModeCount struct {
	GameMode    int   `json:"game_mode"`
	PlayerCount int64 `json:"player_count"`
}

// Rank returns a region's modes sorted by player count descending, then game
// mode ascending, omitting modes without players. perMode is indexed by the
// catalog's mode index.
func (c *Catalog) Rank(perMode []int64) []ModeCount {
	out := make([]ModeCount, 0, len(perMode))
	for i, n := range perMode {
		if n > 0 {
			out = append(out, ModeCount{GameMode: c.modes[i], PlayerCount: n})
		}
	}
	slices.SortFunc(out, func(a, b ModeCount) int {
		if a.PlayerCount != b.PlayerCount {
			if a.PlayerCount > b.PlayerCount {
				return -1
			}
			return 1
		}
		return a.GameMode - b.GameMode
	})
	return out
}

// Shard is the stored count shard of one partition: the absolute counts of
// every (region, mode) among the partition's players, recomputed by the
// partition's owner, and the stream sequence up to which every event of the
// partition is durably applied to the players bucket.
type Shard struct {
	Partition  int    `json:"partition"`
	Owner      string `json:"owner"`
	AppliedSeq uint64 `json:"applied_seq"`
	// Counts maps region -> game mode (decimal) -> players; zero counts are omitted.
	Counts map[string]map[string]int64 `json:"counts"`
}

// ShardFromCounts builds the stored shard of a partition from counts.
func (c *Catalog) ShardFromCounts(partition int, owner string, appliedSeq uint64, counts Counts) Shard {
	s := Shard{Partition: partition, Owner: owner, AppliedSeq: appliedSeq, Counts: map[string]map[string]int64{}}
	for r := range c.regions {
		for m, n := range counts.Region(r) {
			if n == 0 {
				continue
			}
			byMode := s.Counts[c.regions[r]]
			if byMode == nil {
				byMode = map[string]int64{}
				s.Counts[c.regions[r]] = byMode
			}
			byMode[strconv.Itoa(c.modes[m])] = n
		}
	}
	return s
}

// CountsOf returns a shard's counts for the configured slots; slots no longer
// configured are left out and reported by their number.
func (c *Catalog) CountsOf(s Shard) (Counts, int) {
	counts := NewCounts(c)
	dropped := 0
	for region, byMode := range s.Counts {
		for mode, n := range byMode {
			m, err := strconv.Atoi(mode)
			slot, ok := c.SlotOf(region, m)
			if err != nil || !ok {
				dropped++
				continue
			}
			counts.Add(slot, n)
		}
	}
	return counts, dropped
}

// MarshalShard encodes a shard for storage.
func MarshalShard(s Shard) []byte {
	b, _ := json.Marshal(s) // a Shard always marshals
	return b
}

// UnmarshalShard decodes a stored shard.
func UnmarshalShard(b []byte) (Shard, error) {
	var s Shard
	if err := json.Unmarshal(b, &s); err != nil {
		return Shard{}, fmt.Errorf("count shard: %w", err)
	}
	return s, nil
}
