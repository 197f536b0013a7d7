package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
)

// The parser counts every mapping, and tells linear memories (VmFlags
// "nr") and memory images (the memfd's name) from the rest.
func TestParseSmaps(t *testing.T) {
	const fixture = `55d0c0a00000-55d0c0c00000 r-xp 00000000 08:01 1234 /usr/bin/nola
Size:               2048 kB
Rss:                1024 kB
VmFlags: rd ex mr mw me
7f0000000000-7f0001000000 rw-p 00000000 00:00 0
Size:              16384 kB
Rss:                   8 kB
VmFlags: rd wr mr mw me nr
7f0001000000-7f0001100000 rw-p 00000000 00:01 99 /memfd:nola-wasm-image (deleted)
Size:               1024 kB
Rss:                 512 kB
VmFlags: rd wr mr mw me
7f0001100000-7f0002000000 rw-p 00000000 00:00 0
Size:              15360 kB
Rss:                  12 kB
VmFlags: rd wr mr mw me nr
7f0002000000-7f0006000000 rw-p 00000000 00:00 0
Size:              65536 kB
Rss:               30000 kB
VmFlags: rd wr mr mw me ac
`
	got := parseSmaps(strings.NewReader(fixture))
	want := mapStats{maps: 5, nrCount: 2, nrSize: (16384 + 15360) << 10, nrRSS: (8 + 12) << 10, memfdCount: 1, memfdRSS: 512 << 10}
	if got != want {
		t.Errorf("parseSmaps = %+v, want %+v", got, want)
	}
}

// The kernel marks a MAP_NORESERVE mapping "nr": a mapping this test
// makes is counted, with the pages it touched. A process has a few such
// mappings of its own — glibc's malloc arenas in a cgo binary, the race
// detector's shadow memory — whose resident pages may grow meanwhile, so
// the test asks for at least its own bytes, and that unmapping takes its
// size away again.
func TestNoReserveMappingsSeen(t *testing.T) {
	before := smaps(os.Getpid())
	if before.maps == 0 {
		t.Skip("no /proc/self/smaps")
	}
	const size = 16 << 20
	b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE,
		syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
	if err != nil {
		t.Fatal(err)
	}
	b[0], b[size-1] = 1, 1 // two resident pages
	after := smaps(os.Getpid())
	if err := syscall.Munmap(b); err != nil {
		t.Fatal(err)
	}
	final := smaps(os.Getpid())
	if sz := after.nrSize - before.nrSize; sz < size {
		t.Errorf("after one 16 MiB MAP_NORESERVE mapping: %v more bytes of such mappings", sz)
	}
	if page := float64(os.Getpagesize()); after.nrRSS-before.nrRSS < 2*page {
		t.Errorf("%v more resident bytes, want at least two pages", after.nrRSS-before.nrRSS)
	}
	if sz := after.nrSize - final.nrSize; sz != size {
		t.Errorf("unmapping it took %v bytes away, want %v", sz, size)
	}
}
