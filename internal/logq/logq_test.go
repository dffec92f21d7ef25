package logq

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// gate is a writer that blocks every write until it is opened, like a log
// file on a disk busy with synchronous writes.
type gate struct {
	open chan struct{}
	mu   sync.Mutex
	out  bytes.Buffer
}

func (g *gate) Write(p []byte) (int, error) {
	<-g.open
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out.Write(p)
}

func (g *gate) String() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.out.String()
}

func TestWriteDoesNotBlockAndKeepsOrder(t *testing.T) {
	g := &gate{open: make(chan struct{})}
	q := New(g, 1<<20)
	done := make(chan struct{})
	go func() {
		for i := range 1000 {
			fmt.Fprintf(q, "line %d\n", i)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("Write blocked while the writer below was blocked")
	}
	close(g.open)
	q.Close()
	lines := strings.Split(strings.TrimSuffix(g.String(), "\n"), "\n")
	if len(lines) != 1000 {
		t.Fatalf("%d lines written; want 1000", len(lines))
	}
	for i, l := range lines {
		if want := fmt.Sprintf("line %d", i); l != want {
			t.Fatalf("line %d is %q; want %q", i, l, want)
		}
	}
}

func TestDropsPastTheBoundAndSaysSo(t *testing.T) {
	g := &gate{open: make(chan struct{})}
	q := New(g, 100)
	for i := range 30 {
		fmt.Fprintf(q, "line %02d\n", i) // 8 bytes each: 30 do not fit in 100
	}
	close(g.open)
	q.Close()
	written, dropped, next := 0, 0, 0
	for _, l := range strings.Split(strings.TrimSuffix(g.String(), "\n"), "\n") {
		if strings.Contains(l, "log lines dropped") {
			var n int
			if _, err := fmt.Sscanf(l[strings.LastIndex(l, "dropped="):], "dropped=%d", &n); err != nil || n <= 0 {
				t.Fatalf("drop line %q: want dropped=N", l)
			}
			dropped += n
			next += n // the dropped ones came before the next written line
			continue
		}
		if want := fmt.Sprintf("line %02d", next); l != want {
			t.Fatalf("line %q; want %q (order kept, drops counted where they were)", l, want)
		}
		written++
		next++
	}
	if dropped == 0 || written+dropped != 30 {
		t.Fatalf("%d written and %d dropped; want some dropped, 30 in all", written, dropped)
	}
}

func TestCloseFlushesAndWritesThrough(t *testing.T) {
	var b bytes.Buffer
	q := New(&b, 1<<10)
	fmt.Fprint(q, "queued\n")
	q.Close()
	fmt.Fprint(q, "after close\n")
	q.Close()
	if got := b.String(); got != "queued\nafter close\n" {
		t.Fatalf("output %q", got)
	}
}
