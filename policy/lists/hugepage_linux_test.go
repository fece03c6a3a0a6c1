package lists

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// TestHugePages checks that a big list's table ends up on transparent
// huge pages: Build reports the bytes, and the kernel's own account of
// the mapping that holds the table (/proc/self/smaps) agrees.
func TestHugePages(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 600,000-name list; skipped in -short mode")
	}
	names := synthNames(600_000)
	b := NewBuilder()
	if _, err := Parse(bytes.NewReader(synthList(names)), "synthetic", FormatDomains, b); err != nil {
		t.Fatal(err)
	}
	l := b.Build("big", "")
	huge, err := l.HugePageBytes()
	if errors.Is(err, unix.EINVAL) {
		t.Skipf("this kernel has no MADV_COLLAPSE (Linux 6.1+): %v", err)
	}
	if err != nil {
		t.Fatalf("HugePageBytes: %v", err)
	}
	table := len(l.keys) * 8
	if huge < table-2*hugePage || huge > table+len(l.bloom)*8 {
		t.Fatalf("HugePageBytes = %d for a table of %d bytes", huge, table)
	}
	got, err := anonHugeAt(uintptr(unsafe.Pointer(&l.keys[0])))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("table %d bytes, collapsed %d, smaps AnonHugePages %d", table, huge, got)
	if got < huge {
		t.Fatalf("smaps: the table's mapping has %d bytes on huge pages, want at least %d", got, huge)
	}
	if _, ok := l.Match("www." + names[12345]); !ok {
		t.Fatal("a listed name missed after the collapse")
	}

	small := NewBuilder()
	if _, err := Parse(strings.NewReader("example.com\n"), "small", FormatDomains, small); err != nil {
		t.Fatal(err)
	}
	if huge, err := small.Build("small", "").HugePageBytes(); huge != 0 || err != nil {
		t.Fatalf("a one-name list: HugePageBytes = %d, %v; want 0, nil", huge, err)
	}
}

// anonHugeAt returns AnonHugePages, in bytes, of the mapping holding addr.
func anonHugeAt(addr uintptr) (int, error) {
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		var lo, hi uintptr
		if n, _ := fmt.Sscanf(line, "%x-%x", &lo, &hi); n == 2 && strings.Contains(line, " ") {
			in = lo <= addr && addr < hi
			continue
		}
		var kb int
		if in {
			if n, _ := fmt.Sscanf(line, "AnonHugePages: %d kB", &kb); n == 1 {
				return kb << 10, nil
			}
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no mapping in /proc/self/smaps holds %#x", addr)
}
