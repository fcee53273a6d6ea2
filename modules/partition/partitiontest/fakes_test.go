package partitiontest_test

import (
	"testing"

	"github.com/gamemodes/gamemodes/modules/partition"
	"github.com/gamemodes/gamemodes/modules/partition/partitiontest"
)

func TestFakeStoreKeepsTheStoreContract(t *testing.T) {
	partitiontest.StoreContract(t, func(t *testing.T) partitiontest.StoreHarness {
		s := partitiontest.NewStore()
		t.Cleanup(s.Close)
		return partitiontest.StoreHarness{Store: s, Limits: partition.WriteLimits{MaxBatch: 256, MaxInflight: 16}}
	})
}

func TestFakeFeedKeepsTheFeedContract(t *testing.T) {
	partitiontest.FeedContract(t, func(t *testing.T, partitions int) partitiontest.FeedHarness {
		f := partitiontest.NewFeed(partitions, nil)
		return partitiontest.FeedHarness{Feed: f, Publish: func(_ *testing.T, region, token string, data []byte) uint64 {
			return f.Publish(region, token, data)
		}}
	})
}

func TestFakeCoordinatorKeepsTheCoordinatorContract(t *testing.T) {
	partitiontest.CoordinatorContract(t, func(*testing.T) partition.Coordinator { return partitiontest.NewCoordinator() })
}
