package main

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestDefaultURL(t *testing.T) {
	for addr, want := range map[string]string{
		"":               "http://127.0.0.1:8080/readyz",
		":9090":          "http://127.0.0.1:9090/readyz",
		"0.0.0.0:8081":   "http://127.0.0.1:8081/readyz",
		"127.0.0.1:7000": "http://127.0.0.1:7000/readyz",
	} {
		if got := defaultURL(addr); got != want {
			t.Errorf("defaultURL(%q) = %q, want %q", addr, got, want)
		}
	}
}

func TestProbe(t *testing.T) {
	status := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(status) }))
	defer srv.Close()
	if err := probe(srv.URL, time.Second); err != nil {
		t.Fatalf("200: %v", err)
	}
	status = http.StatusServiceUnavailable
	if err := probe(srv.URL, time.Second); err == nil {
		t.Fatal("503 reported healthy")
	}
	srv.Close()
	if err := probe(srv.URL, time.Second); err == nil {
		t.Fatal("closed server reported healthy")
	}
}
