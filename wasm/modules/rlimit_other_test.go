//go:build !linux

package modules_test

import "testing"

func limitAddressSpace(t *testing.T, _ uint64) {
	t.Skip("needs RLIMIT_AS (Linux)")
}
