package upstream

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"strings"
)

// ParseResolvConf returns the nameservers of a resolv.conf file as
// "udp://IP:53" addresses, in file order. Loopback (127.0.0.0/8, ::1) and
// unspecified addresses are skipped: they are local stubs such as
// systemd-resolved, or dnsvalve itself, and forwarding to them would loop.
// It fails with ErrNoNameservers when none remain.
func ParseResolvConf(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("resolv.conf: %w", err)
	}
	defer f.Close()
	var out []string
	skipped := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if i := strings.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] != "nameserver" {
			continue
		}
		a, err := netip.ParseAddr(fields[1])
		if err != nil {
			continue // glibc ignores malformed lines too
		}
		a = a.Unmap()
		if a.IsLoopback() || a.IsUnspecified() {
			skipped++
			continue
		}
		out = append(out, "udp://"+netip.AddrPortFrom(a, 53).String())
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("resolv.conf %s: %w", path, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("resolv.conf %s (%d loopback skipped): %w", path, skipped, ErrNoNameservers)
	}
	return out, nil
}
