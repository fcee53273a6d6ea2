package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/adapters/httpapi"
	jsadapter "github.com/gamemodes/gamemodes/adapters/jetstream"
	"github.com/gamemodes/gamemodes/modules/domain"
	"github.com/gamemodes/gamemodes/modules/ingest"
	"github.com/gamemodes/gamemodes/modules/lobby"
	"github.com/gamemodes/gamemodes/nats/natstest"
	"github.com/gamemodes/gamemodes/nats/topology"
	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// FuzzPostEvent posts arbitrary bodies, content types and bearer tokens to
// two edges over a real embedded JetStream server: one open, one requiring a
// token (a player token for user "1" is the seeds' valid one). Every answer
// must be 202 or a JSON error; no 5xx but 503; and a 202 only for a body the
// domain accepts (and, with authentication, only for a token that verifies
// and may report for the body's user).
func FuzzPostEvent(f *testing.F) {
	ns := natstest.RunServer(f)
	_, js := natstest.Connect(f, ns.ClientURL())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := topology.Ensure(ctx, js, topology.Config{}); err != nil {
		f.Fatalf("ensure topology: %v", err)
	}
	catalog := domain.DefaultCatalog()
	svc := ingest.NewService(catalog, jsadapter.NewEventPublisher(js), ingest.NewMetrics(prometheus.NewRegistry()))
	view := lobby.NewView(catalog, nil)
	open := httpapi.New(httpapi.Config{}, httpapi.Deps{Events: svc, Lobby: view})

	secretFile := filepath.Join(f.TempDir(), "secret")
	if err := os.WriteFile(secretFile, []byte(testSecret), 0o600); err != nil {
		f.Fatal(err)
	}
	auth, err := httpapi.NewAuthenticator(httpapi.AuthConfig{SecretFile: secretFile})
	if err != nil {
		f.Fatal(err)
	}
	guarded := httpapi.New(httpapi.Config{Auth: auth}, httpapi.Deps{Events: svc, Lobby: view})
	now := time.Now()
	player, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "1", "iat": now.Unix(), "exp": now.Add(24 * time.Hour).Unix(),
	}).SignedString([]byte(testSecret))
	if err != nil {
		f.Fatal(err)
	}

	const ct = "application/json"
	for _, s := range []struct {
		contentType, body, token string
	}{
		{ct, event(nil), player},
		{ct, event(set("user_id", "1")), player},
		{ct, event(set("user_id", 2)), player},
		{ct, event(del("event_id")), ""},
		{ct, event(set("timestamp", 1764118800000)), player},
		{ct, event(set("event_type", "LEAVE_GAME_MODE")), "not.a.token"},
		{ct, event(setPayload("region", "XX")), player},
		{ct, `{"user_id":1,"user_id":"2","event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"US"}}`, player},
		{ct, `{"USER_ID":"1","event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"US"}}`, player},
		{ct, `{"user_id":`, player},
		{ct, `[]`, ""},
		{ct, "", player},
		{"application/json; charset=utf-8", event(set("user_id", "spieler-ü")), player},
		{"text/plain", event(nil), player},
		{"application/json; =", event(nil), player},
		{ct, "{\"user_id\":\"\xff\"}", player},
	} {
		f.Add(s.contentType, []byte(s.body), s.token)
	}

	f.Fuzz(func(t *testing.T, contentType string, body []byte, token string) {
		if len(body) > httpapi.DefaultBodyLimit-1024 {
			t.Skip("beyond the body limit (refused by the HTTP server before any handler)")
		}
		ev, decodeErr := catalog.DecodeEvent(body, time.Now())
		check := func(srv *httpapi.Server, authorization string, may func() bool) {
			req, err := http.NewRequest(http.MethodPost, httpapi.PathEvent, strings.NewReader(string(body)))
			if err != nil {
				t.Fatal(err)
			}
			req.Header.Set("Content-Type", contentType)
			if authorization != "" {
				req.Header.Set("Authorization", authorization)
			}
			res, err := srv.App().Test(req, -1)
			if err != nil {
				t.Fatalf("app.Test: %v", err)
			}
			defer res.Body.Close()
			answer, err := io.ReadAll(res.Body)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case res.StatusCode == http.StatusAccepted:
				if decodeErr != nil {
					t.Fatalf("202 %s for a body the domain refuses (%v): %q", answer, decodeErr, body)
				}
				if !may() {
					t.Fatalf("202 %s for user %q with Authorization %q", answer, ev.UserID, authorization)
				}
				var receipt ingest.Receipt
				if err := json.Unmarshal(answer, &receipt); err != nil || receipt.EventID == "" || (ev.ID != "" && receipt.EventID != ev.ID) {
					t.Fatalf("202 with receipt %s for event_id %q (%v)", answer, ev.ID, err)
				}
			case res.StatusCode >= 500 && res.StatusCode != http.StatusServiceUnavailable:
				t.Fatalf("status %d %s for %q", res.StatusCode, answer, body)
			default:
				var e struct {
					Error *struct {
						Code    *string `json:"code"`
						Message *string `json:"message"`
					} `json:"error"`
				}
				if err := json.Unmarshal(answer, &e); err != nil || e.Error == nil || e.Error.Code == nil || *e.Error.Code == "" || e.Error.Message == nil {
					t.Fatalf("status %d with body %q: not a JSON error (%v)", res.StatusCode, answer, err)
				}
				if res.StatusCode == http.StatusServiceUnavailable && res.Header.Get("Retry-After") == "" {
					t.Fatalf("503 without Retry-After")
				}
			}
		}
		check(open, "", func() bool { return true })
		check(guarded, "Bearer "+token, func() bool {
			claims, err := auth.Verify(token)
			return err == nil && claims.MayReportFor(ev.UserID)
		})
	})
}
