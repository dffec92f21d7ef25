package auth

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
)

// ErrNoSocket: no socket of the connection was found.
var ErrNoSocket = errors.New("peer socket not found")

// maxProcNet bounds how much of /proc/net/tcp{,6} is read (about 150 bytes
// a socket: some 400000 sockets).
const maxProcNet = 64 << 20

// LoopbackPeerUID returns the uid owning the other end of a TCP connection
// on loopback: server is the address this side accepted on, peer the
// address the connection came from. The peer's socket is the line of
// /proc/net/tcp (or tcp6) whose local address is peer and whose remote
// address is server; its uid column is the socket owner's (effective) uid
// at creation. procRoot is normally "/proc"; only sockets of this network
// namespace are listed, which are the only ones that can reach a loopback
// listener.
func LoopbackPeerUID(procRoot string, server, peer netip.AddrPort) (uint32, error) {
	if !peer.Addr().Unmap().IsLoopback() {
		return 0, fmt.Errorf("peer %s is not on loopback", peer)
	}
	if procRoot == "/proc" {
		// This process's own network namespace: ask the kernel for the
		// one socket. Where that interface is missing, or it does not
		// find the socket (an IPv6 socket on a v4-mapped address), the
		// whole table below answers.
		if uid, err := sockDiagUID(peer, server); err == nil {
			return uid, nil
		}
	}
	for _, f := range []string{"tcp", "tcp6"} {
		data, err := readLimited(filepath.Join(procRoot, "net", f), maxProcNet)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // no IPv6
			}
			return 0, err
		}
		uid, err := ParseProcNetTCP(data, peer, server)
		if err == nil {
			return uid, nil
		}
		if !errors.Is(err, ErrNoSocket) {
			return 0, fmt.Errorf("/proc/net/%s: %w", f, err)
		}
	}
	return 0, fmt.Errorf("%w: %s -> %s", ErrNoSocket, peer, server)
}

func readLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	_, err = b.ReadFrom(&limitedReader{f, limit})
	return b.Bytes(), err
}

type limitedReader struct {
	r interface{ Read([]byte) (int, error) }
	n int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("file too large")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.r.Read(p)
	l.n -= int64(n)
	return n, err
}

// ParseProcNetTCP finds the socket whose local address is local and remote
// address remote in the text of /proc/net/tcp or tcp6 and returns its uid.
// Lines it cannot read are skipped; ErrNoSocket when none matches.
func ParseProcNetTCP(data []byte, local, remote netip.AddrPort) (uint32, error) {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	first := true
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		if first { // the header
			first = false
			continue
		}
		f := bytes.Fields(line)
		// sl local rem st queues tr retrnsmt uid ...
		if len(f) < 8 {
			continue
		}
		l, ok := parseHexAddr(f[1])
		if !ok || l != local {
			continue
		}
		r, ok := parseHexAddr(f[2])
		if !ok || r != remote {
			continue
		}
		uid, err := strconv.ParseUint(string(f[7]), 10, 32)
		if err != nil {
			return 0, fmt.Errorf("bad uid %q", clip(string(f[7])))
		}
		return uint32(uid), nil
	}
	return 0, ErrNoSocket
}

// parseHexAddr parses "0100007F:1F90" (IPv4, the address a little-endian
// 32-bit word) or the 32-digit IPv6 form (four such words).
func parseHexAddr(b []byte) (netip.AddrPort, bool) {
	ip, port, ok := bytes.Cut(b, []byte(":"))
	if !ok || len(port) != 4 {
		return netip.AddrPort{}, false
	}
	p, err := strconv.ParseUint(string(port), 16, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	raw := make([]byte, len(ip)/2)
	if len(ip)%2 != 0 {
		return netip.AddrPort{}, false
	}
	if _, err := hex.Decode(raw, ip); err != nil {
		return netip.AddrPort{}, false
	}
	var addr netip.Addr
	switch len(raw) {
	case 4:
		addr = netip.AddrFrom4([4]byte{raw[3], raw[2], raw[1], raw[0]})
	case 16:
		var a [16]byte
		for w := 0; w < 4; w++ {
			for i := 0; i < 4; i++ {
				a[w*4+i] = raw[w*4+3-i]
			}
		}
		addr = netip.AddrFrom16(a).Unmap()
	default:
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(addr, uint16(p)), true
}
