package jetstream

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/archive"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const afPartitions = 8

func afSetup(t *testing.T) jetstream.JetStream {
	t.Helper()
	ns := natstest.RunServer(t)
	_, js := natstest.Connect(t, ns.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := topology.Ensure(ctx, js, topology.Config{Partitions: afPartitions}); err != nil {
		t.Fatal(err)
	}
	return js
}

func afNext(t *testing.T, f *ArchiveFeed) archive.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	m, err := f.Next(ctx)
	if err != nil {
		t.Fatalf("next: %v", err)
	}
	return m
}

func TestArchiveFeed(t *testing.T) {
	js := afSetup(t)
	ctx := context.Background()
	cfg := ArchiveFeedConfig{AckWait: 300 * time.Millisecond}
	f, err := NewArchiveFeed(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Creating it again (another start, or a concurrent process) is fine.
	if _, err := NewArchiveFeed(ctx, js, cfg); err != nil {
		t.Fatalf("second ensure: %v", err)
	}
	if f.Partitions() != afPartitions {
		t.Fatalf("partitions %d", f.Partitions())
	}
	cons, err := js.Consumer(ctx, topology.EventsStream, ArchiveConsumer)
	if err != nil {
		t.Fatal(err)
	}
	cc := cons.CachedInfo().Config
	if cc.AckPolicy != jetstream.AckExplicitPolicy || cc.DeliverPolicy != jetstream.DeliverAllPolicy ||
		cc.MaxAckPending != 20000 || cc.MaxDeliver != -1 || cc.AckWait != 300*time.Millisecond || cc.Durable != ArchiveConsumer {
		t.Fatalf("consumer config %+v", cc)
	}

	// 1: through the edge's publisher; 2: a game server with a msg id; 3: without;
	// 4: an invalid subject stored untransformed; 5: plain.
	pub := NewEventPublisher(js)
	payload := []byte(`{"event_id":"e1","user_id":"alice","event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"US"}}`)
	before := time.Now()
	if _, err := pub.PublishEvent(ctx, topology.EventSubject("US", "alice"), "e1", payload); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, topology.EventSubject("EU", "bob"), []byte("b"), jetstream.WithMsgID("m2")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, topology.EventSubject("EU", "=Ym9i"), []byte("c")); err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: "gamemodes.events.US.*", Data: []byte("d")}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, topology.EventSubject("US", "carol"), []byte("e")); err != nil {
		t.Fatal(err)
	}

	want := []struct {
		partition int
		region    string
		msgID     string
		data      string
	}{
		{domain.PartitionOf("alice", afPartitions), "US", "e1", string(payload)},
		{domain.PartitionOf("bob", afPartitions), "EU", "m2", "b"},
		{domain.PartitionOf("=Ym9i", afPartitions), "EU", "", "c"},
		{-1, "", "", "d"},
		{domain.PartitionOf("carol", afPartitions), "US", "", "e"},
	}
	var msgs []archive.Message
	for i, w := range want {
		m := afNext(t, f)
		msgs = append(msgs, m)
		if m.Seq != uint64(i+1) || m.Partition != w.partition || m.Region != w.region || m.MsgID != w.msgID || string(m.Data) != w.data {
			t.Fatalf("message %d: %+v, want %+v", i+1, m, w)
		}
		if m.Time.Before(before.Add(-time.Second)) || m.Time.After(time.Now().Add(time.Second)) {
			t.Fatalf("message %d: stream time %v", i+1, m.Time)
		}
	}
	if msgs[0].Subject != strconv.Itoa(want[0].partition)+".gamemodes.events.US" {
		t.Fatalf("stored subject %q", msgs[0].Subject)
	}

	// Acknowledging a batch of 1-3.
	if err := f.Ack(ctx, msgs[:3]); err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.AckFloor.Stream != 3 || info.NumAckPending != 2 {
		t.Fatalf("after acking 1-3: ack floor %d, ack pending %d", info.AckFloor.Stream, info.NumAckPending)
	}
	if lag, err := f.Lag(ctx); err != nil || lag != 2 {
		t.Fatalf("lag %d %v, want 2", lag, err)
	}
	if _, err := js.Publish(ctx, topology.EventSubject("US", "dave"), []byte("f")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		lag, err := f.Lag(ctx)
		if err == nil && lag == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("lag %d %v, want 3", lag, err)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// A new feed (a restarted archiver) gets the unacknowledged messages
	// again: 4 and 5 after AckWait, 6 (pulled ahead, given back by Close) at once.
	f.Close()
	if _, err := f.Next(ctx); err == nil {
		t.Fatal("next after close")
	}
	f2, err := NewArchiveFeed(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	got := map[uint64]bool{}
	for len(got) < 3 {
		m := afNext(t, f2)
		if m.Seq < 4 {
			t.Fatalf("acknowledged message %d delivered again", m.Seq)
		}
		got[m.Seq] = true
		if err := f2.Ack(ctx, []archive.Message{m}); err != nil {
			t.Fatal(err)
		}
	}
	if !got[4] || !got[5] || !got[6] {
		t.Fatalf("redelivered %v", got)
	}
	info, err = cons.Info(ctx)
	if err != nil || info.NumAckPending != 0 || info.NumPending != 0 || info.AckFloor.Stream != 6 {
		t.Fatalf("consumer after acking everything: %+v %v", info, err)
	}
	ctx2, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := f2.Next(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("next on an idle stream: %v", err)
	}
}
