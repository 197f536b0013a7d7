// Package faultinject wraps nola's dependencies so tests can break them on
// command: a store that one server can no longer reach, or whose commits
// are applied but never acknowledged.
package faultinject

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nolaproject/nola/registry/kv"
)

// Mode is what a Store does with calls.
type Mode int32

const (
	// Pass forwards every call.
	Pass Mode = iota
	// Down fails every call with kv.ErrUnavailable, applying nothing (a
	// partition between this caller and the store).
	Down
	// LoseAcks applies commits but answers kv.ErrIndeterminate, as when a
	// connection breaks after the request was sent.
	LoseAcks
	// DropKeepAlives fails lease keep-alives with kv.ErrUnavailable and
	// passes everything else: a broken keep-alive stream, which lets the
	// lease expire in the store while its holder can still commit.
	DropKeepAlives
)

// Store is a kv.Store whose reachability a test controls. Each server can get
// its own Store over the same backend, so that one server is partitioned
// from the store while the others are not.
type Store struct {
	inner kv.Store
	mode  atomic.Int32
	calls atomic.Int64
}

var _ kv.Store = (*Store)(nil)

// NewStore wraps inner; it starts in Pass mode.
func NewStore(inner kv.Store) *Store { return &Store{inner: inner} }

// SetMode switches the behaviour of later calls.
func (s *Store) SetMode(m Mode) { s.mode.Store(int32(m)) }

// Calls counts the calls made through the wrapper.
func (s *Store) Calls() int64 { return s.calls.Load() }

func (s *Store) gate(op string) error {
	s.calls.Add(1)
	if Mode(s.mode.Load()) == Down {
		return fmt.Errorf("faultinject: %s: %w", op, kv.ErrUnavailable)
	}
	return nil
}

func (s *Store) Get(ctx context.Context, key []byte, rev int64) (kv.KeyValue, bool, error) {
	if err := s.gate("get"); err != nil {
		return kv.KeyValue{}, false, err
	}
	return s.inner.Get(ctx, key, rev)
}

func (s *Store) Range(ctx context.Context, r kv.RangeRequest) (kv.RangeResult, error) {
	if err := s.gate("range"); err != nil {
		return kv.RangeResult{}, err
	}
	return s.inner.Range(ctx, r)
}

func (s *Store) Commit(ctx context.Context, t kv.Txn) (kv.CommitResult, error) {
	if err := s.gate("commit"); err != nil {
		return kv.CommitResult{}, err
	}
	res, err := s.inner.Commit(ctx, t)
	if err == nil && Mode(s.mode.Load()) == LoseAcks {
		return kv.CommitResult{}, fmt.Errorf("faultinject: commit: %w", kv.ErrIndeterminate)
	}
	return res, err
}

func (s *Store) Grant(ctx context.Context, ttl time.Duration) (kv.LeaseID, error) {
	if err := s.gate("grant"); err != nil {
		return 0, err
	}
	return s.inner.Grant(ctx, ttl)
}

func (s *Store) KeepAlive(ctx context.Context, id kv.LeaseID) (time.Duration, error) {
	if err := s.gate("keep-alive"); err != nil {
		return 0, err
	}
	if Mode(s.mode.Load()) == DropKeepAlives {
		return 0, fmt.Errorf("faultinject: keep-alive: %w", kv.ErrUnavailable)
	}
	return s.inner.KeepAlive(ctx, id)
}

func (s *Store) Revoke(ctx context.Context, id kv.LeaseID) error {
	if err := s.gate("revoke"); err != nil {
		return err
	}
	return s.inner.Revoke(ctx, id)
}

func (s *Store) Limits() kv.Limits { return s.inner.Limits() }

// Close does not close the shared backend.
func (s *Store) Close() error { return nil }
