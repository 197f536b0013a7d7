package etcdkv

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/nolaproject/nola/registry/kv"
)

// ClientConfig configures a connection to an external etcd cluster.
type ClientConfig struct {
	// Endpoints are the members' client URLs (http://host:port, or
	// https://… with TLS).
	Endpoints []string
	// CAFile, CertFile and KeyFile enable TLS: the CA that signed the
	// members' certificates, and an optional client certificate and key.
	CAFile, CertFile, KeyFile string
	// Username and Password authenticate to etcd when set.
	Username, Password string
	// StartupTimeout bounds Open's first round trip: a cluster that does
	// not answer (no endpoint reachable, no quorum) fails Open with
	// kv.ErrUnavailable after that long. Default 10s.
	StartupTimeout time.Duration
	// KeepAliveTime and KeepAliveTimeout are the gRPC connection
	// keep-alives that detect a hung member; defaults 5s and 3s.
	KeepAliveTime, KeepAliveTimeout time.Duration

	Options
}

// Open connects to an external etcd cluster and checks, within
// StartupTimeout, that it answers a linearizable read.
func Open(ctx context.Context, cfg ClientConfig) (*Store, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, fmt.Errorf("etcdkv: open: no endpoints: %w", kv.ErrInvalid)
	}
	cc := clientv3.Config{
		Endpoints:            cfg.Endpoints,
		Username:             cfg.Username,
		Password:             cfg.Password,
		DialKeepAliveTime:    cfg.KeepAliveTime,
		DialKeepAliveTimeout: cfg.KeepAliveTimeout,
	}
	if cc.DialKeepAliveTime <= 0 {
		cc.DialKeepAliveTime = 5 * time.Second
	}
	if cc.DialKeepAliveTimeout <= 0 {
		cc.DialKeepAliveTimeout = 3 * time.Second
	}
	if cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != "" {
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		cc.TLS = tc
	}
	return connect(ctx, cc, cfg.Options, cfg.StartupTimeout, nil)
}

// tlsConfig loads the TLS files. Its errors name which file failed, not
// where it is.
func tlsConfig(cfg ClientConfig) (*tls.Config, error) {
	if (cfg.CertFile == "") != (cfg.KeyFile == "") {
		return nil, fmt.Errorf("etcdkv: TLS: a client certificate needs both CertFile and KeyFile: %w", kv.ErrInvalid)
	}
	for _, f := range []struct{ what, path string }{{"CA", cfg.CAFile}, {"certificate", cfg.CertFile}, {"key", cfg.KeyFile}} {
		if f.path == "" {
			continue
		}
		if _, err := os.ReadFile(f.path); err != nil {
			return nil, fmt.Errorf("etcdkv: TLS: cannot read the %s file: %w", f.what, pathErr(err))
		}
	}
	info := transport.TLSInfo{CertFile: cfg.CertFile, KeyFile: cfg.KeyFile, TrustedCAFile: cfg.CAFile}
	tc, err := info.ClientConfig()
	if err != nil {
		// Readable but not usable: a bad PEM, a key that does not match.
		return nil, fmt.Errorf("etcdkv: TLS: the CA, certificate or key file is not valid: %w", pathErr(err))
	}
	return tc, nil
}

// connect creates the client and proves the cluster answers.
func connect(ctx context.Context, cc clientv3.Config, opts Options, startup time.Duration, onClose func() error) (*Store, error) {
	opts = opts.withDefaults()
	if startup <= 0 {
		startup = 10 * time.Second
	}
	cc.DialOptions = append(cc.DialOptions, clientDialOptions()...)
	cc.Logger = opts.Logger
	// The client retries failed reads by itself until the request's
	// deadline; a few quick retries ride out a cut connection, while a
	// cluster without quorum fails reads at once and the caller decides.
	if cc.MaxUnaryRetries == 0 {
		cc.MaxUnaryRetries = 3
	}
	cc.Context = context.WithoutCancel(ctx)
	if cc.DialTimeout <= 0 {
		cc.DialTimeout = startup
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcdkv: open: %w", pathErr(err))
	}
	s := newStore(cli, opts, onClose)
	pctx, cancel := context.WithTimeout(ctx, startup)
	defer cancel()
	if err := probe(pctx, s); err != nil {
		s.closeClientOnly()
		if errors.Is(err, kv.ErrUnavailable) || errors.Is(err, kv.ErrIndeterminate) {
			return nil, fmt.Errorf("etcdkv: open: no etcd endpoint of %d answered within %v: %w (last error: %v)",
				len(cc.Endpoints), startup, kv.ErrUnavailable, err)
		}
		return nil, fmt.Errorf("etcdkv: open: %w", err)
	}
	if s.maint != nil {
		// Start-up recovery: a database left full (the NOSPACE alarm)
		// refuses every write, registration included; compact,
		// defragment and disarm before anyone writes.
		rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		err := s.maint.pass(rctx, forced)
		cancel()
		if err != nil {
			s.closeClientOnly()
			return nil, fmt.Errorf("etcdkv: open: start-up maintenance: %w", err)
		}
		s.maint.start()
	}
	return s, nil
}

// probe reads the cluster's revision until it answers or ctx ends: one read
// is cut by the request timeout, but a cluster that is still starting (or
// electing a leader) gets the whole startup time.
func probe(ctx context.Context, s *Store) error {
	for {
		_, err := s.Rev(ctx)
		if err == nil || !(errors.Is(err, kv.ErrUnavailable) || errors.Is(err, kv.ErrIndeterminate)) {
			return err
		}
		t := time.NewTimer(250 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
	}
}

// closeClientOnly closes the client but not what onClose would stop (the
// caller of connect still owns it on failure).
func (s *Store) closeClientOnly() {
	s.once.Do(func() {
		s.closed.Store(true)
		_ = s.cli.Close()
	})
}
