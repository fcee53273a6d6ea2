package archive

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/modules/domain"
)

const testPartitions = 32

var (
	testCatalog = domain.MustCatalog([]string{"US", "EU"}, []int{1, 2, 3})
	testTime    = time.Date(2026, 11, 26, 1, 2, 3, 456789000, time.UTC)
)

// msgFor builds the stream message of a payload published by user on region's subject.
func msgFor(seq uint64, region, user string, data string) Message {
	return Message{
		Seq: seq, Time: testTime, Data: []byte(data),
		Partition: domain.PartitionOf(domain.UserToken(user), testPartitions), Region: region,
		Subject: "x.gamemodes.events." + region,
	}
}

func TestClassify(t *testing.T) {
	c := NewClassifier(testCatalog, testPartitions)
	valid := `{"event_id":"e1","user_id":7,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":2,"region":"US"},"timestamp":"2026-11-26T01:00:00Z"}`
	noID := `{"user_id":"7","event_type":"LEAVE_GAME_MODE","event_payload":{"region":"US","game_mode":2}}`

	ev, _, ok := c.Classify(msgFor(10, "US", "7", valid))
	want := ArchivedEvent{
		EventID: "e1", UserID: "7", EventType: "ENTER_GAME_MODE", Payload: []byte(`{"game_mode":2,"region":"US"}`),
		Timestamp: time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC), StreamSeq: 10,
		Partition: domain.PartitionOf("7", testPartitions), Region: "US", GameMode: 2, ReceivedAt: testTime,
	}
	if !ok || ev.EventID != want.EventID || ev.UserID != want.UserID || ev.EventType != want.EventType ||
		string(ev.Payload) != string(want.Payload) || !ev.Timestamp.Equal(want.Timestamp) || ev.StreamSeq != 10 ||
		ev.Partition != want.Partition || ev.Region != "US" || ev.GameMode != 2 || !ev.ReceivedAt.Equal(testTime) {
		t.Fatalf("valid: %+v ok=%v\nwant %+v", ev, ok, want)
	}

	// No event_id: the Nats-Msg-Id header, else the derived id; a missing
	// timestamp is the stream time.
	m := msgFor(11, "US", "7", noID)
	m.MsgID = "hdr-1"
	if ev, _, ok := c.Classify(m); !ok || ev.EventID != "hdr-1" || !ev.Timestamp.Equal(testTime) {
		t.Fatalf("msg id: %+v %v", ev, ok)
	}
	m.MsgID = strings.Repeat("x", 200) // not a valid event id
	if ev, _, ok := c.Classify(m); !ok || ev.EventID != DerivedEventID(11, testTime) {
		t.Fatalf("long msg id: %+v %v", ev, ok)
	}
	m.MsgID = ""
	ev, _, ok = c.Classify(m)
	if !ok || ev.EventID != "nats-11-"+strconv.FormatInt(testTime.UnixNano(), 10) {
		t.Fatalf("derived: %+v %v", ev, ok)
	}

	other := "8"
	for other = "8"; domain.PartitionOf(other, testPartitions) == domain.PartitionOf("7", testPartitions); other += "8" {
	}
	cases := []struct {
		name   string
		msg    Message
		reason string
	}{
		{"malformed", msgFor(1, "US", "7", `{"user_id":`), domain.CodeMalformedJSON},
		{"unknown region", msgFor(2, "JP", "7", strings.ReplaceAll(valid, `"US"`, `"JP"`)), domain.CodeInvalidRegion},
		{"unknown mode", msgFor(3, "US", "7", strings.ReplaceAll(valid, `"game_mode":2`, `"game_mode":9`)), domain.CodeInvalidGameMode},
		{"region mismatch", msgFor(4, "EU", "7", valid), ReasonRegionMismatch},
		{"partition mismatch", msgFor(5, "US", other, valid), ReasonPartitionMismatch},
		{"bad subject", Message{Seq: 6, Time: testTime, Subject: "gamemodes.events.US.*", Partition: -1, Data: []byte(valid)}, ReasonInvalidSubject},
		{"partition out of range", Message{Seq: 7, Time: testTime, Subject: "99.gamemodes.events.US", Partition: 99, Region: "US", Data: []byte(valid)}, ReasonInvalidSubject},
		{"bad event id", msgFor(8, "US", "7", strings.ReplaceAll(valid, `"e1"`, `""`)), domain.CodeInvalidEventID},
	}
	for _, tc := range cases {
		tc.msg.MsgID = "m"
		ev, rej, ok := c.Classify(tc.msg)
		if ok {
			t.Errorf("%s: accepted %+v", tc.name, ev)
			continue
		}
		if rej.Reason != tc.reason || rej.StreamSeq != tc.msg.Seq || !rej.ReceivedAt.Equal(testTime) ||
			rej.Subject != tc.msg.Subject || rej.MsgID != "m" || string(rej.Payload) != string(tc.msg.Data) || rej.Detail == "" {
			t.Errorf("%s: %+v, want reason %s", tc.name, rej, tc.reason)
		}
	}
}
