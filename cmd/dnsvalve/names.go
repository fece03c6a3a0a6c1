package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsvalve/dnsvalve/policy"
)

// maxNamesFileBytes caps one clients.names_files file.
const maxNamesFileBytes = 64 << 20

// namesFiles reads clients.names_files: workload names an inventory job
// writes (a cron job over the cloud API, a Kubernetes sidecar), re-read
// when they change. A file that cannot be read or parsed keeps the names
// of its last good read, as a list source keeps its last good copy; one
// never read yet names nothing until it can be.
type namesFiles struct {
	logger  *slog.Logger
	entries *prometheus.GaugeVec
	invalid *prometheus.GaugeVec
	errors  *prometheus.CounterVec

	mu      sync.Mutex
	last    map[string]*namesFile // by path: the last good read
	labeled map[string]bool       // paths with metric series
}

// namesFile is one file's last good read.
type namesFile struct {
	mod     time.Time
	size    int64
	names   map[netip.Addr]string
	invalid int // lines that were not an entry
}

func newNamesFiles(reg prometheus.Registerer, logger *slog.Logger) *namesFiles {
	n := &namesFiles{logger: logger, last: map[string]*namesFile{}, labeled: map[string]bool{},
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "dnsvalve", Subsystem: "clients", Name: "names",
			Help: "Workload names in force from each clients.names_files file.",
		}, []string{"file"}),
		invalid: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "dnsvalve", Subsystem: "clients", Name: "names_invalid_lines",
			Help: "Lines of each clients.names_files file, at its last good read, that were not an entry.",
		}, []string{"file"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "clients", Name: "names_file_errors_total",
			Help: "Reads of a clients.names_files file that failed (its last good names stay).",
		}, []string{"file"}),
	}
	reg.MustRegister(n.entries, n.invalid, n.errors)
	return n
}

// load returns the names of paths, the first file's winning where two name
// one address. A file whose size and modification time are those of its
// last good read is not read again. load forgets nothing: a reload that
// reads a new config's files may still fail and leave the running config
// on the old ones; commit, once a config is in force, drops the others.
func (n *namesFiles) load(paths []string) map[netip.Addr]string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := map[netip.Addr]string{}
	for _, p := range paths {
		f, err := n.read(p)
		if err != nil {
			n.labeled[p] = true
			n.errors.WithLabelValues(p).Inc()
			if f != nil {
				n.logger.Error("clients.names_files: keeping the names of the file's last good read", "file", p, "err", err, "names", len(f.names))
			} else {
				n.logger.Error("clients.names_files: file names nobody until it can be read", "file", p, "err", err)
			}
		}
		if f == nil {
			continue
		}
		for a, name := range f.names {
			if _, ok := out[a]; !ok {
				out[a] = name
			}
		}
	}
	return out
}

// commit records that the files of paths are the ones in force: their
// gauges show their last good reads, and every other file is forgotten,
// its series deleted.
func (n *namesFiles) commit(paths []string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	keep := map[string]bool{}
	for _, p := range paths {
		keep[p] = true
		n.labeled[p] = true
		n.errors.WithLabelValues(p) // at 0 from the start: increase() sees the first failure
		f := n.last[p]
		if f == nil {
			n.entries.WithLabelValues(p).Set(0)
			n.invalid.WithLabelValues(p).Set(0)
			continue
		}
		n.entries.WithLabelValues(p).Set(float64(len(f.names)))
		n.invalid.WithLabelValues(p).Set(float64(f.invalid))
	}
	for p := range n.labeled {
		if keep[p] {
			continue
		}
		delete(n.labeled, p)
		delete(n.last, p)
		n.entries.DeleteLabelValues(p)
		n.invalid.DeleteLabelValues(p)
		n.errors.DeleteLabelValues(p)
	}
}

// read returns p's names: its last good read when the file is unchanged or
// cannot be read (with the error), nil when it never could be. Callers
// hold mu.
func (n *namesFiles) read(p string) (*namesFile, error) {
	prev := n.last[p]
	fh, err := os.Open(p)
	if err != nil {
		return prev, err
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil {
		return prev, err
	}
	if prev != nil && fi.ModTime().Equal(prev.mod) && fi.Size() == prev.size {
		return prev, nil
	}
	if fi.Size() > maxNamesFileBytes {
		return prev, fmt.Errorf("%d bytes, more than the %d MiB a names file may have", fi.Size(), maxNamesFileBytes>>20)
	}
	names := map[netip.Addr]string{}
	st, err := policy.ParseNames(fh, names)
	if err != nil {
		return prev, err
	}
	if st.Entries == 0 && prev != nil && len(prev.names) > 0 {
		// A file caught mid-rewrite (truncated, not yet written) reads as
		// empty: as a list source, it keeps what it had.
		return prev, errors.New("no names in the file, which had some: not applied (remove the file from clients.names_files to drop its names)")
	}
	if st.Invalid > 0 {
		n.logger.Warn("clients.names_files: file has invalid lines", "file", p, "invalid", st.Invalid, "first_errors", st.FirstErrors)
	}
	f := &namesFile{mod: fi.ModTime(), size: fi.Size(), names: names, invalid: st.Invalid}
	n.last[p] = f
	n.logger.Info("clients.names_files: file read", "file", p, "names", st.Entries, "invalid", st.Invalid, "duplicates", st.Duplicates)
	return f, nil
}
