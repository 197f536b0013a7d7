package modules

import "testing"

// The usage record is read back from the store: a corrupt one must be
// refused, never misread or panic, and a valid one round-trips.
func FuzzDecodeUsage(f *testing.F) {
	f.Add(encodeUsage(Usage{}))
	f.Add(encodeUsage(Usage{Bytes: 16 << 20, Modules: 3}))
	f.Add([]byte{})
	f.Add([]byte{0x15, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		u, err := decodeUsage(b)
		if err != nil {
			return
		}
		if u.Bytes < 0 || u.Modules < 0 {
			t.Fatalf("negative usage %+v accepted", u)
		}
		if again, err := decodeUsage(encodeUsage(u)); err != nil || again != u {
			t.Fatalf("round trip of %+v: %+v, %v", u, again, err)
		}
	})
}
