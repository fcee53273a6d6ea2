// Package embedded runs a nats-server with JetStream inside the gamemodes
// process, for the single-binary mode.
package embedded

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Options configure the embedded server.
type Options struct {
	// Listen is the client address, host:port ("127.0.0.1:4222"); port 0 or -1 picks a free one.
	Listen string
	// DataDir holds the JetStream file store (under DataDir/jetstream).
	DataDir string
	// ServerName names the server; default "gamemodes-embedded".
	ServerName string
	// ConfigFile, if set, is a nats-server configuration file applied first (accounts, users).
	ConfigFile string
	// Logger receives the server's log lines; nil discards them.
	Logger *slog.Logger
	// TLSCert and TLSKey, if set, make the client port require TLS with
	// this certificate and key (PEM); TLSCA, if set too, makes it require a
	// client certificate signed by one of its CAs (mutual TLS).
	TLSCert, TLSKey, TLSCA string
}

// Atomic batch limits gamemodes needs of a nats-server: the partition owners
// keep one fenced batch of player writes open per partition (two for a
// moment in a takeover), of at most 500 players.
const (
	// BatchMaxMsgs is the most messages in one atomic batch.
	BatchMaxMsgs = 1000
	// BatchMaxOpenPerStream is the most batches open at once on one
	// stream: room for the largest partition count (1024) twice.
	BatchMaxOpenPerStream = 2048
	// BatchMaxOpenTotal is the most batches open at once on the server.
	BatchMaxOpenTotal = 4096
)

// SetBatchLimits raises the server's atomic batch limits (jetstream {
// limits { batch { ... } } }) to what gamemodes needs, where a configuration
// file did not set them.
func SetBatchLimits(opts *server.Options) {
	l := &opts.JetStreamLimits
	if l.MaxBatchSize == 0 {
		l.MaxBatchSize = BatchMaxMsgs
	}
	if l.MaxBatchInflightPerStream == 0 {
		l.MaxBatchInflightPerStream = BatchMaxOpenPerStream
	}
	if l.MaxBatchInflightTotal == 0 {
		l.MaxBatchInflightTotal = BatchMaxOpenTotal
	}
}

// ErrTLS means the TLS files of the client port cannot be used.
var ErrTLS = errors.New("cannot serve TLS")

// ErrListen means the client address could not be bound.
var ErrListen = errors.New("cannot listen")

// Start starts the server and waits until it accepts connections. A
// client in the same process connects with nats.InProcessServer, which
// needs no TLS even when the client port requires it.
func Start(o Options) (*server.Server, error) {
	host, portStr, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: address %q: %w", o.Listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: port %q: %w", portStr, err)
	}
	opts := &server.Options{}
	if o.ConfigFile != "" {
		if opts, err = server.ProcessConfigFile(o.ConfigFile); err != nil {
			return nil, fmt.Errorf("embedded nats: config %s: %w", o.ConfigFile, err)
		}
	}
	opts.ServerName = o.ServerName
	if opts.ServerName == "" {
		opts.ServerName = "gamemodes-embedded"
	}
	opts.Host = host
	opts.Port = port
	if port == 0 {
		opts.Port = -1
	}
	opts.JetStream = true
	opts.StoreDir = filepath.Join(o.DataDir, "jetstream")
	opts.NoSigs = true
	opts.MaxPayload = 1 << 20
	SetBatchLimits(opts)
	if o.TLSCert != "" || o.TLSKey != "" || o.TLSCA != "" {
		if o.TLSCert == "" || o.TLSKey == "" {
			return nil, fmt.Errorf("embedded nats: %w: a certificate and its key are both needed", ErrTLS)
		}
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: o.TLSCert, KeyFile: o.TLSKey, CaFile: o.TLSCA, Verify: o.TLSCA != ""})
		if err != nil {
			return nil, fmt.Errorf("embedded nats: %w: %w", ErrTLS, err)
		}
		opts.TLSConfig, opts.TLS, opts.TLSVerify = tc, true, o.TLSCA != ""
		opts.TLSTimeout = 2 // seconds
	}

	if opts.Port > 0 {
		// nats-server reports a busy port only in its log; check first for a clear error.
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(opts.Port)))
		if err != nil {
			return nil, fmt.Errorf("embedded nats: %w %s: %w", ErrListen, o.Listen, err)
		}
		_ = l.Close()
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if o.Logger != nil {
		ns.SetLoggerV2(slogAdapter{o.Logger.With("component", "nats-server")}, false, false, false)
	}
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, fmt.Errorf("embedded nats: %w %s: server not ready", ErrListen, o.Listen)
	}
	return ns, nil
}

// slogAdapter routes nats-server logs to slog. Fatalf is logged as an error
// and never exits the process.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(f string, v ...any) { a.l.Info(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Warnf(f string, v ...any)   { a.l.Warn(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Fatalf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...), "fatal", true) }
func (a slogAdapter) Errorf(f string, v ...any)  { a.l.Error(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Debugf(f string, v ...any)  { a.l.Debug(fmt.Sprintf(f, v...)) }
func (a slogAdapter) Tracef(f string, v ...any)  { a.l.Debug(fmt.Sprintf(f, v...)) }
