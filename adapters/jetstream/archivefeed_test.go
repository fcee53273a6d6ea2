package jetstream

import (
	"context"
	"errors"
	"fmt"
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

func consumerInfo(t *testing.T, js jetstream.JetStream) *jetstream.ConsumerInfo {
	t.Helper()
	cons, err := js.Consumer(context.Background(), topology.EventsStream, ArchiveConsumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
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
	cc := consumerInfo(t, js).Config
	if cc.AckPolicy != jetstream.AckAllPolicy || cc.DeliverPolicy != jetstream.DeliverAllPolicy ||
		cc.MaxAckPending != 20000 || cc.MaxDeliver != -1 || cc.AckWait != 300*time.Millisecond || cc.Durable != ArchiveConsumer {
		t.Fatalf("consumer config %+v", cc)
	}
	if _, err := f.Next(ctx); err == nil {
		t.Fatal("next before open")
	}

	// 1: through the edge's publisher; 2: a game server with a msg id; 3: without;
	// 4: an invalid subject stored untransformed; 5: plain.
	pub := NewEventPublisher(js)
	payload := []byte(`{"event_id":"e1","user_id":"alice","event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"US"}}`)
	before := time.Now()
	if _, err := pub.PublishEvent(ctx, "US", "alice", "e1", payload); err != nil {
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
	if err := f.Open(ctx, 0); err != nil {
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

	// One acknowledgement covers 1-3.
	if err := f.Ack(ctx, msgs[2]); err != nil {
		t.Fatal(err)
	}
	if info := consumerInfo(t, js); info.AckFloor.Stream != 3 || info.NumAckPending != 2 {
		t.Fatalf("after acking up to 3: ack floor %d, ack pending %d", info.AckFloor.Stream, info.NumAckPending)
	}
	if lag, err := f.Lag(ctx); err != nil || lag != 2 {
		t.Fatalf("lag %d %v, want 2", lag, err)
	}
	if floor, err := f.AckFloor(ctx); err != nil || floor != 3 {
		t.Fatalf("ack floor %d %v", floor, err)
	}
	if _, err := js.Publish(ctx, topology.EventSubject("US", "dave"), []byte("f")); err != nil {
		t.Fatal(err)
	}
	waitLag := func(f *ArchiveFeed, want uint64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			lag, err := f.Lag(ctx)
			if err == nil && lag == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("lag %d %v, want %d", lag, err, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitLag(f, 3)

	// 4 and 5 stay unacknowledged past AckWait: the server delivers them
	// again, and the feed drops them (it had them): next is 6.
	time.Sleep(2 * cfg.AckWait)
	if m := afNext(t, f); m.Seq != 6 {
		t.Fatalf("after redeliveries: sequence %d, want 6", m.Seq)
	}
	if info := consumerInfo(t, js); info.NumRedelivered == 0 {
		t.Fatalf("no redelivery happened: %+v", info)
	}

	// A new feed (a restarted archiver) opened after its checkpoint 4
	// delivers 5 and 6 at once, and the consumer's floor is the checkpoint.
	f.Close()
	if _, err := f.Next(ctx); err == nil {
		t.Fatal("next after close")
	}
	f2, err := NewArchiveFeed(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer f2.Close()
	if err := f2.Open(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if info := consumerInfo(t, js); info.AckFloor.Stream != 4 || info.NumAckPending != 0 || info.NumPending != 2 {
		t.Fatalf("after opening at 4: %+v", info)
	}
	var last archive.Message
	for _, want := range []uint64{5, 6} {
		if last = afNext(t, f2); last.Seq != want {
			t.Fatalf("sequence %d, want %d", last.Seq, want)
		}
	}
	// Positioned again at 4 (an archiver resuming after a failure), a
	// message delivered before is not acknowledged: 5 and 6 are still due.
	if err := f2.Open(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if err := f2.Ack(ctx, last); err != nil {
		t.Fatal(err)
	}
	if floor, err := f2.AckFloor(ctx); err != nil || floor != 4 {
		t.Fatalf("ack floor %d %v after acknowledging a message of an earlier positioning, want 4", floor, err)
	}
	waitLag(f2, 2)
	for _, want := range []uint64{5, 6} {
		if m := afNext(t, f2); m.Seq != want {
			t.Fatalf("after positioning again: %d, want %d", m.Seq, want)
		}
	}
	ctx2, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if _, err := f2.Next(ctx2); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("next on an idle stream: %v", err)
	}
}

// TestArchiveFeedSkipsOnlyWhatTheStreamLacks: deleted messages and an age
// limit make holes in the sequences; the feed goes over them, and delivers
// every message the stream holds.
func TestArchiveFeedSkipsOnlyWhatTheStreamLacks(t *testing.T) {
	js := afSetup(t)
	ctx := context.Background()
	for i := range 10 {
		if _, err := js.Publish(ctx, topology.EventSubject("US", "u"+strconv.Itoa(i)), []byte(strconv.Itoa(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	s, err := js.Stream(ctx, topology.EventsStream)
	if err != nil {
		t.Fatal(err)
	}
	for _, seq := range []uint64{1, 2, 5, 6, 9} {
		if err := s.DeleteMsg(ctx, seq); err != nil {
			t.Fatal(err)
		}
	}
	f, err := NewArchiveFeed(ctx, js, ArchiveFeedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Open(ctx, 0); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	for range 5 {
		got = append(got, afNext(t, f).Seq)
	}
	if fmt.Sprint(got) != "[3 4 7 8 10]" {
		t.Fatalf("delivered %v, want [3 4 7 8 10]", got)
	}
}

// TestArchiveFeedRedeliversWhatWasLost: deliveries that never reach the
// feed (taken by another client of the consumer, as in a reconnect) are
// noticed at the next message, and the consumer is positioned back so that
// nothing is skipped.
func TestArchiveFeedRedeliversWhatWasLost(t *testing.T) {
	js := afSetup(t)
	ctx := context.Background()
	for i := range 6 {
		if _, err := js.Publish(ctx, topology.EventSubject("US", "u"+strconv.Itoa(i)), []byte(strconv.Itoa(i+1))); err != nil {
			t.Fatal(err)
		}
	}
	f, err := NewArchiveFeed(ctx, js, ArchiveFeedConfig{Prefetch: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Open(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if m := afNext(t, f); m.Seq != 1 {
		t.Fatalf("first %d", m.Seq)
	}
	// Another client takes 2 and 3 from the consumer.
	cons, err := js.Consumer(ctx, topology.EventsStream, ArchiveConsumer)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(2, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	stolen := 0
	for range batch.Messages() {
		stolen++
	}
	var got []uint64
	for range 5 {
		got = append(got, afNext(t, f).Seq)
	}
	if fmt.Sprint(got) != "[2 3 4 5 6]" {
		t.Fatalf("delivered %v after %d stolen, want [2 3 4 5 6]", got, stolen)
	}
}

// TestArchiveFeedReplacesOldConsumer: the consumer of a version that
// acknowledged each message (AckExplicit) is replaced by Open, keeping the
// position the archiver gives.
func TestArchiveFeedReplacesOldConsumer(t *testing.T) {
	js := afSetup(t)
	ctx := context.Background()
	old := ArchiveConsumerConfig(ArchiveFeedConfig{})
	old.AckPolicy = jetstream.AckExplicitPolicy
	if _, err := js.CreateConsumer(ctx, topology.EventsStream, old); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := js.Publish(ctx, topology.EventSubject("US", "u"+strconv.Itoa(i)), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	f, err := NewArchiveFeed(ctx, js, ArchiveFeedConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := consumerInfo(t, js).Config.AckPolicy; got != jetstream.AckExplicitPolicy {
		t.Fatalf("NewArchiveFeed changed the existing consumer: %v", got)
	}
	if err := f.Open(ctx, 1); err != nil {
		t.Fatal(err)
	}
	if info := consumerInfo(t, js); info.Config.AckPolicy != jetstream.AckAllPolicy || info.AckFloor.Stream != 1 {
		t.Fatalf("after open: %+v", info)
	}
	if m := afNext(t, f); m.Seq != 2 {
		t.Fatalf("first %d, want 2", m.Seq)
	}
}
