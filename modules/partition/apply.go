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
	tick := time.NewTicker(expiryTick)
	defer tick.Stop()
	for {
		events := o.events
		if stopping || len(o.queue) >= o.cfg.MaxQueued {
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
			return fmt.Errorf("partition %d: drain timed out with %d writes in flight and %d queued", o.p, len(o.inflight), len(o.queue))
		case m := <-events:
			o.handleEvent(m)
			// Take what is already queued before flushing: natural batching.
		batch:
			for i := 0; i < 256 && len(o.queue) < o.cfg.MaxQueued; i++ {
				select {
				case m = <-o.events:
					o.handleEvent(m)
				default:
					break batch
				}
			}
		case f := <-o.inbox:
			f()
		case now := <-tick.C:
			o.expireDue(now)
		}
		o.pump()
		if o.err != nil {
			return o.err
		}
		o.flush()
		if stopping && len(o.inflight) == 0 && len(o.queue) == 0 && !o.shardWriting && !o.needsFlush() {
			o.log.Info("partition released", "applied_seq", o.flushedSeq)
			return nil
		}
	}
}

// watermark is the highest sequence up to which every event's player write
// is acknowledged.
func (o *Owner) watermark() uint64 {
	wm := o.lastSeq
	if len(o.inflight) > 0 {
		wm = min(wm, o.inflight[0].firstSeq-1)
	}
	if len(o.queue) > 0 {
		wm = min(wm, o.queue[0].firstSeq-1)
	}
	return wm
}

func (o *Owner) handleEvent(m EventMsg) {
	o.pendingGauge.Set(float64(m.Pending))
	if m.Seq <= o.lastSeq {
		return // delivered again by a consumer reset
	}
	o.lastSeq = m.Seq
	ev, slot, err := o.decode(m)
	if err != nil {
		o.metrics.events.Rejected.WithLabelValues("nats", reasonOf(err)).Inc()
		o.log.Warn("invalid event terminated", "seq", m.Seq, "subject", m.Subject, "err", err)
		return
	}
	if !m.FromEdge {
		o.metrics.acceptedNATS.Inc()
	}
	now := o.now()
	if now.Sub(m.Time) > o.cfg.PlayerTTL {
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
	if m.Seq <= pl.st.LastSeq {
		o.metrics.appliedCounter(domain.OutcomeDuplicate).Inc()
		return
	}
	if pl.writes == 0 && pl.queued == nil && pl.sentAt != 0 && now.UnixNano()-pl.sentAt >= int64(o.cfg.PlayerTTL-o.expiryMargin()) {
		// The stored state has expired (or is about to): the expiry comes
		// before this event, whether or not its marker has arrived.
		o.expire(pl)
	}
	t := domain.Apply(pl.st, ev.Type, slot, m.Seq)
	o.metrics.appliedCounter(t.Outcome).Inc()
	if t.Outcome == domain.OutcomeStaleLeave {
		o.metrics.staleLeaves.Inc()
	}
	o.counts.Apply(t)
	o.shardDirty = o.shardDirty || t.HasAdd || t.HasRemove
	pl.st = t.Next
	if pl.queued == nil {
		pl.queued = &queuedWrite{token: token, pl: pl, firstSeq: m.Seq}
		o.queue = append(o.queue, pl.queued)
	}
}

// expiryMargin is how much earlier than the TTL the owner treats a player
// as expired when an event arrives, covering clock differences with the
// server: min(1s, TTL/10).
func (o *Owner) expiryMargin() time.Duration {
	return min(time.Second, o.cfg.PlayerTTL/10)
}

// decode validates a stored event against the contract and the partitioning.
func (o *Owner) decode(m EventMsg) (domain.Event, domain.Slot, error) {
	p, region, ok := topology.ParseStoredEventSubject(m.Subject)
	if !ok || p != o.p {
		p, region = -1, ""
	}
	return o.catalog.DecodeStored(p, region, o.cfg.Partitions, m.Data, m.Time)
}

func reasonOf(err error) string {
	if v, ok := domain.AsValidationError(err); ok {
		return v.Code
	}
	return "invalid"
}

// pump sends queued player writes, fenced by this owner's claim, while the
// in-flight limit allows. A queued write sends the player's latest state,
// so later events of the same player coalesce into it.
func (o *Owner) pump() {
	now := o.now().UnixNano()
	for len(o.queue) > 0 && len(o.inflight) < o.cfg.MaxInflight {
		q := o.queue[0]
		o.queue[0] = nil
		o.queue = o.queue[1:]
		pl := q.pl
		pl.queued = nil
		pl.writes++
		pl.sentAt = now
		o.inflight = append(o.inflight, q)
		o.send(q)
		o.schedule(q.token, pl, 0)
	}
}

func (o *Owner) send(q *queuedWrite) {
	o.store.WritePlayer(o.p, q.token, o.catalog.EncodePlayer(q.pl.st), o.fence, func(rev uint64, err error) {
		o.post(func() { o.writeDone(q, rev, err) })
	})
}

// retryLater runs f on the owner's goroutine after a moment.
func (o *Owner) retryLater(f func()) {
	o.metrics.busyRetries.Inc()
	time.AfterFunc(time.Millisecond, func() { o.post(f) })
}

func (o *Owner) writeDone(q *queuedWrite, rev uint64, err error) {
	if errors.Is(err, ErrBusy) && o.cfg.MaxInflight == 1 {
		// Replicated bucket: the previous fenced write was still being
		// applied when this one arrived. Send it again (it is alone in flight).
		o.retryLater(func() { o.send(q) })
		return
	}
	q.pl.writes--
	if err != nil {
		if errors.Is(err, ErrConflict) {
			err = ErrFenced
		}
		o.fail(fmt.Errorf("write player: %w", err))
		return
	}
	if len(o.inflight) == 0 || o.inflight[0] != q {
		o.fail(fmt.Errorf("player write for event %d acknowledged out of order", q.firstSeq))
		return
	}
	o.inflight[0] = nil
	o.inflight = o.inflight[1:]
}

// expire removes a player from their mode.
func (o *Owner) expire(pl *player) {
	t := domain.Expire(pl.st)
	if t.Outcome == domain.OutcomeExpired {
		o.counts.Apply(t)
		o.metrics.expiries.Inc()
		o.shardDirty = true
	}
	pl.st = t.Next
}

// expiryTick is how often the owner looks for players whose TTL ran out.
const expiryTick = 250 * time.Millisecond

// schedule puts a player in the expiry wheel under the second its TTL runs
// out (at the earliest the second after notBefore).
func (o *Owner) schedule(token string, pl *player, notBefore int64) {
	if pl.timed {
		return
	}
	pl.timed = true
	sec := max((pl.sentAt+int64(o.cfg.PlayerTTL))/int64(time.Second), notBefore+1)
	o.wheel[sec] = append(o.wheel[sec], token)
}

// expireDue removes the players whose TTL has run out since their last
// write: a counted player leaves their mode; a player who left is
// forgotten. A player written since, or with a write pending, is scheduled
// again.
func (o *Owner) expireDue(now time.Time) {
	nowNanos := now.UnixNano()
	nowSec := nowNanos / int64(time.Second)
	var due []int64
	for sec := range o.wheel {
		if sec <= nowSec {
			due = append(due, sec)
		}
	}
	for _, sec := range due {
		tokens := o.wheel[sec]
		delete(o.wheel, sec)
		for _, token := range tokens {
			pl := o.players[token]
			if pl == nil {
				continue
			}
			pl.timed = false
			if pl.writes > 0 || pl.queued != nil || pl.sentAt+int64(o.cfg.PlayerTTL) > nowNanos {
				o.schedule(token, pl, nowSec)
				continue
			}
			o.expire(pl)
			delete(o.players, token)
		}
	}
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
	now := o.now()
	if wait := o.cfg.FlushInterval - now.Sub(o.lastFlush); wait > 0 {
		if !o.flushWake {
			o.flushWake = true
			time.AfterFunc(wait, func() { o.post(func() { o.flushWake = false }) })
		}
		return
	}
	o.lastFlush = now
	wm := o.watermark()
	shard := o.catalog.EncodeShard(domain.ShardHeader{Partition: o.p, Owner: o.cfg.OwnerID, AppliedSeq: wm}, o.counts)
	o.shardDirty = false
	o.shardWriting = true
	o.store.WriteShard(o.p, shard, o.shardRev, func(rev uint64, err error) {
		o.post(func() { o.shardDone(wm, rev, err) })
	})
}

func (o *Owner) shardDone(wm, rev uint64, err error) {
	o.shardWriting = false
	if errors.Is(err, ErrBusy) {
		// Our previous shard write was still being applied: write again.
		o.shardDirty = true
		o.shardWriting = true
		o.retryLater(func() { o.shardWriting = false; o.lastFlush = time.Time{}; o.flush() })
		return
	}
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
