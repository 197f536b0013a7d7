// Package exectrace is the opt-in execution log of a real nola process and
// the activation oracle that reads it back.
//
// A Writer is a nola.Observer (`nola serve --trace-executions FILE`) that
// appends one JSON line per engine event — activation, drop, execution
// start and end — stamped with CLOCK_MONOTONIC, which every process on one
// machine shares (Go's own monotonic readings are per process). Lines are
// written unbuffered, one write(2) each, so a process killed with SIGKILL
// leaves every event it reported in the page cache.
//
// Check reads the logs of every server of a cluster and verifies, on the
// shared clock, that no two activations of one actor ever executed at
// overlapping times (see Check for the exact rule).
package exectrace

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/nolaproject/nola/nola"
)

// Record kinds.
const (
	KindActivated = "act"
	KindDropped   = "drop"
	KindStart     = "start"
	KindEnd       = "end"
)

// Record is one line of the log.
type Record struct {
	Kind        string `json:"k"`
	Server      string `json:"s"`
	Incarnation int64  `json:"i"`
	Activation  uint64 `json:"a"`
	Namespace   string `json:"ns"`
	Actor       string `json:"id"`
	Op          string `json:"op,omitempty"`
	Timer       bool   `json:"tm,omitempty"`
	// Released is set on "end" records whose result passed the output gate.
	Released bool `json:"r,omitempty"`
	// PID tells restarted processes of one server apart: activation
	// numbers are unique per process only.
	PID int `json:"p"`
	// T is CLOCK_MONOTONIC in nanoseconds.
	T int64 `json:"t"`
}

// Now reads CLOCK_MONOTONIC in nanoseconds.
func Now() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano()
}

// Writer appends records to a file. It is safe for concurrent use.
type Writer struct {
	mu   sync.Mutex
	f    *os.File
	pid  int
	fail error
}

var _ nola.Observer = (*Writer)(nil)

// Open appends to the log at path, creating it.
func Open(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("execution trace: %w", err)
	}
	return &Writer{f: f, pid: os.Getpid()}, nil
}

// Close closes the file and returns the first write error, if any.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return errors.Join(w.fail, w.f.Close())
}

func (w *Writer) write(kind string, ev nola.ActivationEvent, released bool) {
	r := Record{
		Kind: kind, Server: ev.Server, Incarnation: ev.Incarnation, Activation: ev.Activation,
		Namespace: ev.Namespace, Actor: ev.ActorID, Op: ev.Operation, Timer: ev.Timer,
		Released: released, PID: w.pid, T: Now(),
	}
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	b = append(b, '\n')
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.f.Write(b); err != nil && w.fail == nil {
		w.fail = err
	}
}

// Activated implements nola.Observer.
func (w *Writer) Activated(ev nola.ActivationEvent) { w.write(KindActivated, ev, false) }

// Dropped implements nola.Observer.
func (w *Writer) Dropped(ev nola.ActivationEvent) { w.write(KindDropped, ev, false) }

// ExecStart implements nola.Observer.
func (w *Writer) ExecStart(ev nola.ActivationEvent) { w.write(KindStart, ev, false) }

// ExecEnd implements nola.Observer.
func (w *Writer) ExecEnd(ev nola.ActivationEvent, released bool) { w.write(KindEnd, ev, released) }

// Committed implements nola.Observer (not logged: the oracle checks
// executions; commits are covered by the KV checkers).
func (w *Writer) Committed(nola.ActivationEvent) {}

// CallSent implements nola.Observer (not logged).
func (w *Writer) CallSent(nola.ActivationEvent) {}

// maxLine bounds one record; longer lines are malformed.
const maxLine = 64 << 10

// Read parses a log. A torn last line (the process was killed mid-write)
// is skipped; any other malformed line is an error.
func Read(r io.Reader) ([]Record, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLine)
	var out []Record
	var bad error
	line := 0
	for sc.Scan() {
		line++
		if bad != nil {
			return nil, bad // a malformed line that was not the last
		}
		var rec Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil || rec.Kind == "" {
			bad = fmt.Errorf("execution trace: line %d is malformed", line)
			continue
		}
		out = append(out, rec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("execution trace: line %d: %w", line+1, err)
	}
	return out, nil
}

// ReadFile reads the log at path.
func ReadFile(path string) ([]Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("execution trace: %w", err)
	}
	defer f.Close()
	return Read(f)
}
