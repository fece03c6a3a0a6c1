package lists

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// sharedTestdata finds /work/shared/testdata: the repo root's parent +
// /shared/testdata, located relative to this package.
func sharedTestdata(tb testing.TB) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "testdata", "blocklists")
	if _, err := os.Stat(dir); err != nil {
		tb.Skipf("real-world lists not present at %s (the repo root's parent + /shared/testdata/blocklists): %v", dir, err)
	}
	return dir
}

func parseFile(tb testing.TB, path string, f Format) (Stats, *List) {
	tb.Helper()
	fh, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer fh.Close()
	b := NewBuilder()
	st, err := Parse(fh, path, f, b)
	if err != nil {
		tb.Fatal(err)
	}
	return st, b.Build(filepath.Base(path), "")
}

func TestRealListsDump(t *testing.T) {
	dir := sharedTestdata(t)
	filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if info.IsDir() || filepath.Base(p) == "SOURCES.md" {
			return nil
		}
		st, l := parseFile(t, p, FormatAuto)
		rel, _ := filepath.Rel(dir, p)
		t.Logf("%-45s %-8s lines=%d entries=%d invalid=%d skipped=%d len=%d re=%d %q", rel, st.Format, st.Lines, st.Entries, st.Invalid, st.Skipped, l.Len(), l.Regexps(), st.FirstErrors)
		return nil
	})
}
