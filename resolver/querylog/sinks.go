package querylog

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/natefinch/lumberjack.v2"
)

// ErrInvalidSpec is returned (wrapped, naming the spec) by OpenSinks for a
// sink spec it does not understand.
var ErrInvalidSpec = errors.New("invalid query-log sink spec")

// writeBufferSize is the buffer of the JSON-lines sinks.
const writeBufferSize = 64 << 10

// WriterSink writes JSON lines (one Record or Alert per line) to an
// io.Writer through a buffer. Its methods are safe for concurrent use.
//
// The writer only ever gets whole lines, so that a rotating file (which
// rotates before a write that would overflow it) never splits a line
// between two files. A write that fails part-way leaves a torn line: the
// next write starts with a newline, so the lines after it stay readable.
type WriterSink struct {
	name   string
	mu     sync.Mutex
	w      io.Writer
	out    []byte    // whole lines not yet written, at most writeBufferSize unless one line is longer
	buf    []byte    // the line being encoded
	torn   bool      // the writer's output may end inside a line
	closer io.Closer // closed by Close; nil for stdout/stderr
}

var _ AlertSink = (*WriterSink)(nil)

// NewWriterSink returns a sink writing JSON lines to w, named name. Close
// flushes but does not close w.
func NewWriterSink(name string, w io.Writer) *WriterSink {
	return &WriterSink{name: name, w: w, out: make([]byte, 0, writeBufferSize), buf: make([]byte, 0, 1024)}
}

// Name returns the sink's name.
func (s *WriterSink) Name() string { return s.name }

// Write appends r as one JSON line to the buffer.
func (s *WriterSink) Write(r *Record) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(AppendJSON(s.buf[:0], r), '\n')
	return s.writeLocked()
}

// WriteAlert appends a as one JSON line to the buffer.
func (s *WriterSink) WriteAlert(a *Alert) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf = append(AppendAlert(s.buf[:0], a), '\n')
	return s.writeLocked()
}

// writeLocked buffers the line in s.buf, writing the buffer out first when
// the line does not fit.
func (s *WriterSink) writeLocked() error {
	if len(s.out) > 0 && len(s.out)+len(s.buf) > writeBufferSize {
		if err := s.flushLocked(); err != nil {
			return err
		}
	}
	s.out = append(s.out, s.buf...)
	return nil
}

// Flush writes the buffered lines out.
func (s *WriterSink) Flush() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushLocked()
}

// flushLocked writes the buffered lines. On an error they are dropped (the
// Logger counts them lost), so that the sink recovers when the writer
// does (disk space freed).
func (s *WriterSink) flushLocked() error {
	if len(s.out) == 0 {
		return nil
	}
	if s.torn {
		// Finish the torn line, so that it alone is unreadable.
		if _, err := s.w.Write([]byte{'\n'}); err != nil {
			s.out = s.out[:0]
			return fmt.Errorf("querylog: flush %s: %w", s.name, err)
		}
		s.torn = false
	}
	n, err := s.w.Write(s.out)
	if err == nil && n < len(s.out) {
		err = io.ErrShortWrite
	}
	if err != nil {
		s.torn = n > 0 && s.out[n-1] != '\n'
		s.out = s.out[:0]
		return fmt.Errorf("querylog: flush %s: %w", s.name, err)
	}
	s.out = s.out[:0]
	if cap(s.out) > 2*writeBufferSize {
		s.out = make([]byte, 0, writeBufferSize) // after a huge line
	}
	return nil
}

// Close flushes, and closes the underlying file if the sink owns one.
func (s *WriterSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	err := s.flushLocked()
	if s.closer != nil {
		if cerr := s.closer.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("querylog: close %s: %w", s.name, cerr))
		}
	}
	return err
}

// FileOptions control file rotation (lumberjack). A zero MaxSizeMB takes
// the default; a zero MaxAgeDays or MaxBackups means no limit of that
// kind (rotated files are then kept until the other limit, or an
// operator, removes them), as in lumberjack: the zero FileOptions keep
// every file, and DefaultFileOptions (which ParseFileSpec starts from)
// has the defaults below. Compression of rotated files
// is off by default: gzip costs about one CPU core per 50-100 MB/s of log,
// taken from DNS on a busy resolver; turn it on with compress=true when
// the files are kept rather than shipped.
type FileOptions struct {
	MaxSizeMB  int  // rotate when the file would exceed this size (default 100)
	MaxAgeDays int  // remove rotated files older than this (default 30; 0: never)
	MaxBackups int  // keep at most this many rotated files (default 10; 0: all)
	Compress   bool // gzip rotated files
}

// DefaultFileOptions returns 100 MB, 30 days, 10 backups, not compressed.
func DefaultFileOptions() FileOptions {
	return FileOptions{MaxSizeMB: 100, MaxAgeDays: 30, MaxBackups: 10}
}

// FileSink is a WriterSink on a size- and age-rotated file.
type FileSink struct {
	*WriterSink
	lj *lumberjack.Logger
}

var _ AlertSink = (*FileSink)(nil)

// NewFileSink opens (creating directories and the file as needed) a
// rotated JSON-lines file at path. The sink is named "file:"+path.
func NewFileSink(path string, o FileOptions) (*FileSink, error) {
	if o.MaxSizeMB <= 0 {
		o.MaxSizeMB = DefaultFileOptions().MaxSizeMB
	}
	o.MaxAgeDays, o.MaxBackups = max(o.MaxAgeDays, 0), max(o.MaxBackups, 0)
	// Fail now, at config time, rather than on the first query.
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("querylog: open %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("querylog: open %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("querylog: open %s: %w", path, err)
	}
	lj := &lumberjack.Logger{
		Filename:   path,
		MaxSize:    o.MaxSizeMB,
		MaxAge:     o.MaxAgeDays,
		MaxBackups: o.MaxBackups,
		Compress:   o.Compress,
		LocalTime:  false,
	}
	ws := NewWriterSink("file:"+path, lj)
	ws.closer = lj
	return &FileSink{WriterSink: ws, lj: lj}, nil
}

// Rotate flushes the buffer and starts a new file now (the old one is
// renamed with a timestamp, then compressed and pruned as configured).
// Safe to call concurrently with the Logger's writes, e.g. on a signal.
func (s *FileSink) Rotate() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.flushLocked(); err != nil {
		return err
	}
	if err := s.lj.Rotate(); err != nil {
		return fmt.Errorf("querylog: rotate %s: %w", s.name, err)
	}
	return nil
}

// ParseFileSpec parses the part of a sink spec after "file:": a path with
// optional query-style options, e.g.
// "/var/log/dnsvalve/query.log?max_size_mb=50&max_age_days=7&max_backups=5&compress=false".
// Options not given take DefaultFileOptions; max_age_days=0 and
// max_backups=0 lift that limit, and max_size_mb must be at least 1.
func ParseFileSpec(s string) (string, FileOptions, error) {
	o := DefaultFileOptions()
	path, rawq, _ := strings.Cut(s, "?")
	if path == "" {
		return "", o, errors.New("empty path")
	}
	q, err := url.ParseQuery(rawq)
	if err != nil {
		return "", o, fmt.Errorf("options: %w", err)
	}
	for k, vs := range q {
		v := vs[len(vs)-1]
		var dst *int
		switch k {
		case "max_size_mb":
			dst = &o.MaxSizeMB
		case "max_age_days":
			dst = &o.MaxAgeDays
		case "max_backups":
			dst = &o.MaxBackups
		case "compress":
			b, err := strconv.ParseBool(v)
			if err != nil {
				return "", o, fmt.Errorf("option compress=%q: not a boolean", v)
			}
			o.Compress = b
			continue
		default:
			return "", o, fmt.Errorf("unknown option %q (max_size_mb, max_age_days, max_backups, compress)", k)
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return "", o, fmt.Errorf("option %s=%q: not a non-negative integer", k, v)
		}
		if k == "max_size_mb" && n == 0 {
			return "", o, fmt.Errorf("option %s=0: a file must be allowed at least 1 MB", k)
		}
		*dst = n
	}
	return path, o, nil
}

// OpenSinks opens the sinks named by specs:
//
//	stdout, stderr            JSON lines to the standard streams
//	file:PATH[?OPTIONS]       rotated JSON-lines file (see ParseFileSpec)
//	dnstap:unix:PATH          dnstap (Frame Streams) to a unix socket
//	dnstap:tcp:HOST:PORT      dnstap to a TCP collector
//	none, ""                  nothing
//
// An invalid spec is an error naming it (wrapping ErrInvalidSpec); all
// problems are joined and sinks already opened are closed. logger is used
// by the dnstap sinks for connection events (nil: slog.Default()).
func OpenSinks(specs []string, logger *slog.Logger) ([]Sink, error) {
	var (
		sinks []Sink
		errs  []error
		seen  = map[string]bool{}
	)
	for _, spec := range specs {
		spec = strings.TrimSpace(spec)
		s, err := openSink(spec, logger)
		if err != nil {
			errs = append(errs, fmt.Errorf("querylog: sink %q: %w", spec, err))
			continue
		}
		if s == nil {
			continue
		}
		if seen[s.Name()] {
			errs = append(errs, fmt.Errorf("querylog: sink %q: duplicate: %w", spec, ErrInvalidSpec))
			_ = s.Close()
			continue
		}
		seen[s.Name()] = true
		sinks = append(sinks, s)
	}
	if len(errs) > 0 {
		for _, s := range sinks {
			_ = s.Close()
		}
		return nil, errors.Join(errs...)
	}
	return sinks, nil
}

func openSink(spec string, logger *slog.Logger) (Sink, error) {
	switch {
	case spec == "" || spec == "none":
		return nil, nil
	case spec == "stdout":
		return NewWriterSink("stdout", os.Stdout), nil
	case spec == "stderr":
		return NewWriterSink("stderr", os.Stderr), nil
	case strings.HasPrefix(spec, "file:"):
		path, o, err := ParseFileSpec(strings.TrimPrefix(spec, "file:"))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
		}
		return NewFileSink(path, o)
	case strings.HasPrefix(spec, "dnstap:"):
		network, addr, ok := strings.Cut(strings.TrimPrefix(spec, "dnstap:"), ":")
		if !ok || addr == "" {
			return nil, fmt.Errorf("%w: want dnstap:unix:PATH or dnstap:tcp:HOST:PORT", ErrInvalidSpec)
		}
		s, err := NewDnstapSink(network, addr, DnstapOptions{Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("%w: want stdout, stderr, file:PATH, dnstap:unix:PATH, dnstap:tcp:HOST:PORT or none", ErrInvalidSpec)
}
