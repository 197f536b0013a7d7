//go:build !linux

package wasm

import "github.com/tetratelabs/wazero/experimental"

// memoryAllocator: linear memory on the Go heap (wazero's default).
func memoryAllocator() experimental.MemoryAllocator { return nil }
