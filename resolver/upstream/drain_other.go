//go:build !unix

package upstream

import "net"

// drainQueued is a no-op where non-blocking reads are not available: a
// reused socket may then meet datagrams queued while it was idle (use
// udp_socket_lifetime: 0s there).
func drainQueued(*net.UDPConn, []byte, uint16) (n, foreign int, err error) { return 0, 0, nil }
