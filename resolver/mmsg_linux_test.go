package resolver

import (
	"testing"
	"unsafe"
)

// TestMmsghdrLayout: mmsghdr must have the kernel's size (the stride of
// the recvmmsg/sendmmsg array): struct msghdr plus an unsigned int,
// padded to the struct's alignment.
func TestMmsghdrLayout(t *testing.T) {
	var m mmsghdr
	hdr, align := unsafe.Sizeof(m.hdr), unsafe.Alignof(m.hdr)
	want := (hdr + 4 + align - 1) / align * align
	if got := unsafe.Sizeof(m); got != want {
		t.Errorf("sizeof(mmsghdr) = %d, want %d", got, want)
	}
	if off := unsafe.Offsetof(m.n); off != hdr {
		t.Errorf("offsetof(msg_len) = %d, want %d", off, hdr)
	}
}
