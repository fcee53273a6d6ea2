package archive

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

// FuzzClassify drives the NATS message path (what a game server may publish
// directly, as the stream stores it) through the archive's classification:
// it never panics, it accepts exactly what the worker applies
// (domain.DecodeStored), an accepted event has a valid id and a payload
// that decodes to the same event, and a rejection always has a reason.
func FuzzClassify(f *testing.F) {
	valid := `{"event_id":"e1","user_id":7,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"US"}}`
	for _, seed := range []struct {
		partition int
		region    string
		msgID     string
		data      string
	}{
		{domain.PartitionOf("7", 32), "US", "", valid},
		{domain.PartitionOf("7", 32), "EU", "", valid},
		{0, "US", "m1", valid},
		{-1, "", "", valid},
		{domain.PartitionOf("7", 32), "US", "id-from-header", `{"user_id":"7","event_type":"LEAVE_GAME_MODE","event_payload":{"game_mode":1,"region":"US"},"timestamp":1700000000}`},
		{3, "US", "", `not json`},
		{3, "US", "", `{}`},
		{3, "US", "", `{"user_id":-1}`},
		{3, "US", "", `{"user_id":"x\u0000","event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"US"}}`},
		{domain.PartitionOf("=w6k", 32), "US", "", `{"user_id":"é","event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":10,"region":"US"}}`},
		{31, "ID", " spaced ", `{"user_id":1,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"ID"}}`},
	} {
		f.Add(seed.partition, seed.region, seed.msgID, []byte(seed.data), uint64(42))
	}
	catalog := domain.DefaultCatalog()
	c := NewClassifier(catalog, 32)
	stored := time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, partition int, region, msgID string, data []byte, seq uint64) {
		m := Message{Seq: seq, Time: stored, Subject: strconv.Itoa(partition) + ".gamemodes.events." + region,
			Partition: partition, Region: region, MsgID: msgID, Data: data}
		ev, rej, ok := c.Classify(m)
		want, _, werr := catalog.DecodeStored(partition, region, 32, data, stored)
		if ok != (werr == nil) {
			t.Fatalf("archive accepted=%v but the worker's validation says %v", ok, werr)
		}
		if !ok {
			if rej.Reason == "" || rej.StreamSeq != seq {
				t.Fatalf("rejection without reason or sequence: %+v", rej)
			}
			return
		}
		if domain.CheckEventID(ev.EventID) != nil && ev.EventID != DerivedEventID(seq, stored) {
			t.Fatalf("archived event id %q is neither valid nor derived", ev.EventID)
		}
		var payload struct {
			GameMode int    `json:"game_mode"`
			Region   string `json:"region"`
		}
		if err := json.Unmarshal(ev.Payload, &payload); err != nil {
			t.Fatalf("archived event_payload %s is not JSON: %v", ev.Payload, err)
		}
		if payload.GameMode != want.GameMode || payload.Region != want.Region || ev.EventType != want.Type.String() ||
			ev.UserID != want.UserID || ev.Region != region || ev.GameMode != want.GameMode || ev.Partition != partition {
			t.Fatalf("archived %+v (payload %s), want %+v", ev, ev.Payload, want)
		}
	})
}
