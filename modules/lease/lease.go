// Package lease is the port of a lease that expires unless renewed: the
// partition assigner (modules/partition) holds one per partition and the
// live-list publisher (modules/livelist) one for publishing. The adapter
// (adapters/jetstream) keeps them as keys of a KV bucket whose TTL is the
// lease time.
package lease

import (
	"context"
	"errors"
)

// ErrConflict is wrapped by Acquire, Renew and Release when another member
// holds the lease (or it moved past the revision given).
var ErrConflict = errors.New("lease held by another member")

// Lease is one named lease. Its operations are revision-checked: Acquire
// succeeds only while nobody holds the lease, Renew and Release only while
// member still holds it (a renewal whose answer was lost does not lose it).
type Lease interface {
	// Acquire takes the lease for member and returns its revision.
	Acquire(ctx context.Context, member string) (rev uint64, err error)
	// Renew extends member's lease held at rev and returns the new revision.
	Renew(ctx context.Context, member string, rev uint64) (uint64, error)
	// Release gives member's lease up so that another member may take it at once.
	Release(ctx context.Context, member string, rev uint64) error
}
