package etcdkv_test

import (
	"os"
	"testing"

	"github.com/nolaproject/nola/registry/etcdkv/etcdtest"
)

// TestMain lets this test binary double as an etcd member process for
// etcdtest clusters with Processes set (real SIGKILL and SIGSTOP).
func TestMain(m *testing.M) {
	etcdtest.MemberMain()
	os.Exit(m.Run())
}
