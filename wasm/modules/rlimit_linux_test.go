package modules_test

import (
	"syscall"
	"testing"
)

// limitAddressSpace caps the process's virtual memory, so that a huge
// allocation fails at once instead of being overcommitted.
func limitAddressSpace(t *testing.T, bytes uint64) {
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: bytes, Max: bytes}); err != nil {
		t.Fatalf("setrlimit: %v", err)
	}
}
