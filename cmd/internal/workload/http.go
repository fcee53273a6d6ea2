package workload

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// Paths of the HTTP contract.
const (
	PathEvent   = "/api/v1/event"
	PathPopular = "/api/v1/popular_game_modes?region="
)

// HTTPTarget is a keep-alive HTTP client of the service's edge.
type HTTPTarget struct {
	client *fasthttp.HostClient
	base   string // scheme://host:port
	auth   string // Authorization header value, or empty
}

// NewHTTPTarget returns a client of baseURL with up to conns connections,
// sending token (when not empty) as a bearer token.
func NewHTTPTarget(baseURL, token string, conns int, timeout time.Duration) (*HTTPTarget, error) {
	u, err := url.Parse(baseURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("http url %q: want http://host:port", baseURL)
	}
	addr := u.Host
	switch {
	case u.Port() != "":
	case u.Scheme == "https":
		addr += ":443"
	default:
		addr += ":80"
	}
	auth := ""
	if token != "" {
		auth = "Bearer " + token
	}
	return &HTTPTarget{
		base: u.Scheme + "://" + u.Host,
		auth: auth,
		client: &fasthttp.HostClient{
			Addr:                      addr,
			IsTLS:                     u.Scheme == "https",
			MaxConns:                  conns,
			MaxConnWaitTimeout:        timeout,
			ReadTimeout:               timeout,
			WriteTimeout:              timeout,
			MaxIdemponentCallAttempts: 1, // the loadgen retries itself and counts every failure
			NoDefaultUserAgentHeader:  true,
		},
	}, nil
}

// Post sends one event body. It returns the status (0 with err on a
// transport failure), whether the answer says the event was a duplicate of
// one stored before, and the Retry-After delay the service asked for; when
// token is not nil it receives the answer's consistency_token.
func (t *HTTPTarget) Post(body []byte, token *string) (status int, duplicate bool, retryAfter time.Duration, err error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(t.base + PathEvent)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	t.authorize(req)
	if err := t.client.Do(req, resp); err != nil {
		return 0, false, 0, err
	}
	if s, err := strconv.Atoi(string(resp.Header.Peek("Retry-After"))); err == nil && s > 0 {
		retryAfter = time.Duration(s) * time.Second
	}
	duplicate = bytes.Contains(resp.Body(), []byte(`"duplicate":true`))
	if token != nil {
		*token = ConsistencyToken(resp.Body())
	}
	return resp.StatusCode(), duplicate, retryAfter, nil
}

// ConsistencyToken returns the consistency_token of a POST answer, "" when
// it has none.
func ConsistencyToken(body []byte) string {
	var a struct {
		Token string `json:"consistency_token"`
	}
	if json.Unmarshal(body, &a) != nil {
		return ""
	}
	return a.Token
}

// Get fetches a lobby list and returns the status and a copy of the body
// when keepBody is set.
func (t *HTTPTarget) Get(regionQuery string, keepBody bool) (int, []byte, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(t.base + PathPopular + regionQuery)
	t.authorize(req)
	if err := t.client.Do(req, resp); err != nil {
		return 0, nil, err
	}
	var body []byte
	if keepBody {
		body = append([]byte(nil), resp.Body()...)
	}
	return resp.StatusCode(), body, nil
}

// authorize adds the bearer token, if any.
func (t *HTTPTarget) authorize(req *fasthttp.Request) {
	if t.auth != "" {
		req.Header.Set(fasthttp.HeaderAuthorization, t.auth)
	}
}

// lobbyList is the answer of GET /api/v1/popular_game_modes.
type lobbyList struct {
	Region    string `json:"region"`
	GameModes []struct {
		GameMode    int   `json:"game_mode"`
		PlayerCount int64 `json:"player_count"`
	} `json:"game_modes"`
}

// Lobby returns a region's lobby list as counts by game mode, checking the
// contract's form: the right region, sorted by count desc then mode asc, no
// zero counts, no mode twice.
func (t *HTTPTarget) Lobby(region string) (map[int]int64, error) {
	status, body, err := t.Get(url.QueryEscape(region), true)
	if err != nil {
		return nil, err
	}
	if status != fasthttp.StatusOK {
		return nil, fmt.Errorf("GET lobby %s: status %d: %s", region, status, truncate(body, 200))
	}
	return ParseLobby(region, body)
}

// ParseLobby decodes and checks a lobby list body.
func ParseLobby(region string, body []byte) (map[int]int64, error) {
	var l lobbyList
	if err := json.Unmarshal(body, &l); err != nil {
		return nil, fmt.Errorf("lobby %s: %v", region, err)
	}
	if l.Region != region {
		return nil, fmt.Errorf("lobby %s: answer is for region %q", region, l.Region)
	}
	out := make(map[int]int64, len(l.GameModes))
	for i, m := range l.GameModes {
		if m.PlayerCount <= 0 {
			return nil, fmt.Errorf("lobby %s: mode %d listed with %d players", region, m.GameMode, m.PlayerCount)
		}
		if _, dup := out[m.GameMode]; dup {
			return nil, fmt.Errorf("lobby %s: mode %d listed twice", region, m.GameMode)
		}
		if i > 0 {
			p := l.GameModes[i-1]
			if p.PlayerCount < m.PlayerCount || p.PlayerCount == m.PlayerCount && p.GameMode > m.GameMode {
				return nil, errors.New("lobby " + region + ": not sorted by player count desc, game mode asc")
			}
		}
		out[m.GameMode] = m.PlayerCount
	}
	return out, nil
}

// ErrorKey names a transport failure for the errors map.
func ErrorKey(prefix string, err error) string {
	switch {
	case errors.Is(err, fasthttp.ErrTimeout):
		return prefix + ":timeout"
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return prefix + ":no_free_conns"
	case errors.Is(err, fasthttp.ErrConnectionClosed):
		return prefix + ":conn_closed"
	}
	return prefix + ":conn_error"
}

// truncate returns at most n bytes of b as a string.
func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
