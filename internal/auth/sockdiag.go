package auth

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// sockDiagUID asks the kernel (NETLINK_SOCK_DIAG, the interface ss(8)
// uses) for the owner of the TCP socket whose local address is local and
// whose remote address is remote. It is one exact lookup by the
// connection's addresses, where reading /proc/net/tcp costs a line for
// every socket of the network namespace on every new connection: on a
// host with many sockets, that read dominated the API's CPU. The uid is
// the one /proc/net/tcp shows (the socket's owner at creation).
// ErrNoSocket: no such socket; any other error: the interface is not
// usable here and the caller reads /proc instead.
func sockDiagUID(local, remote netip.AddrPort) (uint32, error) {
	family := uint8(syscall.AF_INET)
	la, ra := local.Addr().Unmap(), remote.Addr().Unmap()
	if la.Is6() || ra.Is6() {
		family = syscall.AF_INET6
		la, ra = local.Addr(), remote.Addr()
	}
	fd, err := syscall.Socket(syscall.AF_NETLINK, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC, sockDiagProtocol)
	if err != nil {
		return 0, fmt.Errorf("netlink sock_diag: %w", err)
	}
	defer syscall.Close(fd)
	if err := syscall.Sendto(fd, sockDiagRequest(family, la, local.Port(), ra, remote.Port()), 0, &syscall.SockaddrNetlink{Family: syscall.AF_NETLINK}); err != nil {
		return 0, fmt.Errorf("netlink sock_diag: %w", err)
	}
	buf := make([]byte, 8192)
	n, _, err := syscall.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, fmt.Errorf("netlink sock_diag: %w", err)
	}
	return parseSockDiagReply(buf[:n])
}

// Linux ABI (linux/sock_diag.h, linux/inet_diag.h, linux/netlink.h).
const (
	sockDiagProtocol = 4  // NETLINK_SOCK_DIAG
	sockDiagByFamily = 20 // SOCK_DIAG_BY_FAMILY
	nlmsgHdrLen      = 16
	inetDiagReqLen   = 56 // struct inet_diag_req_v2
	inetDiagMsgLen   = 72 // struct inet_diag_msg
	inetDiagUIDOff   = 64 // idiag_uid in struct inet_diag_msg
	inetDiagNoCookie = 0xffffffff
)

// sockDiagRequest is one nlmsghdr and inet_diag_req_v2 asking for the
// TCP socket src:sport -> dst:dport, in any state.
func sockDiagRequest(family uint8, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) []byte {
	b := make([]byte, nlmsgHdrLen+inetDiagReqLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFamily)
	ne.PutUint16(b[6:], syscall.NLM_F_REQUEST)
	ne.PutUint32(b[8:], 1) // sequence
	r := b[nlmsgHdrLen:]
	r[0], r[1] = family, syscall.IPPROTO_TCP
	ne.PutUint32(r[4:], 0xffffffff) // every TCP state
	id := r[8:]                     // struct inet_diag_sockid
	binary.BigEndian.PutUint16(id[0:], sport)
	binary.BigEndian.PutUint16(id[2:], dport)
	putDiagAddr(id[4:20], src)
	putDiagAddr(id[20:36], dst)
	ne.PutUint32(id[40:], inetDiagNoCookie)
	ne.PutUint32(id[44:], inetDiagNoCookie)
	return b
}

func putDiagAddr(b []byte, a netip.Addr) {
	if a.Is4() {
		v := a.As4()
		copy(b, v[:])
		return
	}
	v := a.As16()
	copy(b, v[:])
}

// parseSockDiagReply reads the uid from the kernel's answer: one
// inet_diag_msg, or an NLMSG_ERROR (ENOENT: no such socket).
func parseSockDiagReply(b []byte) (uint32, error) {
	ne := binary.NativeEndian
	if len(b) < nlmsgHdrLen {
		return 0, errors.New("netlink sock_diag: short reply")
	}
	l, typ := ne.Uint32(b[0:]), ne.Uint16(b[4:])
	if int(l) > len(b) || l < nlmsgHdrLen {
		return 0, errors.New("netlink sock_diag: bad reply length")
	}
	body := b[nlmsgHdrLen:l]
	switch typ {
	case syscall.NLMSG_ERROR:
		if len(body) < 4 {
			return 0, errors.New("netlink sock_diag: short error")
		}
		errno := syscall.Errno(-int32(ne.Uint32(body)))
		if errno == syscall.ENOENT {
			return 0, ErrNoSocket
		}
		return 0, fmt.Errorf("netlink sock_diag: %w", errno)
	case sockDiagByFamily:
		if len(body) < inetDiagMsgLen {
			return 0, errors.New("netlink sock_diag: short inet_diag_msg")
		}
		return ne.Uint32(body[inetDiagUIDOff:]), nil
	}
	return 0, fmt.Errorf("netlink sock_diag: unexpected message type %d", typ)
}
