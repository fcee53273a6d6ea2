package domain

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
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

// Magic prefixes of the stored count-shard forms: shardMagicText is the
// text form written before the binary one (still read, so that shards
// written by an older process stay readable during a rolling upgrade), and
// shardMagic the binary form EncodeShard writes.
const (
	shardMagicText = "gms1"
	shardMagic     = "gms2"
)

// ShardEncoding names a stored form of count shards.
type ShardEncoding uint8

// The shard encodings: binary (the default) and the text form of earlier
// versions, which older readers understand.
const (
	ShardBinary ShardEncoding = iota
	ShardText
)

// ParseShardEncoding maps "binary" or "text" to a ShardEncoding.
func ParseShardEncoding(s string) (ShardEncoding, error) {
	switch s {
	case "binary", "":
		return ShardBinary, nil
	case "text":
		return ShardText, nil
	}
	return 0, fmt.Errorf("shard encoding %q: want binary or text", s)
}

// SetShardEncoding chooses the form EncodeShard writes (default binary).
// Call it before the catalog is shared: text is for a rolling upgrade from
// a version that reads only the text form.
func (c *Catalog) SetShardEncoding(e ShardEncoding) { c.shardText = e == ShardText }

// key is the catalog's regions and modes, as written in a shard.
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

// EncodeShard is the stored form of a partition's count shard, binary:
//
//	"gms2"
//	uvarint partition, uvarint applied sequence, uvarint delivered sequence
//	minus the applied one, uvarint length + owner
//	uvarint length + catalog: "<regions comma separated>|<modes comma separated>"
//	the counts, region-major, in one of two layouts (the shorter is written):
//	  0x00, uvarint number of non-zero slots, then per such slot: uvarint
//	  distance from the previous one (the first: its index + 1), zig-zag
//	  varint count
//	  0x01, uvarint number of slots, then each slot's zig-zag varint count
//
// About a third of the text form's bytes at the default catalog, and
// several times faster to read: owners write one per flush and every edge
// reads every one. With SetShardEncoding(ShardText) it writes the text form
// of EncodeShardText instead.
func (c *Catalog) EncodeShard(h ShardHeader, counts Counts) []byte {
	if c.shardText {
		return c.EncodeShardText(h, counts)
	}
	b := make([]byte, 0, 32+len(h.Owner)+len(c.keyCache)+4*len(counts.v))
	b = append(b, shardMagic...)
	b = binary.AppendUvarint(b, uint64(h.Partition))
	b = binary.AppendUvarint(b, h.AppliedSeq)
	b = binary.AppendUvarint(b, max(h.DeliveredSeq, h.AppliedSeq)-h.AppliedSeq)
	b = binary.AppendUvarint(b, uint64(len(h.Owner)))
	b = append(b, h.Owner...)
	b = binary.AppendUvarint(b, uint64(len(c.keyCache)))
	b = append(b, c.keyCache...)
	nonZero := 0
	for _, n := range counts.v {
		if n != 0 {
			nonZero++
		}
	}
	if 2*nonZero > len(counts.v) {
		b = append(b, shardDense)
		b = binary.AppendUvarint(b, uint64(len(counts.v)))
		for _, n := range counts.v {
			b = binary.AppendVarint(b, n)
		}
		return b
	}
	b = append(b, shardSparse)
	b = binary.AppendUvarint(b, uint64(nonZero))
	prev := -1
	for i, n := range counts.v {
		if n != 0 {
			b = binary.AppendUvarint(b, uint64(i-prev))
			b = binary.AppendVarint(b, n)
			prev = i
		}
	}
	return b
}

// The two layouts of a binary shard's counts: every slot's count, or the
// non-zero ones with their distances (whichever is shorter).
const (
	shardSparse byte = 0
	shardDense  byte = 1
)

// EncodeShardText is the text form of a count shard, written before the
// binary one (and by SetShardEncoding(ShardText)):
//
//	gms1 <partition> <applied seq> <owner> <delivered seq>
//	<regions comma separated>|<modes comma separated>
//	<count per region and mode, region-major, comma separated>
func (c *Catalog) EncodeShardText(h ShardHeader, counts Counts) []byte {
	b := make([]byte, 0, 64+len(c.keyCache)+2*len(counts.v))
	b = append(b, shardMagicText...)
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

// errShardTruncated is a binary shard that ends early.
var errShardTruncated = errors.New("count shard: truncated")

// DecodeShard reads a count shard in either form (binary or text). Counts
// of regions or modes this catalog does not have are left out and reported
// by their number.
func (c *Catalog) DecodeShard(b []byte) (ShardHeader, Counts, int, error) {
	h, body, err := DecodeShardHeader(b)
	if err != nil {
		return h, Counts{}, 0, err
	}
	var counts Counts
	var dropped int
	if bytes.HasPrefix(b, []byte(shardMagicText)) {
		counts, dropped, err = c.decodeTextBody(body)
	} else {
		counts, dropped, err = c.decodeBinaryBody(body)
	}
	if err != nil {
		return h, Counts{}, 0, err
	}
	return h, counts, dropped, nil
}

// DecodeShardHeader reads the header of a count shard in either form and
// returns the rest, its body: the catalog and the counts. Two shards of one
// form whose bodies are equal hold equal counts, so a reader can skip
// decoding a shard whose counts did not change (only its applied sequence).
func DecodeShardHeader(b []byte) (ShardHeader, []byte, error) {
	var h ShardHeader
	if bytes.HasPrefix(b, []byte(shardMagicText+" ")) {
		// The delivered sequence is last on the first line, so a decoder
		// that knows only four fields reads it as part of the owner's name
		// (instance names have no spaces) and keeps the counts.
		line1, rest, ok := bytes.Cut(b, []byte{'\n'})
		f := strings.SplitN(string(line1), " ", 5)
		if !ok || len(f) < 4 {
			return h, nil, fmt.Errorf("count shard: bad header %q", line1)
		}
		p, err1 := strconv.Atoi(f[1])
		seq, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil || p < 0 {
			return h, nil, fmt.Errorf("count shard: bad header %q", line1)
		}
		h = ShardHeader{Partition: p, AppliedSeq: seq, Owner: f[3], DeliveredSeq: seq}
		if len(f) == 5 {
			delivered, err := strconv.ParseUint(f[4], 10, 64)
			if err != nil || delivered < seq {
				return ShardHeader{}, nil, fmt.Errorf("count shard: bad header %q", line1)
			}
			h.DeliveredSeq = delivered
		}
		return h, rest, nil
	}
	rest, ok := bytes.CutPrefix(b, []byte(shardMagic))
	if !ok {
		return h, nil, fmt.Errorf("count shard: neither a %s nor a %s shard", shardMagic, shardMagicText)
	}
	p, rest, ok1 := uvarint(rest)
	seq, rest, ok2 := uvarint(rest)
	delivered, rest, ok3 := uvarint(rest)
	ownerLen, rest, ok4 := uvarint(rest)
	if !ok1 || !ok2 || !ok3 || !ok4 || ownerLen > uint64(len(rest)) || p > math.MaxInt32 || delivered > math.MaxUint64-seq {
		return h, nil, errShardTruncated
	}
	h = ShardHeader{Partition: int(p), AppliedSeq: seq, DeliveredSeq: seq + delivered, Owner: string(rest[:ownerLen])}
	return h, rest[ownerLen:], nil
}

// uvarint reads one unsigned varint off b.
func uvarint(b []byte) (uint64, []byte, bool) {
	v, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, b, false
	}
	return v, b[n:], true
}

// decodeBinaryBody reads the catalog and counts of a binary shard.
func (c *Catalog) decodeBinaryBody(b []byte) (Counts, int, error) {
	keyLen, b, ok := uvarint(b)
	if !ok || keyLen > uint64(len(b)) {
		return Counts{}, 0, errShardTruncated
	}
	key := b[:keyLen]
	b = b[keyLen:]
	if len(b) == 0 || b[0] > shardDense {
		return Counts{}, 0, fmt.Errorf("count shard: unknown counts layout")
	}
	dense := b[0] == shardDense
	entries, b, ok := uvarint(b[1:])
	if !ok || entries > uint64(len(b)) {
		return Counts{}, 0, errShardTruncated
	}
	var m *shardMapping
	slots := len(c.regions) * len(c.modes)
	if string(key) != c.keyCache {
		var err error
		if m, err = c.mapping(string(key)); err != nil {
			return Counts{}, 0, err
		}
		slots = m.slots()
	}
	if dense && entries != uint64(slots) {
		return Counts{}, 0, fmt.Errorf("count shard: %d counts for %d slots", entries, slots)
	}
	counts := NewCounts(c)
	dropped := 0
	idx := -1
	for range entries {
		gap := uint64(1)
		if !dense {
			if gap, b, ok = uvarint(b); !ok {
				return Counts{}, 0, errShardTruncated
			}
		}
		n, k := binary.Varint(b)
		if k <= 0 {
			return Counts{}, 0, errShardTruncated
		}
		b = b[k:]
		if gap == 0 || gap > uint64(slots-idx-1) {
			return Counts{}, 0, fmt.Errorf("count shard: slot out of range")
		}
		idx += int(gap)
		switch {
		case m == nil:
			counts.v[idx] = n
		case n != 0 && !m.add(counts, idx, n):
			dropped++
		}
	}
	if len(b) > 0 {
		return Counts{}, 0, fmt.Errorf("count shard: %d bytes after the counts", len(b))
	}
	return counts, dropped, nil
}

// decodeTextBody reads the catalog and counts lines of a text shard.
func (c *Catalog) decodeTextBody(rest []byte) (Counts, int, error) {
	key, nums, ok := bytes.Cut(rest, []byte{'\n'})
	if !ok {
		return Counts{}, 0, fmt.Errorf("count shard: not a %s shard", shardMagicText)
	}
	counts := NewCounts(c)
	if string(key) == c.keyCache {
		i := 0
		for len(nums) > 0 && i < len(counts.v) {
			var num []byte
			num, nums, _ = bytes.Cut(nums, []byte{','})
			n, err := strconv.ParseInt(string(num), 10, 64)
			if err != nil {
				return Counts{}, 0, fmt.Errorf("count shard: bad count %q", num)
			}
			counts.v[i] = n
			i++
		}
		if i != len(counts.v) || len(nums) > 0 {
			return Counts{}, 0, fmt.Errorf("count shard: %d counts for %d slots", i, len(counts.v))
		}
		return counts, 0, nil
	}
	// Written by a process with other regions or modes: map by name.
	m, err := c.mapping(string(key))
	if err != nil {
		return Counts{}, 0, err
	}
	values := strings.Split(string(nums), ",")
	if len(values) != m.slots() {
		return Counts{}, 0, fmt.Errorf("count shard: %d counts for %d slots", len(values), m.slots())
	}
	dropped := 0
	for i, v := range values {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return Counts{}, 0, fmt.Errorf("count shard: bad count %q", v)
		}
		if n != 0 && !m.add(counts, i, n) {
			dropped++
		}
	}
	return counts, dropped, nil
}

// shardMapping maps the slots of a shard written with another catalog onto
// this one by region name and game mode.
type shardMapping struct {
	c       *Catalog
	regions []string
	modes   []string
}

// mapping parses a shard's catalog line "<regions>|<modes>".
func (c *Catalog) mapping(key string) (*shardMapping, error) {
	regionList, modeList, ok := strings.Cut(key, "|")
	if !ok {
		return nil, fmt.Errorf("count shard: bad catalog line")
	}
	return &shardMapping{c: c, regions: strings.Split(regionList, ","), modes: strings.Split(modeList, ",")}, nil
}

func (m *shardMapping) slots() int { return len(m.regions) * len(m.modes) }

// add adds n to the slot that the shard's slot i names; false when this
// catalog has no such region or mode.
func (m *shardMapping) add(counts Counts, i int, n int64) bool {
	mode, err := strconv.Atoi(m.modes[i%len(m.modes)])
	slot, known := m.c.SlotOf(m.regions[i/len(m.modes)], mode)
	if err != nil || !known {
		return false
	}
	counts.Add(slot, n)
	return true
}
