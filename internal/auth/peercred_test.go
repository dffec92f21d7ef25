package auth

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

const procNetTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1B9E 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 113539 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D431 0100007F:1B9E 01 00000000:00000000 00:00000000 00000000  1000        0 113540 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1B9E 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 113541 1 0000000000000000 20 4 30 10 -1
`

const procNetTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:A001 0000000000000000FFFF00000100007F:1B9E 01 00000000:00000000 00:00000000 00000000    65534        0 1 1 0 20 4 30 10 -1
   1: 00000000000000000000000001000000:A002 00000000000000000000000001000000:1B9E 01 00000000:00000000 00:00000000 00000000    33        0 1 1 0 20 4 30 10 -1
`

func TestParseProcNetTCP(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		data          string
		local, remote string
		uid           uint32
		found         bool
	}{
		{procNetTCP, "127.0.0.1:54321", "127.0.0.1:7070", 1000, true},
		{procNetTCP, "127.0.0.1:7070", "127.0.0.1:54321", 0, true},
		{procNetTCP, "127.0.0.1:54322", "127.0.0.1:7070", 0, false},
		{procNetTCP6, "127.0.0.1:40961", "127.0.0.1:7070", 65534, true}, // v4-mapped
		{procNetTCP6, "[::1]:40962", "[::1]:7070", 33, true},
		{"", "127.0.0.1:1", "127.0.0.1:2", 0, false},
	}
	for _, tt := range tests {
		uid, err := ParseProcNetTCP([]byte(tt.data), ap(tt.local), ap(tt.remote))
		if tt.found && (err != nil || uid != tt.uid) {
			t.Errorf("ParseProcNetTCP(%s -> %s) = %d, %v; want %d", tt.local, tt.remote, uid, err, tt.uid)
		}
		if !tt.found && err == nil {
			t.Errorf("ParseProcNetTCP(%s -> %s) = %d; want ErrNoSocket", tt.local, tt.remote, uid)
		}
	}
}

// loopbackConn returns a listener on 127.0.0.1 and the server side of a
// connection this process made to it (closed at the end of the test).
func loopbackConn(t *testing.T) (net.Listener, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return ln, s
}

// TestLoopbackPeerUIDLive finds this process's own connection.
func TestLoopbackPeerUIDLive(t *testing.T) {
	_, s := loopbackConn(t)
	uid, err := LoopbackPeerUID("/proc", netip.MustParseAddrPort(s.LocalAddr().String()), netip.MustParseAddrPort(s.RemoteAddr().String()))
	if err != nil || int(uid) != os.Geteuid() {
		t.Errorf("LoopbackPeerUID = %d, %v; want %d", uid, err, os.Geteuid())
	}
}

func FuzzParseProcNetTCP(f *testing.F) {
	f.Add([]byte(procNetTCP))
	f.Add([]byte(procNetTCP6))
	f.Add([]byte("h\n 0: 0100007F:D431 0100007F:1B9E 01 a b c 99999999999 x\n"))
	f.Add([]byte("h\n 0: 0100007:D431 0100007F:1B9E 01 a b c 1 x\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		uid, err := ParseProcNetTCP(data, netip.MustParseAddrPort("127.0.0.1:54321"), netip.MustParseAddrPort("127.0.0.1:7070"))
		if err == nil && !strings.Contains(string(data), "D431") && !strings.Contains(strings.ToLower(string(data)), "d431") {
			t.Fatalf("found uid %d without the peer's port in the input", uid)
		}
	})
}

// TestSockDiagUIDMatchesProc: the kernel's answer for one socket is the uid
// column of /proc/net/tcp, for a connection this process made and for one
// made by a child running as another user (nobody); a socket that does not
// exist is ErrNoSocket.
func TestSockDiagUIDMatchesProc(t *testing.T) {
	if os.Getenv("LP_TEST_DIAL") != "" {
		c, err := net.Dial("tcp", os.Getenv("LP_TEST_DIAL"))
		if err != nil {
			os.Exit(3)
		}
		io.Copy(io.Discard, c) // until the test closes it
		os.Exit(0)
	}
	ln, s := loopbackConn(t)
	check := func(s net.Conn, want uint32) {
		t.Helper()
		server, peer := netip.MustParseAddrPort(s.LocalAddr().String()), netip.MustParseAddrPort(s.RemoteAddr().String())
		got, err := sockDiagUID(peer, server)
		if err != nil || got != want {
			t.Errorf("sockDiagUID(%s -> %s) = %d, %v; want %d", peer, server, got, err, want)
		}
		data, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Fatal(err)
		}
		if fromProc, err := ParseProcNetTCP(data, peer, server); err != nil || fromProc != got {
			t.Errorf("/proc/net/tcp says %d, %v; sock_diag %d", fromProc, err, got)
		}
	}
	check(s, uint32(os.Geteuid()))

	if os.Geteuid() == 0 {
		const nobody = 65534
		// The test binary sits in a directory only root may enter: a
		// copy where nobody can run it.
		dir, err := os.MkdirTemp("", "lp-sockdiag-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		bin, err := os.ReadFile(os.Args[0])
		if err != nil {
			t.Fatal(err)
		}
		exe := filepath.Join(dir, "auth.test")
		if err := os.WriteFile(exe, bin, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(exe, "-test.run", "^TestSockDiagUIDMatchesProc$")
		cmd.Env = append(os.Environ(), "LP_TEST_DIAL="+ln.Addr().String())
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer cmd.Wait()
		defer cmd.Process.Kill()
		s2, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		check(s2, nobody)
		s2.Close()
	}

	// A port nothing uses on this side.
	server := netip.MustParseAddrPort(ln.Addr().String())
	if _, err := sockDiagUID(netip.MustParseAddrPort("127.0.0.1:1"), server); !errors.Is(err, ErrNoSocket) {
		t.Errorf("sockDiagUID of no socket: %v; want ErrNoSocket", err)
	}
}
