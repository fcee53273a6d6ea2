package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gamemodes/gamemodes/cmd/internal/proctest"

	"github.com/chromedp/chromedp"
)

// chromePath finds a Chromium or Chrome binary: GAMEMODES_CHROME, then the
// usual names on PATH. Empty when there is none.
func chromePath() string {
	if p := os.Getenv("GAMEMODES_CHROME"); p != "" {
		return p
	}
	for _, name := range []string{"/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// Size of the browser's viewport, and so of the screenshot.
const (
	shotWidth  = 1280
	shotHeight = 1680
)

// TestOpsPageInHeadlessChromium runs the binary (every role, embedded NATS,
// no Postgres: the archiver only holds its consumer), opens the operations
// page in headless Chromium and checks it with no players (the charts' axes,
// the archive said to be off), posts events and waits until the page shows
// what was posted, the partition owners and the archive lag; it checks a
// screenshot, then kills the process and waits for the page to say it is
// disconnected. GAMEMODES_UPDATE_SCREENSHOT=1 also writes docs/ops-page.png.
func TestOpsPageInHeadlessChromium(t *testing.T) {
	chrome := chromePath()
	if chrome == "" {
		t.Skip("no Chromium found (/usr/bin/chromium, chromium, chromium-browser, google-chrome or GAMEMODES_CHROME): apt-get install chromium")
	}
	p := startProc(t, proctest.FreePort(t), proctest.FreePort(t), t.TempDir(), "--instance-id", "ops-e2e")
	p.waitReady()

	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chrome),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.Flag("force-color-profile", "srgb"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(shotWidth, shotHeight),
	)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelT := context.WithTimeout(ctx, 150*time.Second)
	defer cancelT()

	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(shotWidth, shotHeight),
		chromedp.Navigate(p.httpURL+"/#US"),
	); err != nil {
		t.Fatalf("open the page in %s: %v", chrome, err)
	}
	// Before any event: the page is live; with no players the charts' axes
	// read 1 and 0 (whole numbers, none twice), and the archive, with no
	// --postgres-url, says it is off.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.getElementById('conn-state').textContent === 'live'
		&& document.getElementById('total-players').textContent === '0'
		&& document.querySelectorAll('#lag-chart rect.lagbar').length === 8`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the page did not come up: %v\n%s", err, pageText(ctx))
	}
	for _, check := range []struct{ js, want string }{
		{axisTicks("mode-chart"), "1, 0"},
		{axisTicks("lag-chart"), "1, 0"},
		{`document.getElementById('archive-note').textContent`, "archive off (no --postgres-url) · events wait in the stream"},
		{`String(document.getElementById('archive-off').hidden)`, "false"},
	} {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](check.js))
		if err != nil || got != check.want {
			t.Errorf("no players: %s = %q (%v), want %q", check.js, got, err, check.want)
		}
	}

	// Players per region and mode: US mode m has 60/m players, EU and BR fewer.
	tr := truth{}
	var bodies []string
	for ri, region := range []string{"US", "EU", "BR"} {
		for m := 1; m <= 10; m++ {
			n := (60 * (10 - 3*ri) / 10) / m
			for i := range n {
				user := fmt.Sprintf("%s-%d-%d", region, m, i)
				bodies = append(bodies, eventBody("ev-"+user, user, "ENTER_GAME_MODE", region, m))
				tr.apply(user, "ENTER_GAME_MODE", region, m)
			}
		}
	}
	accepted := len(bodies)
	// Posted in four waves, each after the edge's next rate sample, so the
	// ingest rate chart has a shape.
	const waves = 4
	for w := range waves {
		var wg sync.WaitGroup
		work := make(chan string)
		for range 8 {
			wg.Go(func() {
				for b := range work {
					if code, out := p.post(b); code != 202 {
						t.Errorf("post: %d %v", code, out)
					}
				}
			})
		}
		for i := w; i < len(bodies); i += waves {
			work <- bodies[i]
		}
		close(work)
		wg.Wait()
		p.waitRateSample()
	}
	// Three bad events: rejected, stored nowhere.
	for range 3 {
		if code, _ := p.post(`{"user_id":1,"event_type":"ENTER_GAME_MODE","event_payload":{"game_mode":1,"region":"XX"}}`); code != 400 {
			t.Fatalf("bad event: %d", code)
		}
	}
	want := tr.counts()
	p.waitPopular(want, 20*time.Second)
	var total int64
	for _, byMode := range want {
		for _, n := range byMode {
			total += n
		}
	}

	// The page is live and shows every count, every partition owned by this
	// process, and the archive lag: every accepted event waits for the archiver.
	ready := fmt.Sprintf(`document.getElementById('conn-state').textContent === 'live'
		&& document.querySelector('td[data-region="US"][data-mode="1"]')?.textContent === '%d'
		&& document.getElementById('total-players').textContent === '%d'
		&& document.querySelectorAll('#partition-grid .part[data-owner="ops-e2e"]').length === 8
		&& document.getElementById('archive-lag').textContent === '%d'`, want["US"][1], total, accepted)
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](ready, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("the page did not show the posted events: %v\n%s", err, pageText(ctx))
	}
	for _, check := range []struct{ js, want string }{
		{`document.querySelector('#mode-chart text.value[data-mode="1"]').textContent`, fmt.Sprint(want["US"][1])},
		{`document.querySelector('#mode-chart text.value[data-mode="10"]').textContent`, fmt.Sprint(want["US"][10])},
		{`document.querySelector('td[data-region="EU"][data-mode="2"]').textContent`, fmt.Sprint(want["EU"][2])},
		{`document.querySelector('td.total[data-region="BR"]').textContent`, fmt.Sprint(sum(want["BR"]))},
		{`document.getElementById('region-select').value`, "US"},
		{`document.getElementById('instance-id').textContent`, "ops-e2e"},
		{`document.getElementById('stream-msgs').textContent`, fmt.Sprint(accepted)},
		{`document.getElementById('workers-count').textContent`, "1"},
		{`document.getElementById('workers-note').textContent`, "8 of 8 partitions owned"},
		{`String(document.querySelectorAll('#lag-chart rect.lagbar').length)`, "8"},
		{`String(document.getElementById('banner').hidden)`, "true"},
		// US mode 1 has the most players, 60: the axis goes to 100 in whole steps.
		{axisTicks("mode-chart"), "100, 75, 50, 25, 0"},
		{`document.getElementById('archive-note').textContent`, "archive off (no --postgres-url) · events wait in the stream"},
	} {
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](check.js))
		if err != nil || got != check.want {
			t.Errorf("%s = %q (%v), want %q", check.js, got, err, check.want)
		}
	}
	// Every partition shows its durable lag, 0 once the player writes are persisted.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`[...document.querySelectorAll('#partition-grid .part .durable')].filter((d) => d.textContent === 'durable lag 0').length === 8`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("the partitions do not each show a durable lag of 0: %v\n%s", err, pageText(ctx))
	}
	// The rate chart has a line once two samples saw the events.
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](`document.querySelector('#rate-chart polyline.accepted') !== null`,
		chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(10*time.Second))); err != nil {
		t.Errorf("no ingest rate line: %v", err)
	}

	shot, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	chart, err := chromedp.Run(ctx, chromedp.Evaluate[rect](`(() => { const r = document.getElementById('mode-chart').getBoundingClientRect(); return {x: r.x, y: r.y, w: r.width, h: r.height}; })()`))
	if err != nil {
		t.Fatal(err)
	}
	checkScreenshot(t, shot, chart)
	path := filepath.Join(t.TempDir(), "ops-page.png")
	if err := os.WriteFile(path, shot, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	if os.Getenv("GAMEMODES_UPDATE_SCREENSHOT") == "1" {
		_, file, _, _ := runtime.Caller(0)
		docs := filepath.Join(filepath.Dir(file), "..", "..", "docs", "ops-page.png")
		if err := os.WriteFile(docs, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot written to %s", docs)
	}

	// The process dies: the page says it is disconnected, and since when.
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.exited
	disconnected := `document.getElementById('conn-state').textContent === 'disconnected'
		&& document.body.classList.contains('disconnected')
		&& !document.getElementById('banner').hidden
		&& document.getElementById('banner').textContent.startsWith('Disconnected: ')`
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](disconnected, chromedp.WithPollingInterval(100*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		t.Fatalf("the page did not show the outage: %v\n%s", err, pageText(ctx))
	}
	// The last figures stay on the page, marked as not live.
	if got, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.getElementById('total-players').textContent`)); err != nil || got != fmt.Sprint(total) {
		t.Errorf("total after the outage %q (%v), want %d", got, err, total)
	}
}

// waitRateSample waits until the ops status has a rate sample newer than
// when it was called.
func (p *proc) waitRateSample() {
	p.t.Helper()
	lastAt := func() string {
		resp, err := http.Get(p.httpURL + "/api/v1/ops/status")
		if err != nil {
			p.t.Fatalf("ops status: %v", err)
		}
		defer resp.Body.Close()
		var st struct {
			Ingest struct {
				Rates []struct {
					At string `json:"at"`
				} `json:"rates"`
			} `json:"ingest"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || resp.StatusCode != 200 {
			p.t.Fatalf("ops status: %d %v", resp.StatusCode, err)
		}
		if n := len(st.Ingest.Rates); n > 0 {
			return st.Ingest.Rates[n-1].At
		}
		return ""
	}
	before := lastAt()
	deadline := time.Now().Add(10 * time.Second)
	for lastAt() == before {
		if time.Now().After(deadline) {
			p.t.Fatal("no new ingest rate sample within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type rect struct {
	X float64 `json:"x"`
	Y float64 `json:"y"`
	W float64 `json:"w"`
	H float64 `json:"h"`
}

func sum(m map[int]int64) int64 {
	var s int64
	for _, n := range m {
		s += n
	}
	return s
}

// checkScreenshot asserts the screenshot is a PNG of the viewport's size,
// is not blank, and has the bars of the mode chart drawn (pixels of the
// bar color, #0284c7, inside the chart).
func checkScreenshot(t *testing.T, shot []byte, chart rect) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(shot))
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() != shotWidth || b.Dy() != shotHeight {
		t.Fatalf("screenshot is %dx%d, want %dx%d", b.Dx(), b.Dy(), shotWidth, shotHeight)
	}
	colors := map[[3]uint32]bool{}
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colors[[3]uint32{r >> 8, g >> 8, bl >> 8}] = true
		}
	}
	if len(colors) < 64 {
		t.Fatalf("screenshot has %d distinct colors: blank?", len(colors))
	}
	area := image.Rect(int(chart.X), int(chart.Y), int(chart.X+chart.W), int(chart.Y+chart.H)).Intersect(b)
	bars := 0
	for y := area.Min.Y; y < area.Max.Y; y++ {
		for x := area.Min.X; x < area.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			if near(r>>8, 0x02) && near(g>>8, 0x84) && near(bl>>8, 0xc7) {
				bars++
			}
		}
	}
	if area.Empty() || bars < 2000 {
		t.Fatalf("mode chart at %+v has %d bar pixels, want at least 2000", chart, bars)
	}
}

func near(v, want uint32) bool { return v+12 >= want && v <= want+12 }

// axisTicks is the JavaScript giving the y axis labels of the chart with
// id, top to bottom, comma-separated.
func axisTicks(id string) string {
	return `[...document.querySelectorAll('#` + id + ` text.tick')].sort((a, b) => a.getAttribute('y') - b.getAttribute('y')).map((t) => t.textContent).join(', ')`
}

// pageText is the page's visible text, for failure messages.
func pageText(ctx context.Context) string {
	s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
	if err != nil {
		return "(page text unavailable: " + err.Error() + ")"
	}
	return s
}
