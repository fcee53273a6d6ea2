package lobby

import (
	"testing"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/prometheus/client_golang/prometheus"
)

// shard builds a partition's counts from region -> mode -> players.
func shard(c *domain.Catalog, counts map[string]map[int]int64) domain.Counts {
	out := domain.NewCounts(c)
	for r, byMode := range counts {
		for m, n := range byMode {
			if slot, ok := c.SlotOf(r, m); ok {
				out.Add(slot, n)
			}
		}
	}
	return out
}

func TestViewSumsShardsAndRanks(t *testing.T) {
	c := domain.MustCatalog([]string{"US", "EU"}, []int{1, 2, 3})
	v := NewView(c, prometheus.NewRegistry())
	if got, _ := v.Popular("US"); string(got) != `{"region":"US","game_modes":[]}` {
		t.Fatalf("empty view: %s", got)
	}
	changed := v.Changed()
	v.SetShard(0, 0, 0, shard(c, map[string]map[int]int64{"US": {1: 5, 2: 7}}))
	select {
	case <-changed:
	default:
		t.Fatal("no change signalled")
	}
	v.SetShard(1, 0, 0, shard(c, map[string]map[int]int64{"US": {1: 3, 3: 8}, "EU": {2: 1}}))
	if got, _ := v.Popular("US"); string(got) != `{"region":"US","game_modes":[{"game_mode":1,"player_count":8},{"game_mode":3,"player_count":8},{"game_mode":2,"player_count":7}]}` {
		t.Fatalf("US: %s", got)
	}
	// A shard is replaced, not added: absolute counts.
	v.SetShard(1, 0, 0, shard(c, map[string]map[int]int64{"US": {1: 1}}))
	if v.Count("US", 1) != 6 || v.Count("US", 3) != 0 || v.Count("EU", 2) != 0 {
		t.Fatalf("after replacing shard 1: US1=%d US3=%d EU2=%d", v.Count("US", 1), v.Count("US", 3), v.Count("EU", 2))
	}
	v.DeleteShard(0, 0)
	if got, _ := v.Popular("US"); string(got) != `{"region":"US","game_modes":[{"game_mode":1,"player_count":1}]}` {
		t.Fatalf("after deleting shard 0: %s", got)
	}
}

func TestViewRejectsMissingAndUnknownRegions(t *testing.T) {
	v := NewView(domain.DefaultCatalog(), nil)
	for region, code := range map[string]string{"": domain.CodeMissingRegion, "XX": domain.CodeInvalidRegion, "us": domain.CodeInvalidRegion} {
		_, err := v.Popular(region)
		if ve, ok := domain.AsValidationError(err); !ok || ve.Code != code {
			t.Errorf("region %q: got %v, want %s", region, err, code)
		}
	}
	if v.Synced() {
		t.Fatal("synced before MarkSynced")
	}
	v.MarkSynced()
	if !v.Synced() {
		t.Fatal("not synced after MarkSynced")
	}
}

// TestViewExportsPlayersPerRegionAndMode: gamemodes_lobby_players has one
// series per region and mode of the catalog, equal to the view's totals.
func TestViewExportsPlayersPerRegionAndMode(t *testing.T) {
	c := domain.MustCatalog([]string{"US", "EU"}, []int{1, 2, 3})
	reg := prometheus.NewRegistry()
	v := NewView(c, reg)
	v.SetShard(0, 0, 0, shard(c, map[string]map[int]int64{"US": {1: 5, 2: 7}}))
	v.SetShard(1, 0, 0, shard(c, map[string]map[int]int64{"US": {1: 3}, "EU": {3: 2}}))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "gamemodes_lobby_players" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := m.GetLabel() // sorted by name: game_mode, region
			got[l[1].GetValue()+"/"+l[0].GetValue()] = m.GetGauge().GetValue()
		}
	}
	want := map[string]float64{"US/1": 8, "US/2": 7, "US/3": 0, "EU/1": 0, "EU/2": 0, "EU/3": 2}
	if len(got) != len(want) {
		t.Fatalf("series %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s = %v, want %v", k, got[k], n)
		}
	}
}
