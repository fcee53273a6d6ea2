// Command healthcheck probes an HTTP endpoint for container healthchecks:
// the gamemodes image is distroless (no shell, no curl), so compose.yaml and
// the Dockerfile's HEALTHCHECK run this instead.
//
//	healthcheck [URL]
//
// It exits 0 when URL answers 2xx within 3 seconds, 1 otherwise. Without URL
// it probes /readyz on the port of GAMEMODES_HTTP_ADDR (default :8080) on
// the loopback interface.
package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

func main() {
	url := defaultURL(os.Getenv("GAMEMODES_HTTP_ADDR"))
	if len(os.Args) > 1 {
		url = os.Args[1]
	}
	if err := probe(url, 3*time.Second); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

// defaultURL is the readiness URL of a process listening on addr.
func defaultURL(addr string) string {
	port := "8080"
	if _, p, err := net.SplitHostPort(addr); err == nil && p != "" {
		port = p
	}
	return "http://127.0.0.1:" + port + "/readyz"
}

func probe(url string, timeout time.Duration) error {
	client := &http.Client{Timeout: timeout}
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%s: %s %s", url, resp.Status, body)
	}
	return nil
}
