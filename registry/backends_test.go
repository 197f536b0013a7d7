package registry_test

import (
	"testing"

	"github.com/nolaproject/nola/registry/kv"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// backend is a store the registry's protocol tests run against. Every test
// in this package that is not about the deterministic runtime runs over
// every backend listed by backends.
type backend struct {
	name string
	// open returns a fresh, empty store whose leases run on r's clock (a
	// real store ignores r) and registers its cleanup with t.
	open func(t testing.TB, r rt.Runtime) kv.Store
}

// backends lists the stores under test. New backends append themselves here.
func backends() []backend {
	return []backend{
		{name: "memkv", open: func(t testing.TB, r rt.Runtime) kv.Store {
			s := memkv.New(r, memkv.Options{})
			t.Cleanup(func() { _ = s.Close() })
			return s
		}},
		{name: "etcd", open: openEtcd},
	}
}
