package node

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

// etcd's warnings and errors reach the node's log with their fields;
// its info and debug chatter does not.
func TestEtcdLoggerPassesWarningsAndErrors(t *testing.T) {
	var buf bytes.Buffer
	z := etcdLogger(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})))
	z.Info("chatter")
	z.With(zap.String("member", "m0")).Warn("slow fsync", zap.Int("ms", 900))
	z.Error("open wal: too many open files")
	out := buf.String()
	for _, want := range []string{
		`level=WARN msg="slow fsync" component=etcd`, "member=m0", "ms=900",
		`level=ERROR msg="open wal: too many open files" component=etcd`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "chatter") {
		t.Errorf("an info entry was logged:\n%s", out)
	}
}
