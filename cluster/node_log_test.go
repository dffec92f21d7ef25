package cluster

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestRaftLineLevels(t *testing.T) {
	tests := []struct {
		in    string
		level slog.Level
	}{
		// Lines of a healthy start and a clean shutdown, as raft wrote them
		// in a real three-node run: lowered to INFO.
		{`[WARN]  raft: heartbeat timeout reached, starting election: last-leader-addr= last-leader-id=`, slog.LevelInfo},
		{`[WARN]  raft: heartbeat timeout reached, not part of a stable configuration or a non-voter, not triggering a leader election`, slog.LevelInfo},
		{`[WARN]  raft: no known peers, aborting election`, slog.LevelInfo},
		{`[WARN]  raft: failed to get previous log: previous-index=1 last-index=0 error="log not found"`, slog.LevelInfo},
		{`[WARN]  raft: appendEntries rejected, sending older logs: peer="{Voter sip-b 127.0.0.1:7271}" next=1`, slog.LevelInfo},
		{`[ERROR] raft: peer has newer term, stopping replication: peer="{Voter sip-b 127.0.0.1:7271}"`, slog.LevelInfo},
		// Signs of trouble keep their level.
		{`[WARN]  raft: failed to contact: server-id=witness time=308.9ms`, slog.LevelWarn},
		{`[ERROR] raft: failed to appendEntries to: peer="{Voter a 127.0.0.1:1}" error="dial tcp: connection refused"`, slog.LevelError},
		{`[DEBUG] raft: something`, slog.LevelDebug},
	}
	for _, tt := range tests {
		level, text := raftLine(tt.in)
		if level != tt.level || !strings.HasPrefix(text, "raft: ") {
			t.Errorf("raftLine(%q) = %v, %q; want %v and the text without its level", tt.in, level, text, tt.level)
		}
	}
	var buf bytes.Buffer
	w := slogWriter{log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))}
	w.Write([]byte("[WARN]  raft: no known peers, aborting election\n[ERROR] raft: failed to appendEntries to: x\n"))
	if got := buf.String(); !strings.Contains(got, `level=INFO msg="raft: no known peers`) || !strings.Contains(got, `level=ERROR msg="raft: failed to appendEntries`) {
		t.Errorf("slogWriter wrote %q; want one INFO and one ERROR record", got)
	}
}
