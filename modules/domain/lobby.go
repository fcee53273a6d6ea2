package domain

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
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

// ShardHeader is what a stored count shard says besides its counts.
type ShardHeader struct {
	Partition int
	Owner     string
	// AppliedSeq is the stream sequence up to which every event of the
	// partition is applied and its player write persisted.
	AppliedSeq uint64
	// DeliveredSeq is the sequence of the last event the owner had applied
	// when it wrote the shard (the counts include it); from AppliedSeq to
	// it, events are counted but their player writes not yet persisted.
	// A shard written without it reads as AppliedSeq.
	DeliveredSeq uint64
}

// shardMagic starts the compact shard encoding.
const shardMagic = "gms1"

// key is the catalog's regions and modes, as written in a compact shard.
func (c *Catalog) key() string {
	b := []byte(strings.Join(c.regions, ","))
	b = append(b, '|')
	for i, m := range c.modes {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, int64(m), 10)
	}
	return string(b)
}

// EncodeShard is the compact stored form of a partition's count shard:
//
//	gms1 <partition> <applied seq> <owner> <delivered seq>
//	<regions comma separated>|<modes comma separated>
//	<count per region and mode, region-major, comma separated>
//
// Cheap to write and read: owners write one per flush and every edge reads
// every one.
func (c *Catalog) EncodeShard(h ShardHeader, counts Counts) []byte {
	b := make([]byte, 0, 64+len(c.keyCache)+2*len(counts.v))
	b = append(b, shardMagic...)
	b = append(b, ' ')
	b = strconv.AppendInt(b, int64(h.Partition), 10)
	b = append(b, ' ')
	b = strconv.AppendUint(b, h.AppliedSeq, 10)
	b = append(b, ' ')
	b = append(b, h.Owner...)
	b = append(b, ' ')
	b = strconv.AppendUint(b, max(h.DeliveredSeq, h.AppliedSeq), 10)
	b = append(b, '\n')
	b = append(b, c.keyCache...)
	b = append(b, '\n')
	for i, n := range counts.v {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, n, 10)
	}
	return b
}

// DecodeShard reads a compact count shard. Counts of regions or modes this
// catalog does not have are left out and reported by their number. The
// delivered sequence is last on the first line, so a decoder that knows
// only four fields reads it as part of the owner's name (instance names have
// no spaces) and keeps the counts.
func (c *Catalog) DecodeShard(b []byte) (ShardHeader, Counts, int, error) {
	var h ShardHeader
	line1, rest, ok1 := bytes.Cut(b, []byte{'\n'})
	key, nums, ok2 := bytes.Cut(rest, []byte{'\n'})
	f := strings.SplitN(string(line1), " ", 5)
	if !ok1 || !ok2 || len(f) < 4 || f[0] != shardMagic {
		return h, Counts{}, 0, fmt.Errorf("count shard: not a %s shard", shardMagic)
	}
	p, err1 := strconv.Atoi(f[1])
	seq, err2 := strconv.ParseUint(f[2], 10, 64)
	if err1 != nil || err2 != nil {
		return h, Counts{}, 0, fmt.Errorf("count shard: bad header %q", line1)
	}
	h = ShardHeader{Partition: p, AppliedSeq: seq, Owner: f[3], DeliveredSeq: seq}
	if len(f) == 5 {
		delivered, err := strconv.ParseUint(f[4], 10, 64)
		if err != nil || delivered < seq {
			return ShardHeader{}, Counts{}, 0, fmt.Errorf("count shard: bad header %q", line1)
		}
		h.DeliveredSeq = delivered
	}
	counts := NewCounts(c)
	if string(key) == c.keyCache {
		i := 0
		for len(nums) > 0 && i < len(counts.v) {
			var num []byte
			num, nums, _ = bytes.Cut(nums, []byte{','})
			n, err := strconv.ParseInt(string(num), 10, 64)
			if err != nil {
				return h, Counts{}, 0, fmt.Errorf("count shard: bad count %q", num)
			}
			counts.v[i] = n
			i++
		}
		if i != len(counts.v) || len(nums) > 0 {
			return h, Counts{}, 0, fmt.Errorf("count shard: %d counts for %d slots", i, len(counts.v))
		}
		return h, counts, 0, nil
	}
	// Written by a process with other regions or modes: map by name.
	regionList, modeList, ok := strings.Cut(string(key), "|")
	if !ok {
		return h, Counts{}, 0, fmt.Errorf("count shard: bad catalog line")
	}
	regions, modes := strings.Split(regionList, ","), strings.Split(modeList, ",")
	values := strings.Split(string(nums), ",")
	if len(values) != len(regions)*len(modes) {
		return h, Counts{}, 0, fmt.Errorf("count shard: %d counts for %d slots", len(values), len(regions)*len(modes))
	}
	dropped := 0
	for i, v := range values {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return h, Counts{}, 0, fmt.Errorf("count shard: bad count %q", v)
		}
		if n == 0 {
			continue
		}
		mode, err := strconv.Atoi(modes[i%len(modes)])
		slot, known := c.SlotOf(regions[i/len(modes)], mode)
		if err != nil || !known {
			dropped++
			continue
		}
		counts.Add(slot, n)
	}
	return h, counts, dropped, nil
}
