package etcdkv_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/etcdkv/etcdtest"
)

// envPermCheck asks a child copy of this test binary, running as an
// unprivileged user, to start an embedded member in a directory it may not
// write (see TestDataDirNotWritable).
const envPermCheck = "NOLA_ETCDKV_PERMCHECK_DIR"

// TestMain lets this test binary double as an etcd member process for
// etcdtest clusters with Processes set (real SIGKILL and SIGSTOP), and as
// the unprivileged child of TestDataDirNotWritable.
func TestMain(m *testing.M) {
	etcdtest.MemberMain()
	if dir := os.Getenv(envPermCheck); dir != "" {
		os.Exit(permCheck(dir))
	}
	os.Exit(m.Run())
}

// permCheck returns 0 if starting a member in each of dirs (a
// path-list) fails with a permission error whose message does not reveal
// the directory.
func permCheck(dirs string) int {
	for _, dir := range filepath.SplitList(dirs) {
		_, err := etcdkv.StartEmbedded(context.Background(), etcdkv.EmbeddedConfig{MemberConfig: etcdkv.MemberConfig{Dir: dir}})
		fmt.Println(err)
		if err == nil || !errors.Is(err, fs.ErrPermission) {
			return 1
		}
		if containsPath(err.Error(), dir) {
			return 2
		}
	}
	return 0
}
