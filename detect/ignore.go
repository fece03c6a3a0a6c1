package detect

import (
	"strings"
	"unsafe"
)

// DefaultIgnore lists domains (and, implicitly, their subdomains) whose
// legitimate traffic looks like tunneling: CDN and cloud hash-named hosts,
// DNS blocklists queried with reversed IPs, antivirus/reputation lookups
// that encode hashes in names, and reverse DNS. New always applies it
// unless Config.NoDefaultIgnore is set. Treat it as read-only.
var DefaultIgnore = []string{
	// CDNs and cloud front doors.
	"akamaiedge.net", "akamai.net", "akamaihd.net", "akamaized.net", "edgekey.net", "edgesuite.net",
	"cloudfront.net", "fastly.net", "fastlylb.net", "cdn77.org", "llnwd.net", "edgecastcdn.net",
	"azureedge.net", "azurefd.net", "trafficmanager.net", "cloudflare.net", "b-cdn.net",
	"googlevideo.com", "gvt1.com", "1e100.net", "googleusercontent.com",
	// DNS blocklists / reputation (reversed IPs, hashes).
	"zen.spamhaus.org", "dbl.spamhaus.org", "spamhaus.net", "spamcop.net", "sorbs.net", "barracudacentral.org",
	"uribl.com", "surbl.org", "mailspike.net", "senderscore.com", "spameatingmonkey.net", "abuseat.org",
	"dnswl.org", "mailpolice.com", "njabl.org", "psbl.org", "dronebl.org", "hostkarma.junkemailfilter.com",
	"multi.uribl.com", "rbl.jp", "bl.score.senderscore.com",
	// Antivirus and endpoint-security reputation lookups.
	"avqs.mcafee.com", "avts.mcafee.com", "gti.mcafee.com", "sophosxl.net", "e5.sk", "eset.com",
	"trendmicro.com", "gfi.com", "spamassassin.org", "cymru.com", "team-cymru.org", "rspamd.com",
	"mailshell.net", "senderbase.org", "ironport.com", "webroot.com", "bitdefender.net", "kaspersky-labs.com",
	// Reverse DNS and infrastructure.
	"in-addr.arpa", "ip6.arpa",
}

// ignoreSet matches a name against a set of suffixes on label boundaries.
type ignoreSet struct {
	set    map[string]struct{}
	tails  map[string]struct{} // last two labels of each entry with two or more
	single bool                // some entry is a single label
	maxLen int                 // longest entry: longer suffixes are not looked up
}

func newIgnoreSet(lists ...[]string) ignoreSet {
	s := ignoreSet{set: map[string]struct{}{}, tails: map[string]struct{}{}}
	for _, l := range lists {
		for _, d := range l {
			d = strings.ToLower(strings.TrimSuffix(strings.TrimSpace(d), "."))
			d = strings.TrimPrefix(strings.TrimPrefix(d, "*"), ".")
			if d != "" {
				s.set[d] = struct{}{}
				s.maxLen = max(s.maxLen, len(d))
				if t, ok := lastTwoLabels(d); ok {
					s.tails[t] = struct{}{}
				} else {
					s.single = true
				}
			}
		}
	}
	return s
}

// match reports whether name (no trailing dot, any ASCII case) or one of
// its parents is in the set. Entries may be deeper or shallower than the
// registered domain (akamaiedge.net and in-addr.arpa are public suffixes).
func (s ignoreSet) match(name string) bool {
	if len(s.set) == 0 {
		return false
	}
	// Only name's last maxLen+1 bytes decide: every suffix matchLower looks
	// up is at most maxLen long, and the byte before it tells whether it
	// starts a label. Upper case in them is lowered on the stack.
	tail := name[max(0, len(name)-s.maxLen-1):]
	if !hasUpper(tail) {
		return s.matchLower(name)
	}
	var buf [256]byte
	if len(tail) > len(buf) {
		return s.matchLower(asciiLower(tail))
	}
	b := buf[:len(tail)]
	for i := range b {
		c := tail[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		b[i] = c
	}
	// b lives on this stack frame: matchLower only looks it up.
	return s.matchLower(unsafe.String(&b[0], len(b)))
}

// matchLower is match for a lower-case name.
func (s ignoreSet) matchLower(name string) bool {
	// Any matching entry of two or more labels ends in the name's last
	// two labels: one lookup rejects almost every name.
	if t, ok := lastTwoLabels(name); ok {
		if _, hit := s.tails[t]; !hit {
			if !s.single {
				return false
			}
			if _, hit := s.set[name[strings.LastIndexByte(name, '.')+1:]]; !hit {
				return false
			}
		}
	}
	for i := 0; ; {
		if len(name)-i <= s.maxLen {
			if _, ok := s.set[name[i:]]; ok {
				return true
			}
		}
		dot := strings.IndexByte(name[i:], '.')
		if dot < 0 {
			return false
		}
		i += dot + 1
	}
}

// lastTwoLabels returns the last two labels of name, and false when name
// has a single label.
func lastTwoLabels(name string) (string, bool) {
	dot := strings.LastIndexByte(name, '.')
	if dot < 0 {
		return name, false
	}
	return name[strings.LastIndexByte(name[:dot], '.')+1:], true
}
