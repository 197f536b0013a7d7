//go:build !linux

package wasm

import "github.com/tetratelabs/wazero/experimental"

// memoryAllocator: linear memory on the Go heap (heapMemory).
func memoryAllocator() experimental.MemoryAllocator { return nil }
