package main

import (
	"bufio"
	"io"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/cmd/internal/proctest"

	"github.com/nats-io/nats.go"
)

// TestEndToEndPushOverSSEAndNATS runs the binary: a Server-Sent Events
// client and a NATS subscriber both get the current list and then the list
// after an event, with the same version; SIGTERM ends the open stream
// cleanly and the process exits 0.
func TestEndToEndPushOverSSEAndNATS(t *testing.T) {
	p := startProc(t, proctest.FreePort(t), proctest.FreePort(t), t.TempDir())
	p.waitReady()

	nc, err := nats.Connect(p.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	published, err := nc.SubscribeSync("gamemodes.popular.US")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	res, err := http.Get(p.httpURL + "/api/v1/popular_game_modes/stream?region=US")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("stream: %d %s", res.StatusCode, res.Header.Get("Content-Type"))
	}
	type message struct {
		id   uint64
		data string
	}
	messages := make(chan message, 100)
	ended := make(chan error, 1)
	go func() {
		r := bufio.NewReader(res.Body)
		var m message
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				ended <- err
				return
			}
			switch line = strings.TrimSuffix(line, "\n"); {
			case strings.HasPrefix(line, "id: "):
				m.id, _ = strconv.ParseUint(strings.TrimPrefix(line, "id: "), 10, 64)
			case strings.HasPrefix(line, "data: "):
				m.data = strings.TrimPrefix(line, "data: ")
			case line == "" && m.data != "":
				messages <- m
				m = message{}
			}
		}
	}()
	nextSSE := func() message {
		t.Helper()
		select {
		case m := <-messages:
			return m
		case <-time.After(20 * time.Second):
			t.Fatal("no stream message")
			return message{}
		}
	}
	if m := nextSSE(); m.data != `{"region":"US","game_modes":[]}` {
		t.Fatalf("first stream message %+v", m)
	}

	if status, body := p.post(eventBody("push-1", "7", "ENTER_GAME_MODE", "US", 3)); status != 202 {
		t.Fatalf("post: %d %v", status, body)
	}
	want := `{"region":"US","game_modes":[{"game_mode":3,"player_count":1}]}`
	m := nextSSE()
	if m.data != want {
		t.Fatalf("stream after the event: %+v", m)
	}
	// The NATS subscriber gets the same list (perhaps after the empty list
	// published when this edge took the publisher lease).
	for {
		msg, err := published.NextMsg(20 * time.Second)
		if err != nil {
			t.Fatalf("no list on gamemodes.popular.US: %v", err)
		}
		if string(msg.Data) != want {
			continue
		}
		if v := msg.Header.Get("Gamemodes-Version"); v != strconv.FormatUint(m.id, 10) {
			t.Fatalf("NATS version %s, stream id %d", v, m.id)
		}
		break
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ended:
		if err != io.EOF {
			t.Fatalf("stream ended with %v, want a clean end", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("stream still open after SIGTERM")
	}
	select {
	case <-p.exited:
		if p.exitCode != 0 {
			t.Fatalf("exit code %d after SIGTERM:\n%s", p.exitCode, p.log.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit after SIGTERM")
	}
}
