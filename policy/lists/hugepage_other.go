//go:build !linux

package lists

// collapseHuge is a no-op where MADV_COLLAPSE does not exist.
func collapseHuge([]uint64) (int, error) { return 0, nil }
