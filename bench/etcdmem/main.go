// Command etcdmem measures what an embedded etcd member holds in memory
// after many large writes (issue 10, finding 12): it writes -writes values
// of -value bytes over -keys keys through etcdkv and prints the process's
// RSS and Go heap. -etcd-defaults runs the member with etcd's own raft log
// and file retention (5,000 catch-up entries, 5 WAL and snapshot files,
// compaction keeping 10,000 revisions, no maintenance), as nola did before.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/nolaproject/nola/registry/etcdkv"
	"github.com/nolaproject/nola/registry/kv"
)

func main() {
	writes := flag.Int("writes", 6000, "writes")
	size := flag.Int("value", 500<<10, "value bytes")
	keys := flag.Int("keys", 64, "distinct keys")
	defaults := flag.Bool("etcd-defaults", false, "etcd's retention settings and no maintenance (nola before issue 10)")
	flag.Parse()
	dir, err := os.MkdirTemp("", "etcdmem-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer os.RemoveAll(dir)
	cfg := etcdkv.EmbeddedConfig{MemberConfig: etcdkv.MemberConfig{Dir: dir, UnsafeNoFsync: true}}
	if *defaults {
		cfg.SnapshotCatchUpEntries, cfg.MaxWALFiles, cfg.MaxSnapFiles, cfg.CompactionRetention = 5000, 5, 5, 10000
		cfg.NoMaintenance = true
	}
	ctx := context.Background()
	e, err := etcdkv.StartEmbedded(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer e.Close()
	val := []byte(strings.Repeat("v", *size))
	start := time.Now()
	n := 0
	for ; n < *writes; n++ {
		key := []byte(fmt.Sprintf("k/%d", n%*keys))
		if _, err := e.Commit(ctx, kv.Txn{Ops: []kv.Op{kv.Put(key, val, kv.NoLease)}}); err != nil {
			fmt.Printf("write %d failed: %v\n", n, err)
			break
		}
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	st := e.MaintenanceStats()
	fmt.Printf("%d writes of %d bytes in %v: RSS %s, Go heap in use %d MB; maintenance %+v\n",
		n, *size, time.Since(start).Round(time.Millisecond), rss(), ms.HeapInuse>>20, st)
}

func rss() string {
	b, _ := os.ReadFile("/proc/self/status")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:"))
		}
	}
	return "?"
}
