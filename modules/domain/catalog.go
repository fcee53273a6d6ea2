// Package domain holds the game-mode business rules: event validation, the
// player state machine that turns events into count changes, partitioning of
// players, and the lobby ranking. It imports nothing but the standard library.
package domain

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// DefaultRegions are the regions served when none are configured.
var DefaultRegions = []string{"US", "EU", "BR", "JP", "KR", "CN", "RU", "IN", "SEA", "AU", "MX", "CA", "TR", "ME", "TW", "AR", "ZA", "SG", "PH", "ID"}

// DefaultGameModes are the game modes served when none are configured.
var DefaultGameModes = []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}

// MaxGameMode is the largest game mode number a catalog accepts.
const MaxGameMode = 1_000_000

// MaxSlotsPerAxis bounds the number of regions and of game modes.
const MaxSlotsPerAxis = 4096

// Catalog is the configured set of regions and game modes. Regions and modes
// have dense indexes so that counts fit in small arrays.
type Catalog struct {
	regions     []string
	regionIndex map[string]int
	modes       []int
	modeIndex   map[int]int
	keyCache    string // regions and modes as written in count shards
	shardText   bool   // EncodeShard writes the text form (SetShardEncoding)
}

// NewCatalog validates and indexes regions and game modes. Region names must
// be usable as a NATS subject token: 1-32 characters of [A-Za-z0-9_-].
func NewCatalog(regions []string, modes []int) (*Catalog, error) {
	if len(regions) == 0 {
		return nil, fmt.Errorf("catalog: no regions")
	}
	if len(modes) == 0 {
		return nil, fmt.Errorf("catalog: no game modes")
	}
	if len(regions) > MaxSlotsPerAxis || len(modes) > MaxSlotsPerAxis {
		return nil, fmt.Errorf("catalog: at most %d regions and %d game modes", MaxSlotsPerAxis, MaxSlotsPerAxis)
	}
	c := &Catalog{regionIndex: make(map[string]int, len(regions)), modeIndex: make(map[int]int, len(modes))}
	for _, r := range regions {
		if !isRegionName(r) {
			return nil, fmt.Errorf("catalog: region %q: want 1-32 characters of A-Z a-z 0-9 _ -", r)
		}
		if _, dup := c.regionIndex[r]; dup {
			return nil, fmt.Errorf("catalog: region %q listed twice", r)
		}
		c.regionIndex[r] = len(c.regions)
		c.regions = append(c.regions, r)
	}
	sorted := append([]int(nil), modes...)
	sort.Ints(sorted)
	for _, m := range sorted {
		if m < 0 || m > MaxGameMode {
			return nil, fmt.Errorf("catalog: game mode %d out of range 0-%d", m, MaxGameMode)
		}
		if _, dup := c.modeIndex[m]; dup {
			return nil, fmt.Errorf("catalog: game mode %d listed twice", m)
		}
		c.modeIndex[m] = len(c.modes)
		c.modes = append(c.modes, m)
	}
	c.keyCache = c.key()
	return c, nil
}

// MustCatalog is NewCatalog for values known to be valid, such as the defaults.
func MustCatalog(regions []string, modes []int) *Catalog {
	c, err := NewCatalog(regions, modes)
	if err != nil {
		panic(err)
	}
	return c
}

// DefaultCatalog returns the catalog of the default regions and game modes.
func DefaultCatalog() *Catalog { return MustCatalog(DefaultRegions, DefaultGameModes) }

// Regions returns the configured regions in configuration order.
func (c *Catalog) Regions() []string { return append([]string(nil), c.regions...) }

// GameModes returns the configured game modes in ascending order.
func (c *Catalog) GameModes() []int { return append([]int(nil), c.modes...) }

// RegionIndex returns the dense index of a region and whether it is configured.
func (c *Catalog) RegionIndex(region string) (int, bool) {
	i, ok := c.regionIndex[region]
	return i, ok
}

// ModeIndex returns the dense index of a game mode and whether it is configured.
func (c *Catalog) ModeIndex(mode int) (int, bool) {
	i, ok := c.modeIndex[mode]
	return i, ok
}

// Region returns the region name of a dense index.
func (c *Catalog) Region(i int) string { return c.regions[i] }

// GameMode returns the game mode number of a dense index.
func (c *Catalog) GameMode(i int) int { return c.modes[i] }

// NumRegions is the number of configured regions.
func (c *Catalog) NumRegions() int { return len(c.regions) }

// NumModes is the number of configured game modes.
func (c *Catalog) NumModes() int { return len(c.modes) }

// ParseRegions splits a comma list of regions, trimming spaces.
func ParseRegions(list string) []string {
	var out []string
	for _, r := range strings.Split(list, ",") {
		if r = strings.TrimSpace(r); r != "" {
			out = append(out, r)
		}
	}
	return out
}

// ParseGameModes parses a comma list of game modes and ranges such as "1-10,20".
func ParseGameModes(list string) ([]int, error) {
	var out []int
	for _, part := range strings.Split(list, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("game modes: %q is not a number or range", part)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(strings.TrimSpace(hi)); err != nil || b < a {
				return nil, fmt.Errorf("game modes: %q is not a valid range", part)
			}
		}
		if a < 0 || b > MaxGameMode {
			return nil, fmt.Errorf("game modes: %q out of range 0-%d", part, MaxGameMode)
		}
		if b-a > 10_000 {
			return nil, fmt.Errorf("game modes: range %q too large", part)
		}
		for m := a; m <= b; m++ {
			out = append(out, m)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("game modes: empty list")
	}
	return out, nil
}

func isRegionName(s string) bool {
	if len(s) == 0 || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenByte(s[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(b byte) bool {
	return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-'
}
