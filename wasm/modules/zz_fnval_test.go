package modules_test

import (
	"context"
	"testing"

	"github.com/nolaproject/nola/wasm/modules"
)

func TestZZFunctionsValidate(t *testing.T) {
	bin := adversarial()["functions"]
	var err error
	n := allocated(func() { err = modules.Validate(context.Background(), bin, modules.Options{}, modules.Limits{}) })
	t.Logf("%d bytes: err=%v alloc %d MiB (%.0f B/byte), bound %d MiB", len(bin), err, n>>20, float64(n)/float64(len(bin)), uint64(4*memBound+compileBytesPerByte*len(bin))>>20)
}
