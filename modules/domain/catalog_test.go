package domain

import (
	"slices"
	"strings"
	"testing"
)

func seq(lo, hi int) []int {
	var out []int
	for i := lo; i <= hi; i++ {
		out = append(out, i)
	}
	return out
}

func TestParseGameModes(t *testing.T) {
	tests := []struct {
		in   string
		want []int
	}{
		{"1-10", seq(1, 10)},
		{"1,3,5-7", []int{1, 3, 5, 6, 7}},
		{"7", []int{7}},
		{"0", []int{0}},
		{"0-0", []int{0}},
		{" 1 , 2 ,, 3 ", []int{1, 2, 3}},
		{"1 - 3", []int{1, 2, 3}},
		{"1-3,20", []int{1, 2, 3, 20}},
		{"3,1,2", []int{3, 1, 2}},
		{"1,1", []int{1, 1}}, // duplicates are the catalog's business
		{",5,", []int{5}},
		{"0-10000", seq(0, 10000)},
	}
	for _, tt := range tests {
		got, err := ParseGameModes(tt.in)
		if err != nil || !slices.Equal(got, tt.want) {
			t.Errorf("ParseGameModes(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
	for _, in := range []string{
		"", " ", ",", ",,", "a", "1,a", "1-", "-1", "-", "1-a", "5-3", "1-2-3", "1..3",
		"1.5", "1e2", "0x10", "0-10001", "1--5", "99999999999999999999",
	} {
		if got, err := ParseGameModes(in); err == nil {
			t.Errorf("ParseGameModes(%q) = %v, want error", in, got)
		}
	}
}

func TestParseRegions(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{"US", []string{"US"}},
		{"US,EU", []string{"US", "EU"}},
		{" US , EU ,, JP ", []string{"US", "EU", "JP"}},
		{"", nil},
		{" , ,", nil},
		{strings.Join(DefaultRegions, ","), DefaultRegions},
	}
	for _, tt := range tests {
		if got := ParseRegions(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("ParseRegions(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestNewCatalogRejects(t *testing.T) {
	tooMany := make([]string, MaxSlotsPerAxis+1)
	for i := range tooMany {
		tooMany[i] = "R" + itoa(i)
	}
	tests := []struct {
		name    string
		regions []string
		modes   []int
	}{
		{"no regions", nil, []int{1}},
		{"empty regions", []string{}, []int{1}},
		{"no modes", []string{"US"}, nil},
		{"duplicate region", []string{"US", "EU", "US"}, []int{1}},
		{"duplicate mode", []string{"US"}, []int{1, 2, 1}},
		{"empty region name", []string{""}, []int{1}},
		{"region with space", []string{"U S"}, []int{1}},
		{"region with dot", []string{"US.EAST"}, []int{1}},
		{"region wildcard", []string{"*"}, []int{1}},
		{"region gt", []string{">"}, []int{1}},
		{"region non ascii", []string{"ÜS"}, []int{1}},
		{"region 33 chars", []string{strings.Repeat("A", 33)}, []int{1}},
		{"negative mode", []string{"US"}, []int{-1}},
		{"mode too large", []string{"US"}, []int{MaxGameMode + 1}},
		{"too many regions", tooMany, []int{1}},
		{"too many modes", []string{"US"}, seq(1, MaxSlotsPerAxis+1)},
	}
	for _, tt := range tests {
		if c, err := NewCatalog(tt.regions, tt.modes); err == nil {
			t.Errorf("%s: NewCatalog accepted: %v %v", tt.name, c.Regions(), c.GameModes())
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("MustCatalog of an invalid catalog did not panic")
			}
		}()
		MustCatalog([]string{"US", "US"}, []int{1})
	}()
}

func TestNewCatalogAccepts(t *testing.T) {
	regions := []string{"eu-west_1", "US", strings.Repeat("Z", 32), "0"}
	c, err := NewCatalog(regions, []int{5, 0, MaxGameMode, 3})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.Regions(); !slices.Equal(got, regions) {
		t.Errorf("Regions() = %v, want configuration order %v", got, regions)
	}
	if got := c.GameModes(); !slices.Equal(got, []int{0, 3, 5, MaxGameMode}) {
		t.Errorf("GameModes() = %v, want ascending", got)
	}
	if c.NumRegions() != 4 || c.NumModes() != 4 {
		t.Errorf("NumRegions/NumModes = %d/%d", c.NumRegions(), c.NumModes())
	}
	for i, r := range regions {
		if j, ok := c.RegionIndex(r); !ok || j != i || c.Region(i) != r {
			t.Errorf("RegionIndex(%q) = %d %v", r, j, ok)
		}
	}
	for i, m := range c.GameModes() {
		if j, ok := c.ModeIndex(m); !ok || j != i || c.GameMode(i) != m {
			t.Errorf("ModeIndex(%d) = %d %v", m, j, ok)
		}
	}
	if _, ok := c.RegionIndex("us"); ok {
		t.Error("RegionIndex is case-insensitive")
	}
	if _, ok := c.ModeIndex(4); ok {
		t.Error("ModeIndex(4) found")
	}
	// Returned slices are copies.
	c.Regions()[0] = "XX"
	c.GameModes()[0] = 99
	if c.Region(0) != "eu-west_1" || c.GameMode(0) != 0 {
		t.Error("Regions/GameModes alias the catalog")
	}
	// The input slice is not reordered.
	in := []int{3, 2, 1}
	MustCatalog([]string{"US"}, in)
	if !slices.Equal(in, []int{3, 2, 1}) {
		t.Errorf("NewCatalog reordered its input: %v", in)
	}
	if s, ok := c.SlotOf("US", 5); !ok || s != (Slot{Region: 1, Mode: 2}) {
		t.Errorf("SlotOf(US,5) = %v %v", s, ok)
	}
	for _, bad := range []struct {
		r string
		m int
	}{{"XX", 5}, {"US", 4}, {"XX", 4}} {
		if _, ok := c.SlotOf(bad.r, bad.m); ok {
			t.Errorf("SlotOf(%s,%d) ok", bad.r, bad.m)
		}
	}
}

func TestDefaultCatalog(t *testing.T) {
	c := DefaultCatalog()
	want := strings.Fields("US EU BR JP KR CN RU IN SEA AU MX CA TR ME TW AR ZA SG PH ID")
	if !slices.Equal(c.Regions(), want) {
		t.Errorf("default regions %v, want %v", c.Regions(), want)
	}
	if !slices.Equal(c.GameModes(), seq(1, 10)) {
		t.Errorf("default modes %v", c.GameModes())
	}
	modes, err := ParseGameModes("1-10")
	if err != nil || !slices.Equal(modes, DefaultGameModes) {
		t.Errorf("ParseGameModes(1-10) = %v %v", modes, err)
	}
}
