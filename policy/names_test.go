package policy

import (
	"errors"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseNames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		in    string
		pre   map[string]string // already in dst
		want  map[string]string
		stats NamesStats
		err   error
	}{
		{"kubectl_columns", "10.0.3.7    build-runner-2\n10.0.3.8\tpayments-api-5d9f\n", nil,
			map[string]string{"10.0.3.7": "build-runner-2", "10.0.3.8": "payments-api-5d9f"}, NamesStats{Entries: 2}, nil},
		{"csv_and_crlf", "10.0.0.1,db-1\r\n10.0.0.2 , db-2\r\n", nil,
			map[string]string{"10.0.0.1": "db-1", "10.0.0.2": "db-2"}, NamesStats{Entries: 2}, nil},
		{"hosts_file_aliases_and_comments", "# inventory, 2026-11-27\n\n10.0.0.1 web-1 web-1.corp.example # primary\n  # indented comment\n", nil,
			map[string]string{"10.0.0.1": "web-1"}, NamesStats{Entries: 1}, nil},
		{"ipv6_mapped_and_zone", "fd00::5 v6-host\n::ffff:10.0.0.9 mapped\nfe80::1%eth0 linklocal\n", nil,
			map[string]string{"fd00::5": "v6-host", "10.0.0.9": "mapped", "fe80::1": "linklocal"}, NamesStats{Entries: 3}, nil},
		{"first_wins_and_existing_kept", "10.0.0.1 new\n10.0.0.2 a\n10.0.0.2 b\n", map[string]string{"10.0.0.1": "from-config"},
			map[string]string{"10.0.0.1": "from-config", "10.0.0.2": "a"}, NamesStats{Entries: 1, Duplicates: 2}, nil},
		{"invalid_lines_skipped", "10.0.0.1 ok\nbuild-runner 10.0.0.2\n10.0.0.3\n10.0.0.300 x\n10.0.0.4 " + strings.Repeat("n", 254) + "\n10.0.0.5 bad\x01name\n", nil,
			map[string]string{"10.0.0.1": "ok"}, NamesStats{Entries: 1, Invalid: 5, FirstErrors: []string{
				`line 2: "build-runner" is not an IP address`, "line 3: no name after the address",
				`line 4: "10.0.0.300" is not an IP address`, "line 5: name longer than 253 bytes",
				"line 6: control character in the name"}}, nil},
		{"overlong_line", "10.0.0.1 ok\n" + strings.Repeat("x", 5000) + "\n10.0.0.2 late\n", nil,
			map[string]string{"10.0.0.1": "ok"}, NamesStats{Entries: 1}, ErrNamesLine},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := map[netip.Addr]string{}
			for ip, n := range tc.pre {
				dst[netip.MustParseAddr(ip)] = n
			}
			st, err := ParseNames(strings.NewReader(tc.in), dst)
			if !errors.Is(err, tc.err) || (err != nil) != (tc.err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			want := map[netip.Addr]string{}
			for ip, n := range tc.want {
				want[netip.MustParseAddr(ip)] = n
			}
			if !maps.Equal(dst, want) {
				t.Errorf("names = %v, want %v", dst, want)
			}
			if st.Entries != tc.stats.Entries || st.Invalid != tc.stats.Invalid || st.Duplicates != tc.stats.Duplicates ||
				!slices.Equal(st.FirstErrors, tc.stats.FirstErrors) {
				t.Errorf("stats = %+v, want %+v", st, tc.stats)
			}
		})
	}
}

// TestCompileFileNames: clients.names wins over a names file, and both
// name clients through Identify.
func TestCompileFileNames(t *testing.T) {
	s, err := Compile(Config{
		Names:     map[string]string{"10.0.0.1": "from-config"},
		FileNames: map[netip.Addr]string{netip.MustParseAddr("10.0.0.1"): "from-file", netip.MustParseAddr("10.0.0.2"): "file-only"},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for ip, want := range map[string]string{"10.0.0.1": "from-config", "10.0.0.2": "file-only", "::ffff:10.0.0.2": "file-only", "10.0.0.3": ""} {
		if _, _, name := s.Identify(netip.MustParseAddr(ip)); name != want {
			t.Errorf("Identify(%s) name = %q, want %q", ip, name, want)
		}
	}
}

// FuzzParseNames: any input parses without panicking, every name kept is
// one a log line can carry (non-empty, bounded, no control characters),
// and the counts add up.
func FuzzParseNames(f *testing.F) {
	for _, seed := range []string{
		"10.0.3.7 build-runner-2\n", "10.0.0.1,db-1\r\n# c\n\nfd00::5\tv6\n", "::ffff:1.2.3.4 m a b\n1.2.3.4 dup\n",
		"x y\n10.0.0.1\n", "fe80::1%eth0 ll\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, in string) {
		dst := map[netip.Addr]string{}
		st, err := ParseNames(strings.NewReader(in), dst)
		if err != nil && !errors.Is(err, ErrNamesLine) {
			t.Fatalf("error from a string reader: %v", err)
		}
		if st.Entries != len(dst) {
			t.Errorf("Entries %d, but %d names", st.Entries, len(dst))
		}
		if lines := strings.Count(in, "\n") + 1; st.Entries+st.Invalid+st.Duplicates > lines {
			t.Errorf("%d entries, %d invalid, %d duplicates from %d lines", st.Entries, st.Invalid, st.Duplicates, lines)
		}
		for a, n := range dst {
			if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
				t.Errorf("address %v kept as is", a)
			}
			if n == "" || len(n) > maxNameLen || strings.ContainsFunc(n, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Errorf("name %q kept", n)
			}
		}
	})
}
