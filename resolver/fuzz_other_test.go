//go:build !unix

package resolver

import (
	"testing"
	"time"
)

// recvNow reads one pending datagram, waiting at most a millisecond where
// there is no non-blocking receive (nil if none).
func (fx *fuzzServer) recvNow(tb testing.TB) []byte {
	tb.Helper()
	_ = fx.cliConn.SetReadDeadline(time.Now().Add(time.Millisecond))
	n, err := fx.cliConn.Read(fx.buf)
	if err != nil {
		return nil
	}
	return fx.buf[:n]
}
