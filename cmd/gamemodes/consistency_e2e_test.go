package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"testing"

	"github.com/gamemodes/gamemodes/cmd/internal/proctest"

	"github.com/gamemodes/gamemodes/modules/domain"
)

// getAfter reads a region's lobby list with a consistency token and returns
// the status, the counts by mode and the raw body.
func (p *proc) getAfter(region, token string) (int, map[int]int64, string) {
	p.t.Helper()
	resp, err := http.Get(p.httpURL + "/api/v1/popular_game_modes?region=" + region + "&after=" + url.QueryEscape(token))
	if err != nil {
		p.t.Fatalf("get: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out struct {
		GameModes []domain.ModeCount `json:"game_modes"`
	}
	_ = json.Unmarshal(body, &out)
	counts := map[int]int64{}
	for _, mc := range out.GameModes {
		counts[mc.GameMode] = mc.PlayerCount
	}
	return resp.StatusCode, counts, string(body)
}

// Read-your-writes through the binary: the first lobby read given the
// consistency token of a POST answer already shows that event, every time.
func TestEndToEndReadYourWrites(t *testing.T) {
	p := startProc(t, proctest.FreePort(t), proctest.FreePort(t), t.TempDir())
	p.waitReady()
	tr := truth{}
	post := func(id, user, typ, region string, mode int) string {
		t.Helper()
		code, receipt := p.post(eventBody(id, user, typ, region, mode))
		token, _ := receipt["consistency_token"].(string)
		if code != http.StatusAccepted || token == "" || receipt["duplicate"] != false {
			t.Fatalf("post %s: %d %v", id, code, receipt)
		}
		tr.apply(user, typ, region, mode)
		return token
	}
	expect := func(what, region, token string) {
		t.Helper()
		code, got, body := p.getAfter(region, token)
		if want := tr.counts()[region]; code != http.StatusOK || !equalCounts(got, want) {
			t.Fatalf("%s: first read after its POST: %d %s, want %v", what, code, body, want)
		}
	}
	for i := range 200 {
		user := "ryw-" + strconv.Itoa(i)
		expect(fmt.Sprintf("ENTER %d", i), "US", post("enter-"+user, user, "ENTER_GAME_MODE", "US", 1+i%3))
	}
	// Heartbeats from another region move players there; a retry's token
	// is the first copy's.
	for i := range 50 {
		user := "ryw-" + strconv.Itoa(i)
		token := post("beat-"+user, user, "HEARTBEAT_GAME_MODE", "BR", 7)
		expect(fmt.Sprintf("HEARTBEAT %d", i), "BR", token)
		code, again := p.post(eventBody("beat-"+user, user, "HEARTBEAT_GAME_MODE", "BR", 7))
		if code != http.StatusAccepted || again["duplicate"] != true || again["consistency_token"] != token {
			t.Fatalf("retry of beat-%s: %d %v, want duplicate with token %s", user, code, again, token)
		}
	}
	expect("after the heartbeats", "US", domain.ConsistencyToken{Partition: 0, Seq: 1}.String())
	// A malformed token is refused.
	if code, _, body := p.getAfter("US", "not-a-token"); code != http.StatusBadRequest {
		t.Fatalf("malformed token: %d %s", code, body)
	}
}
