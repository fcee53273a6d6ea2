package partition

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/topology"
)

// loop is the owner's single goroutine: every state change happens here.
func (o *Owner) loop(ctx context.Context) error {
	stopping := false
	var drainDeadline <-chan time.Time
	for {
		events := o.events
		if stopping || o.inflight >= o.cfg.MaxInflight {
			events = nil
		}
		ctxDone := ctx.Done()
		if stopping {
			ctxDone = nil
		}
		select {
		case <-ctxDone:
			stopping = true
			drainDeadline = time.After(o.cfg.DrainTimeout)
		case <-drainDeadline:
			return fmt.Errorf("partition %d: drain timed out with %d writes in flight", o.p, o.inflight)
		case m := <-events:
			o.handleEvent(m)
			// Take what is already queued before flushing: natural batching.
			for i := 0; i < 256 && o.inflight < o.cfg.MaxInflight; i++ {
				select {
				case m = <-o.events:
					o.handleEvent(m)
					continue
				default:
				}
				break
			}
		case f := <-o.inbox:
			f()
		case x := <-o.expiries:
			o.handleExpiry(x)
		}
		if o.err != nil {
			return o.err
		}
		o.flush()
		if o.err != nil {
			return o.err
		}
		if stopping && o.inflight == 0 && !o.shardWriting && !o.needsFlush() {
			o.log.Info("partition released", "applied_seq", o.flushedSeq)
			return nil
		}
	}
}

// watermark is the highest sequence up to which every event's write is acknowledged.
func (o *Owner) watermark() uint64 {
	for len(o.marks) > 0 && o.marks[0].done {
		o.marks[0] = nil
		o.marks = o.marks[1:]
	}
	if len(o.marks) == 0 {
		return o.lastSeq
	}
	return o.marks[0].seq - 1
}

func (o *Owner) handleEvent(m EventMsg) {
	o.metrics.pending.WithLabelValues(o.label()).Set(float64(m.Pending))
	if m.Seq <= o.lastSeq {
		return // redelivered by a consumer reset
	}
	o.lastSeq = m.Seq
	ev, slot, err := o.decode(m)
	if err != nil {
		o.metrics.events.Rejected.WithLabelValues("nats", reasonOf(err)).Inc()
		o.log.Warn("invalid event terminated", "seq", m.Seq, "subject", m.Subject, "err", err)
		return
	}
	if !m.FromEdge {
		o.metrics.events.Accepted.WithLabelValues("nats").Inc()
	}
	if age := o.now().Sub(m.Time); age > o.cfg.PlayerTTL {
		// Every effect of this event would have expired by now.
		o.metrics.skipped.WithLabelValues("older_than_ttl").Inc()
		return
	}
	token := domain.UserToken(ev.UserID)
	pl := o.players[token]
	if pl == nil {
		pl = &player{}
		o.players[token] = pl
	}
	t := domain.Apply(pl.cur, ev.Type, slot, m.Seq)
	o.metrics.applied.WithLabelValues(t.Outcome.String()).Inc()
	if t.Outcome == domain.OutcomeDuplicate {
		return
	}
	if t.Outcome == domain.OutcomeStaleLeave {
		o.metrics.staleLeaves.Inc()
	}
	o.counts.Apply(t)
	o.shardDirty = o.shardDirty || t.HasAdd || t.HasRemove
	pl.cur = t.Next
	mk := &mark{seq: m.Seq}
	o.marks = append(o.marks, mk)
	a := applied{typ: ev.Type, slot: slot, seq: m.Seq, mark: mk}
	if pl.writing {
		pl.pending = append(pl.pending, a)
		return
	}
	pl.inflight = append(pl.inflight[:0], a)
	o.write(token, pl)
}

// decode validates a stored event against the contract and the partitioning.
func (o *Owner) decode(m EventMsg) (domain.Event, domain.Slot, error) {
	p, region, ok := topology.ParseStoredEventSubject(m.Subject)
	if !ok || p != o.p {
		return domain.Event{}, domain.Slot{}, &domain.ValidationError{Code: "invalid_subject", Message: "stored subject " + m.Subject + " is not a partitioned event subject"}
	}
	ev, err := o.catalog.DecodeEvent(m.Data, m.Time)
	if err != nil {
		return domain.Event{}, domain.Slot{}, err
	}
	if ev.Region != region {
		return domain.Event{}, domain.Slot{}, &domain.ValidationError{Code: "subject_mismatch", Message: "subject region " + region + " differs from payload region " + ev.Region}
	}
	if domain.PartitionOf(domain.UserToken(ev.UserID), o.cfg.Partitions) != o.p {
		return domain.Event{}, domain.Slot{}, &domain.ValidationError{Code: "subject_mismatch", Message: "payload user_id does not belong to the subject's partition"}
	}
	slot, _ := o.catalog.SlotOf(ev.Region, ev.GameMode)
	return ev, slot, nil
}

func reasonOf(err error) string {
	if v, ok := domain.AsValidationError(err); ok {
		return v.Code
	}
	return "invalid"
}

// write sends the player's current state, expecting its durable revision.
func (o *Owner) write(token string, pl *player) {
	pl.writing = true
	o.inflight++
	written := pl.cur
	o.store.WritePlayer(o.p, token, o.catalog.EncodePlayer(written), pl.rev, func(rev uint64, err error) {
		o.post(func() { o.writeDone(token, pl, written, rev, err) })
	})
}

func (o *Owner) writeDone(token string, pl *player, written domain.PlayerState, rev uint64, err error) {
	o.inflight--
	pl.writing = false
	if err != nil {
		if errors.Is(err, ErrConflict) {
			o.resolveConflict(token, pl)
			return
		}
		o.fail(fmt.Errorf("write player %s: %w", token, err))
		return
	}
	pl.durable, pl.rev = written, rev
	for _, a := range pl.inflight {
		a.mark.done = true
	}
	pl.inflight = pl.inflight[:0]
	if len(pl.pending) > 0 {
		pl.inflight, pl.pending = pl.pending, pl.inflight
		o.write(token, pl)
	}
}

// resolveConflict handles a rejected player write by re-reading the key.
// If it expired (or was deleted) after our last write, the expiry came
// first: expire the durable state. If another owner wrote it (a stalled
// previous owner finishing its last events, or a new owner), adopt its value:
// values are a deterministic function of the stream, so replaying our
// unwritten events on it (skipping those it already has) gives the right
// state. Counts are fenced by the shard's revision check, not here.
func (o *Owner) resolveConflict(token string, pl *player) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e, err := o.store.LastPlayerEntry(ctx, o.p, token)
	if err != nil {
		o.fail(fmt.Errorf("inspect player %s after conflict: %w", token, err))
		return
	}
	if e.Kind != EntryNone && e.Rev <= pl.rev {
		o.fail(fmt.Errorf("player %s at revision %d, behind ours %d: %w", token, e.Rev, pl.rev, ErrFenced))
		return
	}
	if e.Kind == EntryValue {
		st, err := o.catalog.DecodePlayer(e.Value)
		if err != nil {
			o.log.Warn("stored player unreadable; treated as absent", "token", token, "err", err)
		}
		o.metrics.adopted.Inc()
		pl.durable = st
	} else {
		exp := domain.Expire(pl.durable)
		if exp.Outcome == domain.OutcomeExpired {
			o.metrics.expiries.Inc()
		}
		pl.durable = exp.Next
	}
	pl.rev = e.Rev
	old := pl.cur
	cur := pl.durable
	events := append(pl.inflight, pl.pending...)
	for _, a := range events {
		cur = domain.Apply(cur, a.typ, a.slot, a.seq).Next
	}
	o.moveCount(old, cur)
	pl.cur = cur
	pl.inflight, pl.pending = events, nil
	o.write(token, pl)
}

// moveCount replaces a player's contribution to the counts.
func (o *Owner) moveCount(from, to domain.PlayerState) {
	if from.Present == to.Present && from.Slot == to.Slot {
		return
	}
	if from.Present {
		o.counts.Add(from.Slot, -1)
	}
	if to.Present {
		o.counts.Add(to.Slot, 1)
	}
	o.shardDirty = true
}

// handleExpiry applies an expiry marker of a player key.
func (o *Owner) handleExpiry(x Expiry) {
	pl := o.players[x.Token]
	if pl == nil || x.Seq <= pl.rev {
		return // unknown player or a marker older than our last write
	}
	if pl.writing {
		// The write in flight either landed after this marker (the marker
		// is then stale) or fails its revision check (resolveConflict
		// expires the player then).
		return
	}
	t := domain.Expire(pl.cur)
	o.counts.Apply(t)
	if t.Outcome == domain.OutcomeExpired {
		o.metrics.expiries.Inc()
		o.shardDirty = true
	}
	delete(o.players, x.Token)
}

func (o *Owner) needsFlush() bool {
	return o.shardDirty || o.watermark() > o.flushedSeq
}

// flush writes the shard when no shard write is in flight and something
// changed: group commit, so an idle owner publishes a change at once and a
// busy one batches.
func (o *Owner) flush() {
	if o.shardWriting || !o.needsFlush() {
		return
	}
	wm := o.watermark()
	shard := o.catalog.ShardFromCounts(o.p, o.cfg.OwnerID, wm, o.counts)
	o.shardDirty = false
	o.shardWriting = true
	o.store.WriteShard(o.p, domain.MarshalShard(shard), o.shardRev, func(rev uint64, err error) {
		o.post(func() { o.shardDone(wm, rev, err) })
	})
}

func (o *Owner) shardDone(wm, rev uint64, err error) {
	o.shardWriting = false
	if err != nil {
		if errors.Is(err, ErrConflict) {
			err = fmt.Errorf("count shard: %w", ErrFenced)
		}
		o.fail(fmt.Errorf("write shard: %w", err))
		return
	}
	o.shardRev = rev
	o.flushedSeq = wm
	o.metrics.flushes.Inc()
	o.metrics.players.WithLabelValues(o.label()).Set(float64(len(o.players)))
}

func (o *Owner) fail(err error) {
	if o.err == nil {
		o.err = err
	}
}

// Counts returns a copy of the owner's current counts; for tests, from the
// owner's goroutine only after Run returned.
func (o *Owner) Counts() domain.Counts { return o.counts.Clone() }
