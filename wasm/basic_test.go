package wasm_test

import (
	"strconv"
	"testing"
)

func TestCounterGuests(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.putGuests(true)
	for _, typ := range []string{"counter-c", "counter-go"} {
		for i := range 5 {
			e.want("a-"+typ, typ, "inc", nil, strconv.Itoa(i))
		}
		e.want("a-"+typ, typ, "get", nil, "5")
		e.want("b-"+typ, typ, "get", nil, "0")
	}
}
