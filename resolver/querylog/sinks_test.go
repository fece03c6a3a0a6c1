package querylog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenSinks(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "logs", "query.log")
	sock := filepath.Join(dir, "dnstap.sock")
	tests := []struct {
		name    string
		specs   []string
		want    []string // sink names
		wantErr string   // substring; the spec must be named
	}{
		{"none", []string{"none"}, nil, ""},
		{"empty", []string{""}, nil, ""},
		{"nil", nil, nil, ""},
		{"stdout_stderr", []string{"stdout", " stderr "}, []string{"stdout", "stderr"}, ""},
		{"file_defaults", []string{"file:" + file}, []string{"file:" + file}, ""},
		{"file_options", []string{"file:" + file + "?max_size_mb=5&max_age_days=2&max_backups=3&compress=false"}, []string{"file:" + file}, ""},
		{"dnstap_unix", []string{"dnstap:unix:" + sock}, []string{"dnstap:unix:" + sock}, ""},
		{"dnstap_tcp", []string{"dnstap:tcp:127.0.0.1:6000"}, []string{"dnstap:tcp:127.0.0.1:6000"}, ""},
		{"unknown_kind", []string{"stdout", "syslog"}, nil, `"syslog"`},
		{"file_no_path", []string{"file:"}, nil, `"file:"`},
		{"file_bad_option", []string{"file:" + file + "?max_size_mb=big"}, nil, "max_size_mb"},
		{"file_unknown_option", []string{"file:" + file + "?rotate=daily"}, nil, "rotate"},
		{"dnstap_bad_network", []string{"dnstap:udp:127.0.0.1:6000"}, nil, `"dnstap:udp:127.0.0.1:6000"`},
		{"dnstap_no_port", []string{"dnstap:tcp:127.0.0.1"}, nil, `"dnstap:tcp:127.0.0.1"`},
		{"dnstap_no_address", []string{"dnstap:unix"}, nil, `"dnstap:unix"`},
		{"duplicate", []string{"stdout", "stdout"}, nil, "duplicate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sinks, err := OpenSinks(tt.specs, discardLogger())
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want ErrInvalidSpec mentioning %s", err, tt.wantErr)
				}
				if sinks != nil {
					t.Errorf("sinks = %v on error", sinks)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, s := range sinks {
				names = append(names, s.Name())
				if err := s.Close(); err != nil {
					t.Errorf("close %s: %v", s.Name(), err)
				}
			}
			if fmt.Sprint(names) != fmt.Sprint(tt.want) {
				t.Errorf("sinks = %v, want %v", names, tt.want)
			}
		})
	}
}

func TestParseFileSpec(t *testing.T) {
	path, o, err := ParseFileSpec("/var/log/q.log?max_size_mb=50&max_backups=0&compress=false")
	if err != nil {
		t.Fatal(err)
	}
	want := FileOptions{MaxSizeMB: 50, MaxAgeDays: 30, MaxBackups: 0, Compress: false}
	if path != "/var/log/q.log" || o != want {
		t.Errorf("got %q %+v, want %+v", path, o, want)
	}
	if _, o, _ := ParseFileSpec("/q.log"); o != DefaultFileOptions() || o.Compress || o.MaxSizeMB != 100 || o.MaxAgeDays != 30 || o.MaxBackups != 10 {
		t.Errorf("defaults = %+v", o)
	}
	for _, bad := range []string{"/q.log?max_size_mb=0", "/q.log?max_age_days=-1", "/q.log?max_backups=x", "/q.log?compress=maybe", "/q.log?max_files=3", "?max_backups=1"} {
		if _, _, err := ParseFileSpec(bad); err == nil {
			t.Errorf("ParseFileSpec(%q): no error", bad)
		}
	}
}

// TestFileSinkLimits checks what each spec hands lumberjack: an explicit
// 0 for max_age_days or max_backups lifts that limit (it used to be read
// as "the default", pruning files the operator meant to keep).
func TestFileSinkLimits(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		opts               string
		size, age, backups int
	}{
		{"", 100, 30, 10},
		{"?max_age_days=0", 100, 0, 10},
		{"?max_backups=0", 100, 30, 0},
		{"?max_age_days=0&max_backups=0", 100, 0, 0},
		{"?max_size_mb=5&max_age_days=7&max_backups=2", 5, 7, 2},
	} {
		t.Run(tt.opts, func(t *testing.T) {
			path, o, err := ParseFileSpec(filepath.Join(dir, "q.log") + tt.opts)
			if err != nil {
				t.Fatal(err)
			}
			fs, err := NewFileSink(path, o)
			if err != nil {
				t.Fatal(err)
			}
			defer fs.Close()
			if fs.lj.MaxSize != tt.size || fs.lj.MaxAge != tt.age || fs.lj.MaxBackups != tt.backups {
				t.Errorf("lumberjack size %d age %d backups %d, want %d %d %d", fs.lj.MaxSize, fs.lj.MaxAge, fs.lj.MaxBackups, tt.size, tt.age, tt.backups)
			}
		})
	}
}

func TestFileSinkOpenError(t *testing.T) {
	blocker := filepath.Join(t.TempDir(), "not-a-dir")
	if err := os.WriteFile(blocker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := OpenSinks([]string{"file:" + filepath.Join(blocker, "q.log")}, nil)
	if err == nil || !strings.Contains(err.Error(), blocker) {
		t.Fatalf("err = %v, want an error naming the path", err)
	}
}

// TestFileSinkRotation logs through the Logger while the file is rotated,
// and finds every record exactly once across the files. (One rotation:
// lumberjack names backups by the millisecond, so two rotations within
// one millisecond would overwrite each other, which only a test can do.)
func TestFileSinkRotation(t *testing.T) {
	dir := t.TempDir()
	o := DefaultFileOptions()
	o.Compress = false // lumberjack compresses in the background; counting needs plain files
	fs, err := NewFileSink(filepath.Join(dir, "query.log"), o)
	if err != nil {
		t.Fatal(err)
	}
	const n = 3000
	m := NewMetrics(nil)
	l := New([]Sink{fs}, n, m, discardLogger())
	r := testRecord(t, "cache_hit_a")
	for i := range n {
		r.Question.Name = fmt.Sprintf("q%d.example.", i)
		l.Log(&r)
		if i == 1500 {
			if err := fs.Rotate(); err != nil { // concurrent with the writer goroutine
				t.Fatal(err)
			}
		}
	}
	closeLogger(t, l)
	checkAccounting(t, l, m, n)

	files, err := filepath.Glob(filepath.Join(dir, "query*.log"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 2 {
		t.Fatalf("files = %v, want the live file and a rotated one", files)
	}
	seen := make(map[string]int, n)
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			var e Entry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			seen[e.QueryName]++
		}
		fh.Close()
	}
	for i := range n {
		if name := fmt.Sprintf("q%d.example.", i); seen[name] != 1 {
			t.Errorf("%s seen %d times", name, seen[name])
		}
	}
	if len(seen) != n {
		t.Errorf("%d distinct records, want %d", len(seen), n)
	}
}

// TestFileSinkSizeRotationKeepsLinesWhole: size rotations (lumberjack
// rotates before a write that would overflow the file) must never split a
// line between two files, so every record parses from one file or the
// other. A 64 KiB buffer handed out mid-line used to lose a record per
// rotation.
func TestFileSinkSizeRotationKeepsLinesWhole(t *testing.T) {
	dir := t.TempDir()
	fs, err := NewFileSink(filepath.Join(dir, "query.log"), FileOptions{MaxSizeMB: 1, MaxBackups: 10})
	if err != nil {
		t.Fatal(err)
	}
	const n = 6000 // ~2.7 MB of lines: two size rotations at least
	m := NewMetrics(nil)
	l := New([]Sink{fs}, n, m, discardLogger())
	r := testRecord(t, "cache_hit_a")
	for i := range n {
		r.Question.Name = fmt.Sprintf("q%d.example.", i)
		l.Log(&r)
	}
	closeLogger(t, l)
	checkAccounting(t, l, m, n)
	files, _ := filepath.Glob(filepath.Join(dir, "query*.log"))
	if len(files) < 3 {
		t.Fatalf("files %v, want two size rotations", files)
	}
	seen := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			t.Errorf("%s does not end in a newline: ends %q", filepath.Base(f), b[max(0, len(b)-40):])
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Buffer(nil, 1<<20)
		for ln := 1; sc.Scan(); ln++ {
			var e Entry
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Errorf("%s line %d: %v: %.60q", filepath.Base(f), ln, err, sc.Bytes())
				continue
			}
			seen[e.QueryName]++
		}
	}
	if len(seen) != n {
		t.Errorf("%d records parse across the files, want %d", len(seen), n)
	}
}

// shortWriter accepts budget bytes, then writes part of what it is given
// and fails, as a full disk does.
type shortWriter struct {
	buf    bytes.Buffer
	budget int
}

func (w *shortWriter) Write(p []byte) (int, error) {
	if w.buf.Len()+len(p) <= w.budget {
		return w.buf.Write(p)
	}
	n := max(0, w.budget-w.buf.Len())
	w.buf.Write(p[:n])
	return n, errors.New("no space left on device")
}

// TestWriterSinkShortWrite: a write that fails part-way (disk full) leaves
// a torn line; once the writer recovers, the next record must still be a
// line of its own, not glued onto the torn one.
func TestWriterSinkShortWrite(t *testing.T) {
	for _, tc := range []struct {
		name   string
		budget int
		want   int // lines in the output
	}{
		{"torn_mid_line", 1000, 3}, // one whole line, the torn one, the one after
		{"nothing_written", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := &shortWriter{budget: tc.budget}
			s := NewWriterSink("short", w)
			r := testRecord(t, "cache_hit_a")
			for i := range 5 {
				r.Question.Name = fmt.Sprintf("lost%d.example.", i)
				if err := s.Write(&r); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Flush(); err == nil {
				t.Fatal("flush succeeded, want the short-write error")
			}
			w.budget = 1 << 20 // disk space freed
			r.Question.Name = "after.example."
			if err := s.Write(&r); err != nil {
				t.Fatal(err)
			}
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(w.buf.String(), "\n"), "\n")
			if len(lines) != tc.want {
				t.Errorf("%d lines, want %d: %q", len(lines), tc.want, w.buf.String())
			}
			var e Entry
			if err := json.Unmarshal([]byte(lines[len(lines)-1]), &e); err != nil || e.QueryName != "after.example." {
				t.Errorf("the record written after recovery is not a line of its own (%v): %q", err, lines[len(lines)-1])
			}
		})
	}
}
