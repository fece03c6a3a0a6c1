package lists

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// hugePage is the size of a transparent huge page on amd64 and arm64
// (with 4 KiB base pages).
const hugePage = 2 << 20

// hugeMin is the smallest table backed by huge pages: below it the TLB
// covers the table anyway.
const hugeMin = 4 << 20

// collapseHuge asks the kernel to back the whole 2 MiB pages inside words
// with transparent huge pages now (MADV_COLLAPSE, Linux 6.1 and later),
// and returns how many bytes that covers. A 2M-name table spans ~5,000
// 4 KiB pages, more than the TLB holds, so on 4 KiB pages a random probe
// pays a page walk on top of its cache miss: ~50 ns of a hit
// (BenchmarkMatch2M). words must be populated (every page written): the
// collapse then copies pages that are there already and adds nothing to
// RSS. Only the range itself is advised; nothing marks the heap for
// khugepaged, so when the List is freed and the Go runtime returns the
// memory the huge pages split as any other.
func collapseHuge(words []uint64) (int, error) {
	if len(words)*8 < hugeMin {
		return 0, nil
	}
	start := uintptr(unsafe.Pointer(unsafe.SliceData(words)))
	end := start + uintptr(len(words))*8
	lo := (start + hugePage - 1) &^ (hugePage - 1)
	hi := end &^ (hugePage - 1)
	if hi <= lo {
		return 0, nil
	}
	// start is 8-byte aligned, so both ends fall on words.
	mem := unsafe.Slice((*byte)(unsafe.Pointer(&words[(lo-start)/8])), hi-lo)
	if err := unix.Madvise(mem, unix.MADV_COLLAPSE); err != nil {
		return 0, fmt.Errorf("madvise(MADV_COLLAPSE) of %d MiB: %w", len(mem)>>20, err)
	}
	return len(mem), nil
}
