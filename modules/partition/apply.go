package partition

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/eventmetrics"
)

// loop is the owner's single goroutine: every state change happens here.
func (o *Owner) loop(ctx context.Context) error {
	stopping := false
	var drainDeadline chan struct{}
	tick, stopTick := o.clock.NewTicker(expiryTick)
	defer stopTick()
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
			drainDeadline = make(chan struct{})
			o.clock.AfterFunc(o.cfg.DrainTimeout, func() { close(drainDeadline) })
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
		case now := <-tick:
			o.expireDue(now)
		}
		o.pump()
		if o.err != nil {
			return o.err
		}
		o.flush()
		o.showDurableLag(o.now().UnixNano())
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
	if q := o.oldestUnwritten(); q != nil {
		wm = min(wm, q.firstSeq-1)
	}
	return wm
}

// oldestUnwritten is the write covering the earliest event not yet
// persisted, or nil when every handled event is.
func (o *Owner) oldestUnwritten() *queuedWrite {
	if len(o.inflight) > 0 {
		return o.inflight[0].writes[0]
	}
	if len(o.queue) > 0 {
		return o.queue[0]
	}
	return nil
}

// showDurableLag sets the durable-lag gauges: how many handled events, and
// since when, wait for their player write to be persisted.
func (o *Owner) showDurableLag(now int64) {
	q := o.oldestUnwritten()
	if q == nil {
		o.lagEvents.Set(0)
		o.lagSeconds.Set(0)
		return
	}
	o.lagEvents.Set(float64(o.handled - q.firstIdx + 1))
	o.lagSeconds.Set(time.Duration(now - q.firstAt).Seconds())
}

func (o *Owner) handleEvent(m EventMsg) {
	o.pendingGauge.Set(float64(m.Pending))
	if m.Seq <= o.lastSeq {
		return // delivered again by a consumer reset
	}
	o.lastSeq = m.Seq
	o.handled++
	ev, slot, err := o.decode(m)
	if err != nil {
		o.metrics.events.Reject(eventmetrics.SourceNATS, err)
		o.log.Warn("invalid event terminated", "seq", m.Seq, "region", m.Region, "err", err)
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
		pl.queued = &queuedWrite{token: token, pl: pl, firstSeq: m.Seq, firstIdx: o.handled, firstAt: now.UnixNano()}
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
	p, region := m.Partition, m.Region
	if p != o.p {
		p, region = -1, ""
	}
	return o.catalog.DecodeStored(p, region, o.cfg.Partitions, m.Data, m.Time)
}

// pump sends the queued player writes in batches, fenced by this owner's
// claim, while the in-flight limit allows: on a replicated bucket one batch
// commits while the next collects. A queued write sends the player's latest
// state, so later events of the same player coalesce into it.
func (o *Owner) pump() {
	now := o.now().UnixNano()
	for len(o.queue) > 0 && len(o.inflight) < o.cfg.Writes.MaxInflight {
		n := min(len(o.queue), o.cfg.Writes.MaxBatch)
		b := &sentBatch{writes: make([]*queuedWrite, n), values: make([]PlayerWrite, n)}
		copy(b.writes, o.queue[:n])
		clear(o.queue[:n])
		o.queue = o.queue[n:]
		for i, q := range b.writes {
			pl := q.pl
			pl.queued = nil
			pl.writes++
			pl.sentAt = now
			b.values[i] = PlayerWrite{Token: q.token, Value: o.catalog.EncodePlayer(pl.st)}
			o.schedule(q.token, pl, 0)
		}
		o.inflight = append(o.inflight, b)
		o.send(b)
	}
	if len(o.queue) == 0 {
		o.queue = nil // let the drained backing array go
	}
}

func (o *Owner) send(b *sentBatch) {
	b.tries++
	o.store.WritePlayers(o.p, b.values, o.fence, func(_ uint64, err error) {
		o.post(func() { o.writeDone(b, err) })
	})
}

// retryLater runs f on the owner's goroutine after a moment.
func (o *Owner) retryLater(f func()) {
	o.metrics.busyRetries.Inc()
	o.clock.AfterFunc(time.Millisecond, func() { o.post(f) })
}

// maxBatchTries bounds the sends of one batch that is alone in flight.
const maxBatchTries = 50

// writeDone completes a batch. A batch alone in flight (a replicated
// bucket) is sent again after a refusal that stored nothing (ErrBusy) or a
// failure whose outcome is unknown (a lost acknowledgement, a leader
// change): it carries the same values, and no later write of its players
// was sent, so storing it twice changes nothing. Pipelined batches (a
// single replica) cannot be resent over later writes: any error there
// fails the owner, which reloads.
func (o *Owner) writeDone(b *sentBatch, err error) {
	if err != nil && !errors.Is(err, ErrConflict) && o.cfg.Writes.MaxInflight == 1 && b.tries < maxBatchTries {
		o.busy++
		o.metrics.busyRetries.Inc()
		pause := min(time.Millisecond<<min(o.busy-1, 7), 100*time.Millisecond)
		if !errors.Is(err, ErrBusy) {
			o.log.Warn("player batch failed; sending it again", "players", len(b.writes), "try", b.tries, "err", err)
			pause = max(pause, 50*time.Millisecond)
		}
		o.clock.AfterFunc(pause, func() {
			o.post(func() {
				now := o.now().UnixNano()
				for _, q := range b.writes {
					q.pl.sentAt = now // the key's age restarts when the resend lands
				}
				o.send(b)
			})
		})
		return
	}
	for _, q := range b.writes {
		q.pl.writes--
	}
	if err != nil {
		if errors.Is(err, ErrConflict) {
			err = ErrFenced
		}
		o.fail(fmt.Errorf("write players: %w", err))
		return
	}
	o.busy = 0
	if len(o.inflight) == 0 || o.inflight[0] != b {
		o.fail(fmt.Errorf("player batch for event %d acknowledged out of order", b.writes[0].firstSeq))
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

// flushBurst is how many shard writes a partition may make back to back
// before FlushInterval paces them.
const flushBurst = 2

// flush writes the shard when no shard write is in flight and something
// changed: group commit, so an idle owner publishes a change at once and a
// busy one batches. Writes are paced by a token bucket: flushBurst at once,
// then one per FlushInterval, so a partition that changes now and then
// shows each change at once and a busy one writes at most 1/FlushInterval
// shards a second.
func (o *Owner) flush() {
	if o.shardWriting || !o.needsFlush() {
		return
	}
	now := o.now()
	if o.lastFlush.IsZero() {
		o.flushTokens = flushBurst
	} else {
		o.flushTokens = min(flushBurst, o.flushTokens+float64(now.Sub(o.lastFlush))/float64(o.cfg.FlushInterval))
	}
	o.lastFlush = now
	if o.flushTokens < 1 {
		if !o.flushWake {
			o.flushWake = true
			wait := time.Duration((1 - o.flushTokens) * float64(o.cfg.FlushInterval))
			o.clock.AfterFunc(wait, func() { o.post(func() { o.flushWake = false }) })
		}
		return
	}
	o.flushTokens--
	wm := o.watermark()
	shard := o.catalog.EncodeShard(domain.ShardHeader{Partition: o.p, Owner: o.cfg.OwnerID, AppliedSeq: wm, DeliveredSeq: o.lastSeq}, o.counts)
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
