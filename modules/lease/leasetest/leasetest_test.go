package leasetest_test

import (
	"context"
	"testing"

	"github.com/gamemodes/gamemodes/modules/lease"
	"github.com/gamemodes/gamemodes/modules/lease/leasetest"
)

func TestTableKeepsTheLeaseContract(t *testing.T) {
	leasetest.Contract(t, func(t *testing.T) (lease.Lease, func(*testing.T, string, uint64)) {
		l := leasetest.NewTable(nil).Lease("k")
		return l, func(t *testing.T, member string, rev uint64) {
			if _, err := l.Renew(context.Background(), member, rev); err != nil {
				t.Fatal(err)
			}
		}
	})
}
