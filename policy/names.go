package policy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"
)

// NamesStats is what ParseNames found.
type NamesStats struct {
	Entries     int      // addresses named
	Invalid     int      // lines that are neither an entry, a comment nor blank
	Duplicates  int      // entries for an address already named (the first wins)
	FirstErrors []string // the first few invalid lines, "line N: why"
}

// maxNameLen bounds a workload name (a DNS name's length: a pod, an EC2
// Name tag, a host name).
const maxNameLen = 253

// maxNamesErrors is how many invalid lines NamesStats describes.
const maxNamesErrors = 5

// ErrNamesLine means a names file has a line too long to be an entry.
var ErrNamesLine = errors.New("line longer than 4096 bytes")

// ParseNames reads workload names, one "IP NAME" per line, into dst: the
// address and the name separated by spaces, tabs or a comma, what the
// usual inventory commands print (kubectl's custom columns, the AWS CLI's
// text output, a hosts file, a CSV export). Further fields are ignored
// (a hosts file's aliases); '#' starts a comment; blank lines are
// skipped. IPv4-mapped IPv6 addresses name the IPv4 address, and zones are
// dropped. A line without a valid address or name is counted in Invalid
// and skipped; an address already in dst keeps its name. The error is the
// reader's, or ErrNamesLine: dst then holds the lines before it.
func ParseNames(r io.Reader, dst map[netip.Addr]string) (NamesStats, error) {
	var st NamesStats
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 4096)
	bad := func(line int, why string) {
		st.Invalid++
		if len(st.FirstErrors) < maxNamesErrors {
			st.FirstErrors = append(st.FirstErrors, fmt.Sprintf("line %d: %s", line, why))
		}
	}
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		if i := strings.IndexByte(text, '#'); i >= 0 {
			text = text[:i]
		}
		fields := strings.FieldsFunc(text, func(r rune) bool { return r == ' ' || r == '\t' || r == ',' || r == '\r' })
		if len(fields) == 0 {
			continue
		}
		a, err := netip.ParseAddr(fields[0])
		if err != nil {
			bad(line, fmt.Sprintf("%q is not an IP address", truncate(fields[0])))
			continue
		}
		if len(fields) < 2 {
			bad(line, "no name after the address")
			continue
		}
		name := fields[1]
		if len(name) > maxNameLen {
			bad(line, fmt.Sprintf("name longer than %d bytes", maxNameLen))
			continue
		}
		if i := strings.IndexFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
			bad(line, "control character in the name")
			continue
		}
		a = a.Unmap().WithZone("")
		if _, dup := dst[a]; dup {
			st.Duplicates++
			continue
		}
		dst[a] = name
		st.Entries++
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = ErrNamesLine
		}
		return st, fmt.Errorf("read names: %w", err)
	}
	return st, nil
}

// truncate shortens s for an error message.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
