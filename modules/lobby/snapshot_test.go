package lobby

import (
	"reflect"
	"testing"

	"github.com/gamemodes/gamemodes/modules/domain"
)

func TestCountsSnapshotCopiesEveryRegionAndMode(t *testing.T) {
	c := domain.MustCatalog([]string{"US", "EU"}, []int{1, 2, 3})
	v := NewView(c, nil)
	v.SetShard(0, 0, 0, shard(c, map[string]map[int]int64{"US": {1: 5, 2: 7}}))
	v.SetShard(3, 0, 0, shard(c, map[string]map[int]int64{"US": {1: 1}, "EU": {3: 4}}))

	s := v.CountsSnapshot()
	if !reflect.DeepEqual(s.Regions, []string{"US", "EU"}) || !reflect.DeepEqual(s.GameModes, []int{1, 2, 3}) {
		t.Fatalf("catalog: regions %v modes %v", s.Regions, s.GameModes)
	}
	if want := [][]int64{{6, 7, 0}, {0, 0, 4}}; !reflect.DeepEqual(s.Counts, want) {
		t.Fatalf("counts %v, want %v", s.Counts, want)
	}
	if s.Shards != 2 || s.Synced || s.LastChange.IsZero() {
		t.Fatalf("shards %d synced %v last change %v", s.Shards, s.Synced, s.LastChange)
	}

	// The snapshot is a copy: later changes do not reach it, and changing
	// it does not reach the view.
	s.Counts[0][0] = 100
	v.DeleteShard(0, 0)
	v.MarkSynced()
	if s2 := v.CountsSnapshot(); !reflect.DeepEqual(s2.Counts, [][]int64{{1, 0, 0}, {0, 0, 4}}) || s2.Shards != 1 || !s2.Synced {
		t.Fatalf("after delete: counts %v shards %d synced %v", s2.Counts, s2.Shards, s2.Synced)
	}
	if v.Count("US", 1) != 1 {
		t.Fatalf("view changed through the snapshot: US1=%d", v.Count("US", 1))
	}
}
