//go:build !linux

package wasm

import "github.com/tetratelabs/wazero/experimental"

// memoryAllocator: linear memory on the Go heap (heapMemory), the image
// copied into it.
func memoryAllocator(*memImage) experimental.MemoryAllocator { return nil }

// imageFile: none outside Linux; instances copy the image.
type imageFile struct{}

func newImageFile([]byte, []imageRun) imageFile { return imageFile{} }
func (imageFile) mapOver([]byte) bool           { return false }
func (imageFile) close()                        {}
