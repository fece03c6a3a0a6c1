//go:build !linux

package resolver

import "net"

const udpSocketBuffer = 8 << 20

// growReadBuffer raises conn's receive buffer (best effort).
func growReadBuffer(conn *net.UDPConn) { _ = conn.SetReadBuffer(udpSocketBuffer) }
