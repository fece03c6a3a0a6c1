//go:build unix

package resolver

import (
	"errors"
	"syscall"
	"testing"
)

// recvNow reads one pending datagram without waiting (nil if none).
func (fx *fuzzServer) recvNow(tb testing.TB) []byte {
	tb.Helper()
	var n int
	var rerr error
	err := fx.cliRaw.Read(func(fd uintptr) bool {
		n, _, rerr = syscall.Recvfrom(int(fd), fx.buf, syscall.MSG_DONTWAIT)
		return true
	})
	if err != nil {
		tb.Fatalf("recv: %v", err)
	}
	if errors.Is(rerr, syscall.EAGAIN) || errors.Is(rerr, syscall.EWOULDBLOCK) {
		return nil
	}
	if rerr != nil {
		tb.Fatalf("recv: %v", rerr)
	}
	return fx.buf[:n]
}
