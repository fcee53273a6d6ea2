package domain

import (
	"bytes"
	"encoding/base64"
	"errors"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	json "github.com/goccy/go-json"
)

// testNow is the "now" handed to DecodeEvent; a missing timestamp becomes it.
var testNow = time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)

var allCodes = []string{
	CodeMalformedJSON, CodeInvalidEventID, CodeMissingUserID, CodeInvalidUserID,
	CodeMissingEventType, CodeInvalidEventType, CodeMissingPayload, CodeInvalidPayload,
	CodeMissingRegion, CodeInvalidRegion, CodeMissingGameMode, CodeInvalidGameMode,
	CodeInvalidTimestamp,
}

// omit marks a field left out of the body.
const omit = "\x00omit"

// body builds an event body from raw JSON field values over defaults; a value
// of omit leaves the field out. Fields are written in a fixed order, then any
// extra fields in the order given.
func body(over ...string) string {
	if len(over)%2 != 0 {
		panic("body: odd arguments")
	}
	keys := []string{"event_id", "user_id", "event_type", "event_payload", "timestamp"}
	vals := map[string]string{
		"event_id":      omit,
		"user_id":       `1`,
		"event_type":    `"ENTER_GAME_MODE"`,
		"event_payload": `{"game_mode":1,"region":"US"}`,
		"timestamp":     `"2026-11-26T01:00:00Z"`,
	}
	for i := 0; i < len(over); i += 2 {
		if _, known := vals[over[i]]; !known {
			keys = append(keys, over[i])
		}
		vals[over[i]] = over[i+1]
	}
	var b strings.Builder
	b.WriteByte('{')
	first := true
	for _, k := range keys {
		v := vals[k]
		if v == omit {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(`"` + k + `":` + v)
	}
	b.WriteByte('}')
	return b.String()
}

func payload(mode, region string) string {
	return `{"game_mode":` + mode + `,"region":` + region + `}`
}

var defaultTS = time.Date(2026, 11, 26, 1, 0, 0, 0, time.UTC)

func TestDecodeEventAccepted(t *testing.T) {
	c := DefaultCatalog()
	long128 := strings.Repeat("a", 128)
	digits128 := strings.Repeat("9", 128)
	e2x64 := strings.Repeat("é", 64) // 128 bytes
	base := Event{UserID: "1", Type: EventEnter, Region: "US", GameMode: 1, Timestamp: defaultTS}
	with := func(f func(*Event)) Event { e := base; f(&e); return e }
	tests := []struct {
		name string
		body string
		want Event
	}{
		{"defaults", body(), base},
		{"user_id number 1", body("user_id", `1`), base},
		{"user_id string 1", body("user_id", `"1"`), base},
		{"user_id number with spaces", body("user_id", " \t 1 \n"), base},
		{"user_id zero", body("user_id", `0`), with(func(e *Event) { e.UserID = "0" })},
		{"user_id large number", body("user_id", `123456789012345678901234567890`), with(func(e *Event) { e.UserID = "123456789012345678901234567890" })},
		{"user_id 128 digits", body("user_id", digits128), with(func(e *Event) { e.UserID = digits128 })},
		{"user_id string leading zero kept", body("user_id", `"007"`), with(func(e *Event) { e.UserID = "007" })},
		{"user_id string 128 bytes", body("user_id", `"`+long128+`"`), with(func(e *Event) { e.UserID = long128 })},
		{"user_id string 128 bytes multibyte", body("user_id", `"`+e2x64+`"`), with(func(e *Event) { e.UserID = e2x64 })},
		{"user_id string escapes", body("user_id", `"a\"b\\c\u00e9<>&"`), with(func(e *Event) { e.UserID = "a\"b\\c\u00e9<>&" })},
		{"user_id string with space", body("user_id", `"john doe"`), with(func(e *Event) { e.UserID = "john doe" })},
		{"user_id string U+00A0 not control", body("user_id", `"\u00a0"`), with(func(e *Event) { e.UserID = "\u00a0" })},
		{"event_id given", body("event_id", `"ev-1"`), with(func(e *Event) { e.ID = "ev-1" })},
		{"event_id null", body("event_id", `null`), base},
		{"event_id 128 bytes", body("event_id", `"`+long128+`"`), with(func(e *Event) { e.ID = long128 })},
		{"event_id unicode", body("event_id", `"ключ"`), with(func(e *Event) { e.ID = "ключ" })},
		{"event_id inner space", body("event_id", `"a b\u00a0c"`), with(func(e *Event) { e.ID = "a b\u00a0c" })},
		{"user_id string with edge spaces kept", body("user_id", `" 1 "`), with(func(e *Event) { e.UserID = " 1 " })},
		{"leave", body("event_type", `"LEAVE_GAME_MODE"`), with(func(e *Event) { e.Type = EventLeave })},
		{"heartbeat", body("event_type", `"HEARTBEAT_GAME_MODE"`), with(func(e *Event) { e.Type = EventHeartbeat })},
		{"event_type escaped", body("event_type", `"ENTER\u005fGAME_MODE"`), base},
		{"region SEA mode 10", body("event_payload", payload(`10`, `"SEA"`)), with(func(e *Event) { e.Region, e.GameMode = "SEA", 10 })},
		{"payload extra fields", body("event_payload", `{"region":"EU","x":[1,{"y":null}],"game_mode":3}`), with(func(e *Event) { e.Region, e.GameMode = "EU", 3 })},
		{"payload spaces", body("event_payload", `{ "game_mode" : 2 , "region" : "JP" }`), with(func(e *Event) { e.Region, e.GameMode = "JP", 2 })},
		{"timestamp Z", body("timestamp", `"2026-11-26T01:00:00Z"`), base},
		{"timestamp offset", body("timestamp", `"2026-11-26T03:30:00+02:30"`), base},
		{"timestamp negative offset", body("timestamp", `"2026-11-25T20:00:00-05:00"`), base},
		{"timestamp nanos", body("timestamp", `"2026-11-26T01:00:00.123456789Z"`), with(func(e *Event) { e.Timestamp = defaultTS.Add(123456789) })},
		{"timestamp millis fraction", body("timestamp", `"2026-11-26T01:00:00.5Z"`), with(func(e *Event) { e.Timestamp = defaultTS.Add(500 * time.Millisecond) })},
		{"timestamp epoch seconds", body("timestamp", `1795654800`), base},
		{"timestamp epoch seconds fraction", body("timestamp", `1795654800.25`), with(func(e *Event) { e.Timestamp = defaultTS.Add(250 * time.Millisecond) })},
		{"timestamp epoch seconds exponent", body("timestamp", `1.7956548e9`), base},
		{"timestamp epoch millis", body("timestamp", `1795654800123`), with(func(e *Event) { e.Timestamp = defaultTS.Add(123 * time.Millisecond) })},
		{"timestamp just below millis threshold is seconds", body("timestamp", `99999999999`), with(func(e *Event) { e.Timestamp = time.Unix(99999999999, 0).UTC() })},
		{"timestamp at millis threshold is millis", body("timestamp", `100000000000`), with(func(e *Event) { e.Timestamp = time.Unix(100000000, 0).UTC() })},
		{"timestamp epoch zero", body("timestamp", `0`), with(func(e *Event) { e.Timestamp = time.Unix(0, 0).UTC() })},
		{"timestamp 1970 string", body("timestamp", `"1970-01-01T00:00:00Z"`), with(func(e *Event) { e.Timestamp = time.Unix(0, 0).UTC() })},
		{"timestamp 9999 max", body("timestamp", `"9999-12-31T23:59:59Z"`), with(func(e *Event) { e.Timestamp = maxTimestamp })},
		{"timestamp max as millis", body("timestamp", `253402300799000`), with(func(e *Event) { e.Timestamp = maxTimestamp })},
		{"timestamp missing is now", body("timestamp", omit), with(func(e *Event) { e.Timestamp = testNow })},
		{"timestamp null is now", body("timestamp", `null`), with(func(e *Event) { e.Timestamp = testNow })},
		{"unknown fields ignored", body("extra", `{"a":[1,2,{"b":null}]}`, "z", `null`, "n", `1e999`), base},
		{"trailing whitespace", body() + " \n\t\r ", base},
		{"leading whitespace", "\n  " + body(), base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.DecodeEvent([]byte(tt.body), testNow)
			if err != nil {
				t.Fatalf("DecodeEvent(%s): %v", tt.body, err)
			}
			if !eventsEqual(got, tt.want) {
				t.Fatalf("DecodeEvent(%s)\n got %+v\nwant %+v", tt.body, got, tt.want)
			}
			if got.Timestamp.Location() != time.UTC {
				t.Errorf("timestamp location %v, want UTC", got.Timestamp.Location())
			}
		})
	}
}

// eventsEqual compares events field by field, timestamps by instant and by
// == (both must be UTC without monotonic reading).
func eventsEqual(a, b Event) bool {
	return a.ID == b.ID && a.UserID == b.UserID && a.Type == b.Type && a.Region == b.Region &&
		a.GameMode == b.GameMode && a.Timestamp.Equal(b.Timestamp) && a.Timestamp == b.Timestamp
}

func TestDecodeEventOneAndQuotedOneAreSameUser(t *testing.T) {
	c := DefaultCatalog()
	a, err1 := c.DecodeEvent([]byte(body("user_id", `1`)), testNow)
	b, err2 := c.DecodeEvent([]byte(body("user_id", `"1"`)), testNow)
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if a.UserID != "1" || a.UserID != b.UserID || a.Token() != b.Token() {
		t.Fatalf("1 and \"1\" differ: %q/%q %q/%q", a.UserID, b.UserID, a.Token(), b.Token())
	}
}

func TestDecodeEventRejected(t *testing.T) {
	c := DefaultCatalog()
	long129 := strings.Repeat("a", 129)
	tests := []struct {
		name string
		body string
		code string
	}{
		// body level
		{"empty body", ``, CodeMalformedJSON},
		{"whitespace body", " \n\t ", CodeMalformedJSON},
		{"array body", `[]`, CodeMalformedJSON},
		{"array of event", `[` + body() + `]`, CodeMalformedJSON},
		{"string body", `"x"`, CodeMalformedJSON},
		{"number body", `1`, CodeMalformedJSON},
		{"bool body", `true`, CodeMalformedJSON},
		{"truncated", body()[:20], CodeMalformedJSON},
		{"not json", `user_id=1`, CodeMalformedJSON},
		{"trailing object", body() + `{}`, CodeMalformedJSON},
		{"trailing object spaced", body() + "\n" + body(), CodeMalformedJSON},
		{"trailing garbage", body() + `x`, CodeMalformedJSON},
		{"trailing bracket", body() + `]`, CodeMalformedJSON},
		{"trailing brace", body() + `}`, CodeMalformedJSON},
		{"trailing number", body() + ` 1`, CodeMalformedJSON},
		{"invalid utf8 in user_id", body("user_id", "\"a\xffb\""), CodeMalformedJSON},
		{"invalid utf8 in ignored field", body("x", "\"\xc3\x28\""), CodeMalformedJSON},
		{"invalid utf8 surrogate bytes", body("user_id", "\"\xed\xa0\x80\""), CodeMalformedJSON},
		{"raw control char in string", body("user_id", "\"a\x01\""), CodeMalformedJSON},
		{"BOM", "\xef\xbb\xbf" + body(), CodeMalformedJSON},
		{"leading zero number", body("user_id", `01`), CodeMalformedJSON},
		{"plus number", body("user_id", `+1`), CodeMalformedJSON},
		{"NaN literal", body("timestamp", `NaN`), CodeMalformedJSON},
		{"Infinity literal", body("timestamp", `Infinity`), CodeMalformedJSON},

		// event_id
		{"event_id empty", body("event_id", `""`), CodeInvalidEventID},
		{"event_id 129 bytes", body("event_id", `"`+long129+`"`), CodeInvalidEventID},
		{"event_id number", body("event_id", `5`), CodeInvalidEventID},
		{"event_id bool", body("event_id", `true`), CodeInvalidEventID},
		{"event_id object", body("event_id", `{}`), CodeInvalidEventID},
		{"event_id array", body("event_id", `["a"]`), CodeInvalidEventID},
		{"event_id NUL", body("event_id", `"a\u0000"`), CodeInvalidEventID},
		{"event_id newline", body("event_id", `"a\nb"`), CodeInvalidEventID},
		{"event_id CR", body("event_id", `"a\rb"`), CodeInvalidEventID},
		{"event_id 1f", body("event_id", `"\u001f"`), CodeInvalidEventID},
		{"event_id DEL", body("event_id", `"\u007f"`), CodeInvalidEventID},
		{"event_id raw DEL", body("event_id", "\"a\x7f\""), CodeInvalidEventID},
		{"event_id NEL", body("event_id", `"\u0085"`), CodeInvalidEventID},
		{"event_id 9f", body("event_id", `"x\u009fy"`), CodeInvalidEventID},
		{"event_id leading space", body("event_id", `" x"`), CodeInvalidEventID},
		{"event_id trailing space", body("event_id", `"x "`), CodeInvalidEventID},
		{"event_id only space", body("event_id", `" "`), CodeInvalidEventID},
		{"event_id leading NBSP", body("event_id", `"\u00a0x"`), CodeInvalidEventID},
		{"event_id trailing U+2028", body("event_id", `"x\u2028"`), CodeInvalidEventID},
		{"event_id leading U+3000", body("event_id", `"\u3000x"`), CodeInvalidEventID},

		// user_id
		{"user_id missing", body("user_id", omit), CodeMissingUserID},
		{"user_id null", body("user_id", `null`), CodeMissingUserID},
		{"user_id negative", body("user_id", `-1`), CodeInvalidUserID},
		{"user_id negative zero", body("user_id", `-0`), CodeInvalidUserID},
		{"user_id fraction", body("user_id", `1.5`), CodeInvalidUserID},
		{"user_id integral fraction", body("user_id", `1.0`), CodeInvalidUserID},
		{"user_id exponent", body("user_id", `1e3`), CodeInvalidUserID},
		{"user_id upper exponent", body("user_id", `1E3`), CodeInvalidUserID},
		{"user_id true", body("user_id", `true`), CodeInvalidUserID},
		{"user_id false", body("user_id", `false`), CodeInvalidUserID},
		{"user_id object", body("user_id", `{"id":1}`), CodeInvalidUserID},
		{"user_id array", body("user_id", `[1]`), CodeInvalidUserID},
		{"user_id empty string", body("user_id", `""`), CodeInvalidUserID},
		{"user_id 129 digits", body("user_id", strings.Repeat("1", 129)), CodeInvalidUserID},
		{"user_id 129 byte string", body("user_id", `"`+long129+`"`), CodeInvalidUserID},
		{"user_id 130 byte multibyte string", body("user_id", `"`+strings.Repeat("é", 65)+`"`), CodeInvalidUserID},
		{"user_id NUL", body("user_id", `"a\u0000b"`), CodeInvalidUserID},
		{"user_id 1f", body("user_id", `"\u001f"`), CodeInvalidUserID},
		{"user_id tab", body("user_id", `"a\tb"`), CodeInvalidUserID},
		{"user_id newline", body("user_id", `"a\n"`), CodeInvalidUserID},
		{"user_id DEL escaped", body("user_id", `"\u007f"`), CodeInvalidUserID},
		{"user_id DEL raw", body("user_id", "\"\x7f\""), CodeInvalidUserID},
		{"user_id NEL escaped", body("user_id", `"\u0085"`), CodeInvalidUserID},
		{"user_id NEL raw utf8", body("user_id", "\"a\u0085\""), CodeInvalidUserID},
		{"user_id 80", body("user_id", `"\u0080"`), CodeInvalidUserID},

		// event_type
		{"event_type missing", body("event_type", omit), CodeMissingEventType},
		{"event_type null", body("event_type", `null`), CodeMissingEventType},
		{"event_type lowercase", body("event_type", `"enter_game_mode"`), CodeInvalidEventType},
		{"event_type mixed case", body("event_type", `"Leave_Game_Mode"`), CodeInvalidEventType},
		{"event_type unknown", body("event_type", `"JOIN"`), CodeInvalidEventType},
		{"event_type heartbeat lowercase", body("event_type", `"heartbeat_game_mode"`), CodeInvalidEventType},
		{"event_type heartbeat abbreviated", body("event_type", `"HEARTBEAT"`), CodeInvalidEventType},
		{"event_type empty", body("event_type", `""`), CodeInvalidEventType},
		{"event_type padded", body("event_type", `" ENTER_GAME_MODE"`), CodeInvalidEventType},
		{"event_type number", body("event_type", `1`), CodeInvalidEventType},
		{"event_type bool", body("event_type", `true`), CodeInvalidEventType},
		{"event_type object", body("event_type", `{}`), CodeInvalidEventType},
		{"event_type array", body("event_type", `["ENTER_GAME_MODE"]`), CodeInvalidEventType},

		// event_payload
		{"payload missing", body("event_payload", omit), CodeMissingPayload},
		{"payload null", body("event_payload", `null`), CodeMissingPayload},
		{"payload array", body("event_payload", `[]`), CodeInvalidPayload},
		{"payload string", body("event_payload", `"{\"game_mode\":1,\"region\":\"US\"}"`), CodeInvalidPayload},
		{"payload number", body("event_payload", `1`), CodeInvalidPayload},
		{"payload bool", body("event_payload", `false`), CodeInvalidPayload},
		{"payload empty object", body("event_payload", `{}`), CodeMissingRegion},
		{"region missing", body("event_payload", `{"game_mode":1}`), CodeMissingRegion},
		{"region null", body("event_payload", payload(`1`, `null`)), CodeMissingRegion},
		{"region unknown", body("event_payload", payload(`1`, `"XX"`)), CodeInvalidRegion},
		{"region empty", body("event_payload", payload(`1`, `""`)), CodeInvalidRegion},
		{"region lowercase", body("event_payload", payload(`1`, `"us"`)), CodeInvalidRegion},
		{"region mixed case", body("event_payload", payload(`1`, `"Sea"`)), CodeInvalidRegion},
		{"region padded", body("event_payload", payload(`1`, `"US "`)), CodeInvalidRegion},
		{"region number", body("event_payload", payload(`1`, `1`)), CodeInvalidRegion},
		{"region bool", body("event_payload", payload(`1`, `true`)), CodeInvalidRegion},
		{"region array", body("event_payload", payload(`1`, `["US"]`)), CodeInvalidRegion},
		{"region object", body("event_payload", payload(`1`, `{}`)), CodeInvalidRegion},
		{"game_mode missing", body("event_payload", `{"region":"US"}`), CodeMissingGameMode},
		{"game_mode null", body("event_payload", payload(`null`, `"US"`)), CodeMissingGameMode},
		{"game_mode unknown", body("event_payload", payload(`11`, `"US"`)), CodeInvalidGameMode},
		{"game_mode zero not configured", body("event_payload", payload(`0`, `"US"`)), CodeInvalidGameMode},
		{"game_mode string", body("event_payload", payload(`"1"`, `"US"`)), CodeInvalidGameMode},
		{"game_mode float", body("event_payload", payload(`1.0`, `"US"`)), CodeInvalidGameMode},
		{"game_mode fraction", body("event_payload", payload(`1.5`, `"US"`)), CodeInvalidGameMode},
		{"game_mode exponent", body("event_payload", payload(`1e0`, `"US"`)), CodeInvalidGameMode},
		{"game_mode negative", body("event_payload", payload(`-1`, `"US"`)), CodeInvalidGameMode},
		{"game_mode huge", body("event_payload", payload(`99999999999999999999999`, `"US"`)), CodeInvalidGameMode},
		{"game_mode bool", body("event_payload", payload(`true`, `"US"`)), CodeInvalidGameMode},
		{"game_mode object", body("event_payload", payload(`{}`, `"US"`)), CodeInvalidGameMode},
		{"game_mode array", body("event_payload", payload(`[1]`, `"US"`)), CodeInvalidGameMode},

		// timestamp
		{"timestamp negative", body("timestamp", `-1`), CodeInvalidTimestamp},
		{"timestamp negative fraction", body("timestamp", `-0.5`), CodeInvalidTimestamp},
		{"timestamp negative millis", body("timestamp", `-1795654800123`), CodeInvalidTimestamp},
		{"timestamp NaN string", body("timestamp", `"NaN"`), CodeInvalidTimestamp},
		{"timestamp Infinity string", body("timestamp", `"Infinity"`), CodeInvalidTimestamp},
		{"timestamp -Inf string", body("timestamp", `"-Inf"`), CodeInvalidTimestamp},
		{"timestamp numeric string", body("timestamp", `"1795654800"`), CodeInvalidTimestamp},
		{"timestamp garbage", body("timestamp", `"yesterday"`), CodeInvalidTimestamp},
		{"timestamp empty string", body("timestamp", `""`), CodeInvalidTimestamp},
		{"timestamp date only", body("timestamp", `"2026-11-26"`), CodeInvalidTimestamp},
		{"timestamp no zone", body("timestamp", `"2026-11-26T01:00:00"`), CodeInvalidTimestamp},
		{"timestamp space separator", body("timestamp", `"2026-11-26 01:00:00Z"`), CodeInvalidTimestamp},
		{"timestamp bad month", body("timestamp", `"2026-13-26T01:00:00Z"`), CodeInvalidTimestamp},
		{"timestamp bad hour", body("timestamp", `"2026-11-26T25:00:00Z"`), CodeInvalidTimestamp},
		{"timestamp RFC1123", body("timestamp", `"Thu, 26 Nov 2026 01:00:00 GMT"`), CodeInvalidTimestamp},
		{"timestamp before 1970", body("timestamp", `"1969-12-31T23:59:59Z"`), CodeInvalidTimestamp},
		{"timestamp before 1970 by offset", body("timestamp", `"1970-01-01T00:30:00+01:00"`), CodeInvalidTimestamp},
		{"timestamp year 1", body("timestamp", `"0001-01-01T00:00:00Z"`), CodeInvalidTimestamp},
		{"timestamp after 9999 by offset", body("timestamp", `"9999-12-31T23:59:59-01:00"`), CodeInvalidTimestamp},
		{"timestamp year 10000", body("timestamp", `"10000-01-01T00:00:00Z"`), CodeInvalidTimestamp},
		{"timestamp millis out of range", body("timestamp", `253402300800000`), CodeInvalidTimestamp},
		{"timestamp huge", body("timestamp", `1e300`), CodeInvalidTimestamp},
		{"timestamp overflow float", body("timestamp", `1e400`), CodeInvalidTimestamp},
		{"timestamp bool", body("timestamp", `true`), CodeInvalidTimestamp},
		{"timestamp object", body("timestamp", `{}`), CodeInvalidTimestamp},
		{"timestamp array", body("timestamp", `[1]`), CodeInvalidTimestamp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.DecodeEvent([]byte(tt.body), testNow)
			if err == nil {
				t.Fatalf("DecodeEvent(%q) = %+v, want error %s", tt.body, got, tt.code)
			}
			ve, ok := err.(*ValidationError)
			if !ok {
				t.Fatalf("DecodeEvent(%q) error %T %v, want *ValidationError", tt.body, err, err)
			}
			if ve.Code != tt.code {
				t.Fatalf("DecodeEvent(%q) code %q (%v), want %q", tt.body, ve.Code, err, tt.code)
			}
			if ve.Message == "" || !strings.HasPrefix(ve.Error(), ve.Code+": ") {
				t.Errorf("error %q: want non-empty message prefixed by the code", ve.Error())
			}
			if v, ok := AsValidationError(err); !ok || v != ve {
				t.Errorf("AsValidationError did not find the error")
			}
			if got != (Event{}) {
				t.Errorf("rejected event returned non-zero event %+v", got)
			}
		})
	}
}

// A body that is JSON null is no event object at all.
func TestDecodeEventNullBody(t *testing.T) {
	c := DefaultCatalog()
	for _, b := range []string{`null`, ` null `} {
		_, err := c.DecodeEvent([]byte(b), testNow)
		ve, ok := AsValidationError(err)
		if !ok {
			t.Fatalf("DecodeEvent(%q) = %v, want a ValidationError", b, err)
		}
		if ve.Code != CodeMalformedJSON {
			t.Errorf("DecodeEvent(%q) code %q, want %q (the body is not a JSON object)", b, ve.Code, CodeMalformedJSON)
		}
	}
}

func TestAsValidationErrorWrapped(t *testing.T) {
	inner := &ValidationError{Code: CodeInvalidRegion, Message: "x"}
	wrapped := errors.Join(errors.New("outer"), inner)
	if v, ok := AsValidationError(wrapped); !ok || v != inner {
		t.Fatal("AsValidationError did not unwrap")
	}
	if _, ok := AsValidationError(errors.New("plain")); ok {
		t.Fatal("AsValidationError found one in a plain error")
	}
	if _, ok := AsValidationError(nil); ok {
		t.Fatal("AsValidationError(nil) ok")
	}
}

func TestDecodeTimestampPrecision(t *testing.T) {
	tests := []struct {
		raw  string
		want time.Time
	}{
		{`1795654800.000001`, defaultTS.Add(time.Microsecond)},
		{`1795654800.5`, defaultTS.Add(500 * time.Millisecond)},
		{`1795654800999`, defaultTS.Add(999 * time.Millisecond)},
		{`1795654800000.5`, defaultTS.Add(500 * time.Microsecond)},
		{`0.25`, time.Unix(0, 250e6).UTC()},
		{`-0`, time.Unix(0, 0).UTC()},
	}
	for _, tt := range tests {
		got, err := DecodeTimestamp([]byte(tt.raw), testNow)
		if err != nil {
			t.Errorf("DecodeTimestamp(%s): %v", tt.raw, err)
			continue
		}
		if !got.Equal(tt.want) || got.Location() != time.UTC {
			t.Errorf("DecodeTimestamp(%s) = %v, want %v", tt.raw, got, tt.want)
		}
	}
	// Now is returned in UTC without a monotonic reading.
	local := time.Now().In(time.FixedZone("X", 3600))
	got, err := DecodeTimestamp(nil, local)
	if err != nil || !got.Equal(local) || got.Location() != time.UTC || got != got.Round(0) {
		t.Errorf("DecodeTimestamp(absent) = %v %v, want %v in UTC", got, err, local)
	}
}

func TestCheckEventIDAndUserID(t *testing.T) {
	for _, id := range []string{"a", strings.Repeat("x", 128), "é", "a b", "<&>"} {
		if err := CheckEventID(id); err != nil {
			t.Errorf("CheckEventID(%q): %v", id, err)
		}
		if err := CheckUserID(id); err != nil {
			t.Errorf("CheckUserID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"", strings.Repeat("x", 129), "\xff", "a\x00", "\x7f", "\u0085", "\u009f", "\t"} {
		if v, ok := AsValidationError(CheckEventID(id)); !ok || v.Code != CodeInvalidEventID {
			t.Errorf("CheckEventID(%q) = %v, want %s", id, CheckEventID(id), CodeInvalidEventID)
		}
		if v, ok := AsValidationError(CheckUserID(id)); !ok || v.Code != CodeInvalidUserID {
			t.Errorf("CheckUserID(%q) = %v, want %s", id, CheckUserID(id), CodeInvalidUserID)
		}
	}
}

func TestEventTypeNames(t *testing.T) {
	for _, et := range []EventType{EventEnter, EventLeave, EventHeartbeat} {
		got, ok := ParseEventType(et.String())
		if !ok || got != et {
			t.Errorf("ParseEventType(%q) = %v %v", et.String(), got, ok)
		}
	}
	if EventType(0).String() != "UNKNOWN" || EventType(9).String() != "UNKNOWN" {
		t.Error("unknown event types must print UNKNOWN")
	}
	if _, ok := ParseEventType("UNKNOWN"); ok {
		t.Error("ParseEventType(UNKNOWN) ok")
	}
}

func TestInvalidEventTypeMessageListsEveryType(t *testing.T) {
	_, err := DefaultCatalog().DecodeEvent([]byte(body("event_type", `"JOIN"`)), defaultTS)
	v, ok := AsValidationError(err)
	if !ok || v.Code != CodeInvalidEventType {
		t.Fatalf("error %v, want %s", err, CodeInvalidEventType)
	}
	if want := "event_type must be ENTER_GAME_MODE, LEAVE_GAME_MODE or HEARTBEAT_GAME_MODE"; v.Message != want {
		t.Fatalf("message %q, want %q", v.Message, want)
	}
}

func TestMarshalCanonicalExact(t *testing.T) {
	e := Event{ID: "e1", UserID: "42", Type: EventLeave, Region: "EU", GameMode: 7,
		Timestamp: time.Date(2026, 11, 26, 3, 0, 0, 120, time.FixedZone("x", 2*3600))}
	want := `{"event_id":"e1","user_id":"42","event_type":"LEAVE_GAME_MODE","event_payload":{"game_mode":7,"region":"EU"},"timestamp":"2026-11-26T01:00:00.00000012Z"}`
	if got := string(e.MarshalCanonical()); got != want {
		t.Errorf("MarshalCanonical\n got %s\nwant %s", got, want)
	}
	e.ID = ""
	e.Timestamp = defaultTS
	want = `{"user_id":"42","event_type":"LEAVE_GAME_MODE","event_payload":{"game_mode":7,"region":"EU"},"timestamp":"2026-11-26T01:00:00Z"}`
	if got := string(e.MarshalCanonical()); got != want {
		t.Errorf("MarshalCanonical without id\n got %s\nwant %s", got, want)
	}
}

// randomID returns a valid user id (1-128 bytes, no control characters)
// mixing the characters most likely to break JSON encoding.
func randomID(r *rand.Rand) string { return randomValid(r, CheckUserID) }

// randomEventID returns a valid event id.
func randomEventID(r *rand.Rand) string { return randomValid(r, CheckEventID) }

func randomValid(r *rand.Rand, check func(string) error) string {
	pieces := []string{
		"a", "Z", "0", "9", "_", "-", "=", ".", "*", ">", " ", "/", "+",
		`"`, `\`, `\"`, `\\`, "<", ">", "&", "'", "\u2028", "\u2029", "é", "ß", "日本",
		"\U0001F600", "\uFFFD", "\u00a0", "\ufeff", "\u200b", "%", "{", "}", "[", "]", ":", ",",
		"\\u0000", "null", "=abc", "MQ",
	}
	for {
		var b strings.Builder
		n := 1 + r.IntN(12)
		if r.IntN(8) == 0 {
			n = 40 + r.IntN(60)
		}
		for i := 0; i < n; i++ {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		s := b.String()
		if len(s) > 128 {
			// Cut at a rune boundary.
			s = s[:128]
			for !utf8.ValidString(s) {
				s = s[:len(s)-1]
			}
		}
		if check(s) == nil {
			return s
		}
	}
}

func TestMarshalCanonicalRoundTripProperty(t *testing.T) {
	c := DefaultCatalog()
	r := rand.New(rand.NewPCG(1, 2))
	regions, modes := c.Regions(), c.GameModes()
	edgeIDs := []string{"1", "0", `"`, `\`, `\"`, `"\\"`, "<script>&amp;</script>", "\u2028\u2029",
		"=", "=MQ", strings.Repeat("\\", 128), strings.Repeat(`"`, 128), strings.Repeat("é", 64),
		strings.Repeat("日", 42), "\U0001F600", "a\u00a0b", "\ufeff", "null", "{}", "\x7e"}
	for i := 0; i < 5000; i++ {
		e := Event{
			UserID:   randomID(r),
			Type:     EventType(1 + r.IntN(2)),
			Region:   regions[r.IntN(len(regions))],
			GameMode: modes[r.IntN(len(modes))],
		}
		if i < len(edgeIDs) {
			e.UserID = edgeIDs[i]
		}
		if r.IntN(3) > 0 {
			e.ID = randomEventID(r)
			if i < len(edgeIDs) && CheckEventID(edgeIDs[len(edgeIDs)-1-i]) == nil {
				e.ID = edgeIDs[len(edgeIDs)-1-i]
			}
		}
		switch r.IntN(3) {
		case 0:
			e.Timestamp = time.Unix(r.Int64N(maxTimestamp.Unix()+1), r.Int64N(1e9)).UTC()
		case 1:
			e.Timestamp = time.Unix(r.Int64N(4e9), 0).UTC()
		default:
			e.Timestamp = []time.Time{minTimestamp, maxTimestamp, defaultTS}[r.IntN(3)]
		}
		b := e.MarshalCanonical()
		got, err := c.DecodeEvent(b, testNow)
		if err != nil {
			t.Fatalf("DecodeEvent(MarshalCanonical(%+v)) = %v\nbody %s", e, err, b)
		}
		if !eventsEqual(got, e) {
			t.Fatalf("round trip of %s\n got %+v\nwant %+v", b, got, e)
		}
		if b2 := got.MarshalCanonical(); string(b2) != string(b) {
			t.Fatalf("canonical form not stable:\n%s\n%s", b, b2)
		}
		if !utf8.Valid(b) {
			t.Fatalf("canonical form not UTF-8: %q", b)
		}
	}
}

func TestUserTokenExamples(t *testing.T) {
	b64 := func(s string) string { return "=" + base64.RawURLEncoding.EncodeToString([]byte(s)) }
	tests := []struct{ id, want string }{
		{"1", "1"},
		{"123456789", "123456789"},
		{"abc_DEF-09", "abc_DEF-09"},
		{"-", "-"},
		{"_", "_"},
		{strings.Repeat("a", 64), strings.Repeat("a", 64)},
		{strings.Repeat("a", 65), b64(strings.Repeat("a", 65))},
		{"", "="},
		{"=", b64("=")},
		{"=abc", "=PWFiYw"},
		{"a.b", b64("a.b")},
		{"a b", "=YSBi"},
		{"*", b64("*")},
		{">", b64(">")},
		{"é", "=w6k"},
		{"a/b", b64("a/b")},
		{"\xff\xfe", "=__4"},
	}
	for _, tt := range tests {
		if got := UserToken(tt.id); got != tt.want {
			t.Errorf("UserToken(%q) = %q, want %q", tt.id, got, tt.want)
		}
	}
	if e := (Event{UserID: "a b", Region: "US"}); e.Token() != "=YSBi" {
		t.Errorf("Token = %q", e.Token())
	}
}

func isPlainID(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// legalToken reports whether s is usable both as one NATS subject token and
// as a KV key part: non-empty, characters of [-/_=a-zA-Z0-9] (no '.').
func legalToken(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '/' || c == '_' || c == '=') {
			return false
		}
	}
	return true
}

func TestUserTokenProperty(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const plainAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"
	var ids []string
	seen := map[string]bool{}
	add := func(id string) {
		if !seen[id] {
			seen[id] = true
			ids = append(ids, id)
		}
	}
	for n := 1; n <= 70; n++ {
		add(strings.Repeat("a", n))
		add(strings.Repeat("=", n))
	}
	for i := 0; i < 20000; i++ {
		switch r.IntN(5) {
		case 0: // plain alphabet, lengths around the 64 limit
			n := 1 + r.IntN(70)
			b := make([]byte, n)
			for j := range b {
				b[j] = plainAlphabet[r.IntN(len(plainAlphabet))]
			}
			add(string(b))
		case 1: // ids that look like encoded tokens
			add("=" + base64.RawURLEncoding.EncodeToString([]byte(randomID(r))))
		case 2: // tokens of other ids used as ids, and their decodings
			id := randomID(r)
			add(UserToken(id))
			add(id)
		case 3:
			add(randomID(r))
		default: // arbitrary short byte strings
			b := make([]byte, r.IntN(6))
			for j := range b {
				b[j] = byte(r.IntN(256))
			}
			add(string(b))
		}
	}
	byToken := make(map[string]string, len(ids))
	for _, id := range ids {
		tok := UserToken(id)
		if other, dup := byToken[tok]; dup {
			t.Fatalf("UserToken(%q) = UserToken(%q) = %q", id, other, tok)
		}
		byToken[tok] = id
		if isPlainID(id) {
			if tok != id {
				t.Fatalf("plain id %q got token %q", id, tok)
			}
		} else {
			want := "=" + base64.RawURLEncoding.EncodeToString([]byte(id))
			if tok != want {
				t.Fatalf("UserToken(%q) = %q, want %q", id, tok, want)
			}
		}
		if !legalToken(tok) || strings.Contains(tok, ".") {
			t.Fatalf("UserToken(%q) = %q has characters illegal in a subject token or KV key", id, tok)
		}
		// UserIDFromToken inverts UserToken on valid user ids; for other
		// strings it may refuse, but never names another id.
		back, err := UserIDFromToken(tok)
		if (err != nil && CheckUserID(id) == nil) || (err == nil && back != id) {
			t.Fatalf("UserIDFromToken(UserToken(%q)=%q) = %q, %v", id, tok, back, err)
		}
		if UserToken(id) != tok {
			t.Fatalf("UserToken(%q) not deterministic", id)
		}
	}
}

func TestUserIDFromTokenRejects(t *testing.T) {
	for _, tok := range []string{"", strings.Repeat("a", 65), "a.b", "a b", "*", ">", "é", "=!!", "=a.b", "=A"} {
		if id, err := UserIDFromToken(tok); err == nil {
			t.Errorf("UserIDFromToken(%q) = %q, want error", tok, id)
		} else if v, ok := AsValidationError(err); !ok || v.Code != CodeInvalidUserID {
			t.Errorf("UserIDFromToken(%q) error %v, want code %s", tok, err, CodeInvalidUserID)
		}
	}
}

func fnvPartition(token string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(token))
	return int(h.Sum32() % uint32(n))
}

func TestPartitionOfMatchesFNV1a(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	ns := []int{1, 2, 3, 7, 16, 32, 64, 100, 1000, 1 << 20, 1<<31 - 1}
	tokens := []string{"", "1", "a", "=", "=PWFiYw", strings.Repeat("z", 64), "\xff"}
	for i := 0; i < 5000; i++ {
		tokens = append(tokens, UserToken(randomID(r)))
	}
	for _, tok := range tokens {
		for _, n := range ns {
			p := PartitionOf(tok, n)
			if want := fnvPartition(tok, n); p != want {
				t.Fatalf("PartitionOf(%q, %d) = %d, hash/fnv says %d", tok, n, p, want)
			}
			if p < 0 || p >= n {
				t.Fatalf("PartitionOf(%q, %d) = %d out of range", tok, n, p)
			}
			if PartitionOf(tok, n) != p {
				t.Fatalf("PartitionOf(%q, %d) not stable", tok, n)
			}
		}
	}
	// Golden values: a change of hash would move every player.
	golden := []struct {
		tok  string
		n, p int
	}{
		{"", 32, int(uint32(2166136261) % 32)},
		{"1", 32, fnvPartition("1", 32)},
	}
	for _, g := range golden {
		if got := PartitionOf(g.tok, g.n); got != g.p {
			t.Errorf("PartitionOf(%q, %d) = %d, want %d", g.tok, g.n, got, g.p)
		}
	}
	// Spread: 32 partitions over many tokens, none empty.
	counts := make([]int, 32)
	for i := 0; i < 32000; i++ {
		counts[PartitionOf(UserToken(strings.Repeat("u", 1+i%7)+string(rune('a'+i%26))+itoa(i)), 32)]++
	}
	if slices.Contains(counts, 0) {
		t.Errorf("some partition got no tokens: %v", counts)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

var fuzzNow = time.Date(2030, 6, 7, 8, 9, 10, 11, time.UTC)

func FuzzDecodeEvent(f *testing.F) {
	for _, s := range []string{
		body(),
		body("user_id", `"1"`, "event_id", `"abc"`),
		body("event_type", `"LEAVE_GAME_MODE"`, "timestamp", `1795654800123`),
		body("event_type", `"HEARTBEAT_GAME_MODE"`),
		body("timestamp", `1795654800.5`, "event_payload", payload(`10`, `"SEA"`)),
		body("user_id", `"a\"b\\c<>&\u2028é"`, "timestamp", omit),
		body("timestamp", `"2026-11-26T03:30:00.123456789+02:30"`),
		body("user_id", strings.Repeat("9", 129)),
		body("user_id", `-1`),
		body("user_id", `1e3`),
		body("event_payload", payload(`"1"`, `"us"`)),
		body("timestamp", `"NaN"`),
		body() + `{}`,
		`[]`,
		``,
		`null`,
		"{\"user_id\":\"\xff\"}",
		body("event_id", `"\u0085"`),
	} {
		f.Add([]byte(s))
	}
	c := DefaultCatalog()
	f.Fuzz(func(t *testing.T, b []byte) {
		// DecodeEvent reads the object with Unmarshal: it must take exactly
		// what the streaming decoder (one value, then the end) takes.
		var fast, stream wireEvent
		fastErr := json.Unmarshal(b, &fast)
		dec := json.NewDecoder(bytes.NewReader(b))
		streamErr := dec.Decode(&stream)
		if streamErr == nil {
			if _, err := dec.Token(); err != io.EOF {
				streamErr = errors.New("data after the value")
			}
		}
		if (fastErr == nil) != (streamErr == nil) {
			t.Fatalf("%q: Unmarshal %v, streaming decoder %v", b, fastErr, streamErr)
		}
		if fastErr == nil && !reflect.DeepEqual(fast, stream) {
			t.Fatalf("%q: Unmarshal %+v, streaming decoder %+v", b, fast, stream)
		}
		ev, err := c.DecodeEvent(b, fuzzNow)
		if err != nil {
			ve, ok := err.(*ValidationError)
			if !ok {
				t.Fatalf("error %T %v is not a *ValidationError", err, err)
			}
			if ve.Code == "" || !slices.Contains(allCodes, ve.Code) {
				t.Fatalf("error code %q is not a contract code", ve.Code)
			}
			if ve.Message == "" {
				t.Fatalf("empty message for code %q", ve.Code)
			}
			return
		}
		if CheckUserID(ev.UserID) != nil || (ev.ID != "" && CheckEventID(ev.ID) != nil) {
			t.Fatalf("accepted invalid ids: %+v", ev)
		}
		if _, ok := c.SlotOf(ev.Region, ev.GameMode); !ok {
			t.Fatalf("accepted unconfigured slot: %+v", ev)
		}
		if ev.Type != EventEnter && ev.Type != EventLeave && ev.Type != EventHeartbeat {
			t.Fatalf("accepted event type %d", ev.Type)
		}
		if ev.Timestamp.Before(minTimestamp) || ev.Timestamp.After(maxTimestamp) || ev.Timestamp.Location() != time.UTC {
			t.Fatalf("accepted timestamp %v", ev.Timestamp)
		}
		canon := ev.MarshalCanonical()
		again, err := c.DecodeEvent(canon, fuzzNow.Add(time.Hour))
		if err != nil {
			t.Fatalf("canonical form %s of %q does not decode: %v", canon, b, err)
		}
		if !eventsEqual(again, ev) {
			t.Fatalf("canonical round trip of %q\n got %+v\nwant %+v", b, again, ev)
		}
		if string(again.MarshalCanonical()) != string(canon) {
			t.Fatalf("canonical form not a fixed point: %s", canon)
		}
	})
}

// UserIDFromToken must accept only tokens UserToken produces: otherwise two
// different subject tokens (hashing to different partitions) name one user.
func TestUserIDFromTokenCanonicalOnly(t *testing.T) {
	for _, tok := range []string{
		"=MQ",   // base64url of "1", whose token is "1"
		"=MR",   // non-zero padding bits, decodes to "1" too
		"=",     // the empty id, which is not a valid user id
		"=M\nQ", // base64 decoders skip newlines
		"=YWJj", // "abc", whose token is "abc"
	} {
		if id, err := UserIDFromToken(tok); err == nil {
			t.Errorf("UserIDFromToken(%q) = %q, nil; want an error: UserToken(%q) = %q and CheckUserID = %v, so no valid user has this token",
				tok, id, id, UserToken(id), CheckUserID(id))
		}
	}
}
