package lists

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"unicode/utf8"
	"unsafe"

	"golang.org/x/net/idna"
)

// Format is the syntax of a list source.
type Format string

// Supported formats. FormatAuto detects the format per source by sampling
// its first rule lines.
const (
	FormatAuto     Format = "auto"
	FormatHosts    Format = "hosts"
	FormatDomains  Format = "domains"
	FormatWildcard Format = "wildcard"
	FormatAdblock  Format = "adblock"
	FormatRPZ      Format = "rpz"
	FormatRegex    Format = "regex"
)

// ErrFormat is returned for an unknown format name.
var ErrFormat = errors.New("unknown list format")

// ParseFormat parses a format name; "" means auto.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(strings.TrimSpace(s))); f {
	case "":
		return FormatAuto, nil
	case FormatAuto, FormatHosts, FormatDomains, FormatWildcard, FormatAdblock, FormatRPZ, FormatRegex:
		return f, nil
	case "plain":
		return FormatDomains, nil
	}
	return "", fmt.Errorf("parse format %q: %w", s, ErrFormat)
}

// Stats describes one parsed source.
type Stats struct {
	Lines   int // lines read, comments and blank lines included
	Entries int // entries added (a hosts line with three names adds three)
	Invalid int // lines or names that could not be parsed
	Skipped int // valid rules deliberately ignored: cosmetic, URL and glob rules, unsupported modifiers, localhost names, RPZ triggers other than names
	// Badfilter counts "$badfilter" rules: each disables the rule it
	// names (the same rule without $badfilter) in any of the list's
	// sources; List.Len does not count the rules disabled.
	Badfilter int
	Format    Format
	// FirstErrors holds the first few invalid lines as "source:line: reason".
	FirstErrors []string
}

// maxFirstErrors is how many invalid lines Stats.FirstErrors keeps.
const maxFirstErrors = 5

// detectSample is how many rule lines auto-detection looks at.
const detectSample = 64

// parser holds per-source parsing state.
type parser struct {
	b      *Builder
	src    uint32
	source string // as shown: b.sources[src], redacted
	st     Stats
	lineNo int
	// sizing hint: the source's size, bytes read so far, and how many
	// entries the builder held before this source
	size, read  int64
	first       int
	lineDensity float64 // sampled lines per byte; 0 = unknown
	// RPZ state. Names are kept lower case and fully qualified, with
	// their trailing dot ("rpz.local.", "." for the root); "" is unknown.
	origin     string // the current $ORIGIN
	apex       string // the zone apex: the first SOA's owner, else the first $ORIGIN
	soaSeen    bool
	parenDepth int
	owner      string // the current owner, fully qualified when ownerFQ; aliases ownerBuf
	ownerFQ    bool
	ownerBuf   []byte
	fields     [8]string // scratch for splitFields
}

func (p *parser) invalid(reason string) {
	p.st.Invalid++
	if len(p.st.FirstErrors) < maxFirstErrors {
		p.st.FirstErrors = append(p.st.FirstErrors, fmt.Sprintf("%s:%d: %s", p.source, p.lineNo, reason))
	}
}

// Parse reads one source in the given format (FormatAuto detects it) and
// adds its entries to b. Bad lines are counted in Stats, never fatal: the
// error is only for a failing reader.
//
// Parse streams: it holds one 64 KiB buffer and allocates nothing per line
// except for entries whose text is kept (decorated rules, regexes). When r
// tells its size (bytes.Reader, strings.Reader, *os.File), the builder's
// arrays are sized from it instead of growing by repeated copies.
func Parse(r io.Reader, source string, format Format, b *Builder) (Stats, error) {
	size := sizeOf(r)
	var at io.ReaderAt
	if ra, ok := r.(io.ReaderAt); ok && size > 0 {
		at = ra // bytes.Reader, strings.Reader: ReadAt is relative to the start
		if f, ok := r.(*os.File); ok {
			if off, err := f.Seek(0, io.SeekCurrent); err != nil || off != 0 {
				at = nil // ReadAt would sample bytes before the reading position
			}
		}
	}
	return parse(r, source, format, b, size, at)
}

// sizeOf returns how many bytes r has left to read, or 0 when unknown.
func sizeOf(r io.Reader) int64 {
	switch r := r.(type) {
	case interface{ Len() int }:
		return int64(r.Len())
	case *os.File:
		fi, err := r.Stat()
		if err != nil || !fi.Mode().IsRegular() {
			return 0
		}
		off, err := r.Seek(0, io.SeekCurrent)
		if err != nil {
			return 0
		}
		return max(fi.Size()-off, 0)
	}
	return 0
}

// parse is Parse with the source size in bytes (0 = unknown) as a hint
// for sizing b, and, when at is not nil, random access to the same bytes
// (from offset 0) to sample how many lines they hold.
func parse(r io.Reader, source string, format Format, b *Builder, size int64, at io.ReaderAt) (Stats, error) {
	if format == "" {
		format = FormatAuto
	}
	if _, err := ParseFormat(string(format)); err != nil {
		return Stats{}, err
	}
	br := bufio.NewReaderSize(r, 64<<10)
	src := b.source(source)
	p := &parser{b: b, src: src, source: b.sources[src], size: size, first: len(b.hashes)}
	if at != nil && size > 0 {
		p.lineDensity = sampleLineDensity(at, size)
	}
	b.remaining = p.remaining
	defer func() { b.remaining = nil }()

	// Read ahead enough lines to detect the format, then replay them.
	var pending [][]byte
	var readErr error
	first := true
	next := func() ([]byte, bool) {
		line, n, err := readLine(br)
		p.read += int64(n)
		if err != nil {
			if err != io.EOF {
				readErr = err
			}
			if line == nil {
				return nil, false
			}
		}
		if first {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
			first = false
		}
		return line, true
	}
	if format == FormatAuto {
		rules := 0
		var sample []string
		for rules < detectSample {
			line, ok := next()
			if !ok {
				break
			}
			pending = append(pending, bytes.Clone(line))
			t := strings.TrimSpace(string(line))
			sample = append(sample, t)
			if t != "" && t[0] != '#' && t[0] != '!' && t[0] != ';' {
				rules++
			}
		}
		format = Detect(sample)
	}
	p.st.Format = format
	handle := p.handler(format)
	for _, line := range pending {
		p.lineNo++
		p.line(line, handle)
	}
	for {
		line, ok := next()
		if !ok {
			break
		}
		p.lineNo++
		p.line(line, handle)
	}
	p.st.Lines = p.lineNo
	if readErr != nil {
		return p.st, fmt.Errorf("parse %s: %w", p.source, readErr)
	}
	return p.st, nil
}

// remaining estimates how many more entries this source will add; 0 when
// unknown or too early to tell. The builder asks when its arrays are full.
// Entries per line come from the lines read so far; lines per byte from
// samples spread over the whole source when it can be read at random
// (names often grow longer down a list), else from the bytes read so far.
func (p *parser) remaining() int {
	added := len(p.b.hashes) - p.first
	if p.size <= 0 || p.read < 32<<10 || added < 256 || p.read >= p.size {
		return 0
	}
	density := float64(p.lineNo) / float64(p.read)
	if p.lineDensity > 0 {
		density = p.lineDensity
	}
	est := float64(added) / float64(p.lineNo) * float64(p.size-p.read) * density
	return int(est*1.01) + 256
}

// sampleLineDensity estimates lines per byte of a source from 16 windows
// of 4 KiB spread evenly over it; 0 when it cannot tell.
func sampleLineDensity(at io.ReaderAt, size int64) float64 {
	const windows, window = 16, 4 << 10
	if size < 4*windows*window {
		return 0
	}
	var buf [window]byte
	lines, read := 0, 0
	for i := range int64(windows) {
		n, err := at.ReadAt(buf[:], i*(size-window)/(windows-1))
		if n < window && err != nil && err != io.EOF {
			return 0
		}
		lines += bytes.Count(buf[:n], []byte{'\n'})
		read += n
	}
	if lines == 0 || read == 0 {
		return 0
	}
	return float64(lines) / float64(read)
}

var errLineTooLong = errors.New("line too long")

// readLine returns the next line without its line end, and how many bytes
// it consumed; a line longer than the reader's 64 KiB buffer comes back as
// the tooLong marker. The line aliases the reader's buffer: it is valid
// until the next read.
func readLine(br *bufio.Reader) ([]byte, int, error) {
	line, err := br.ReadSlice('\n')
	n := len(line)
	if errors.Is(err, bufio.ErrBufferFull) {
		// Drain the rest of an overlong line.
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = br.ReadSlice('\n')
			n += len(line)
		}
		if err != nil && err != io.EOF {
			return nil, n, err
		}
		return tooLong, n, nil
	}
	if err != nil && len(line) == 0 {
		return nil, n, err
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if err == io.EOF {
		return line, n, nil
	}
	return line, n, err
}

// tooLong stands in for a line over the buffer size.
var tooLong = []byte("\x00line too long")

// line hands one line to the format's handler as a string that aliases
// raw (no copy): handlers must not keep it, or any substring of it, past
// their return. What they keep (regex rules, the RPZ owner) they copy;
// Builder.add copies the little text it stores.
func (p *parser) line(raw []byte, handle func(string)) {
	if len(raw) == 0 {
		return // blank in every format
	}
	if raw[0] == 0 && bytes.Equal(raw, tooLong) {
		p.invalid(errLineTooLong.Error())
		return
	}
	handle(unsafe.String(&raw[0], len(raw)))
}

func (p *parser) handler(f Format) func(string) {
	switch f {
	case FormatHosts:
		return p.hostsLine
	case FormatAdblock:
		return p.adblockLine
	case FormatRPZ:
		return p.rpzLine
	case FormatRegex:
		return p.regexLine
	default:
		return p.domainsLine
	}
}

// Detect guesses the format of a source from its first lines (comments
// included: "!" comments point to adblock, ";" and "$TTL" to RPZ). Each
// rule line votes; the most votes win, ties go to the more specific format.
func Detect(lines []string) Format {
	votes := map[Format]int{}
	for _, t := range lines {
		t = strings.TrimSpace(t)
		switch {
		case t == "":
		case strings.HasPrefix(t, "[Adblock"), strings.HasPrefix(t, "!"):
			votes[FormatAdblock]++
		case strings.HasPrefix(t, ";"), strings.HasPrefix(t, "$TTL"), strings.HasPrefix(t, "$ORIGIN"):
			votes[FormatRPZ]++
		case strings.HasPrefix(t, "#"):
		case strings.HasPrefix(t, "||"), strings.HasPrefix(t, "@@"), strings.HasPrefix(t, "|"), strings.Contains(t, "^"),
			strings.Contains(t, "##"), strings.Contains(t, "#@#"):
			votes[FormatAdblock] += 2
		case isRPZRecord(t):
			votes[FormatRPZ] += 2
		case len(t) > 1 && t[0] == '/' && t[len(t)-1] == '/':
			votes[FormatRegex] += 2
		case strings.HasPrefix(t, "*."):
			votes[FormatWildcard] += 2
		default:
			if f := strings.Fields(t); len(f) >= 2 {
				if _, err := netip.ParseAddr(f[0]); err == nil {
					votes[FormatHosts] += 2
					continue
				}
			}
			votes[FormatDomains] += 2
		}
	}
	best := FormatDomains
	bestVotes := 0
	for _, f := range []Format{FormatRPZ, FormatAdblock, FormatHosts, FormatRegex, FormatWildcard, FormatDomains} {
		if votes[f] > bestVotes {
			best, bestVotes = f, votes[f]
		}
	}
	return best
}

func isRPZRecord(t string) bool {
	f := strings.Fields(t)
	for _, x := range f[min(1, len(f)):] {
		switch strings.ToUpper(x) {
		case "CNAME", "SOA", "NS":
			return true
		}
	}
	return false
}

// splitFields splits s around runs of white space like strings.Fields,
// into the parser's scratch array when the fields fit, so a hosts or RPZ
// line costs no allocation. The fields alias s.
func (p *parser) splitFields(s string) []string {
	f := p.fields[:0]
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			return strings.Fields(s) // Unicode white space: the general rules
		}
		if asciiSpace[c] {
			i++
			continue
		}
		j := i + 1
		for j < len(s) && s[j] < utf8.RuneSelf && !asciiSpace[s[j]] {
			j++
		}
		if j < len(s) && s[j] >= utf8.RuneSelf {
			return strings.Fields(s)
		}
		f = append(f, s[i:j])
		i = j
	}
	return f
}

var asciiSpace = [256]bool{'\t': true, '\n': true, '\v': true, '\f': true, '\r': true, ' ': true}

// stripComment cuts an inline "#" comment.
func stripComment(s string) string {
	if i := strings.IndexByte(s, '#'); i >= 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

// skipHosts are names in hosts files that are never blocking entries.
var skipHosts = map[string]bool{
	"localhost": true, "localhost.localdomain": true, "local": true, "broadcasthost": true,
	"0.0.0.0": true, "ip6-localhost": true, "ip6-loopback": true, "ip6-localnet": true,
	"ip6-mcastprefix": true, "ip6-allnodes": true, "ip6-allrouters": true, "ip6-allhosts": true,
	"localhost4": true, "localhost4.localdomain4": true, "localhost6": true, "localhost6.localdomain6": true, // RHEL's /etc/hosts
}

func (p *parser) hostsLine(s string) {
	s = stripComment(s)
	if s == "" || s[0] == '!' {
		return
	}
	f := p.splitFields(s)
	if _, err := netip.ParseAddr(f[0]); err != nil {
		if len(f) == 1 {
			// A bare name in a hosts file: accept it like the domains format.
			p.domainsLine(f[0])
			return
		}
		p.invalid(fmt.Sprintf("%q is not an IP address", f[0]))
		return
	}
	if len(f) == 1 {
		p.invalid("address without a name")
		return
	}
	for _, n := range f[1:] {
		if skipHosts[strings.ToLower(strings.TrimSuffix(n, "."))] {
			p.st.Skipped++
			continue
		}
		name, err := normalize(n)
		if err != nil {
			p.invalid(err.Error())
			continue
		}
		p.b.add(p.src, p.lineNo, kindSub, Block, false, "", name, "")
		p.st.Entries++
	}
}

// domainsLine parses plain and wildcard lines: "name" (name and
// subdomains) or "*.name" (subdomains only).
func (p *parser) domainsLine(s string) {
	s = stripComment(s)
	if s == "" || s[0] == '!' {
		return
	}
	if strings.ContainsAny(s, " \t") {
		p.invalid("more than one field")
		return
	}
	k, pre := kindSub, ""
	if strings.HasPrefix(s, "*.") {
		k, pre, s = kindWild, "*.", s[2:]
	}
	if strings.IndexByte(s, '*') >= 0 {
		p.addGlob(k, s, pre, "", Block, false, false)
		return
	}
	name, err := normalize(s)
	if err != nil {
		p.invalid(err.Error())
		return
	}
	p.b.add(p.src, p.lineNo, k, Block, false, pre, name, "")
	p.st.Entries++
}

func (p *parser) regexLine(s string) {
	s = strings.TrimSpace(s)
	if s == "" || s[0] == '#' || s[0] == '!' {
		return
	}
	if len(s) < 3 || s[0] != '/' || s[len(s)-1] != '/' {
		p.invalid("not a /regex/")
		return
	}
	p.addRegex(s, Block, false, false)
}

// addRegex adds a /regex/ rule, or with badfilter disables it.
func (p *parser) addRegex(rule string, a Action, important, badfilter bool) {
	rule = strings.Clone(rule) // kept by the List and by the compiled regexp
	body := rule[strings.IndexByte(rule, '/')+1 : strings.LastIndexByte(rule, '/')]
	re, err := regexp.Compile(body)
	if err != nil {
		p.invalid(fmt.Sprintf("bad regex: %v", err))
		return
	}
	if badfilter {
		p.b.cancelRule(rule, important)
		p.st.Badfilter++
		return
	}
	p.b.addRegex(p.src, p.lineNo, re, rule, a, important)
	p.st.Entries++
}

// addGlob adds an adblock rule with '*' wildcards, or with badfilter
// disables it: pattern is the part between the anchor (pre, with any "@@")
// and post ("^", "$important").
func (p *parser) addGlob(k kind, pattern, pre, post string, a Action, important, badfilter bool) {
	pattern = strings.TrimSuffix(pattern, ".")
	if len(pattern) > 253 {
		p.invalid("wildcard pattern longer than 253 bytes")
		return
	}
	literal := false
	for i := 0; i < len(pattern); i++ {
		switch c := pattern[i]; {
		case c == '*':
		case c == '.':
			if i == 0 || pattern[i-1] == '.' {
				p.invalid("empty label in wildcard pattern")
				return
			}
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
			literal = true
		default:
			p.invalid(fmt.Sprintf("character %q in wildcard pattern", c))
			return
		}
	}
	if strings.HasSuffix(pattern, ".") {
		p.invalid("empty label in wildcard pattern")
		return
	}
	if !literal {
		p.invalid("wildcard pattern matches every name")
		return
	}
	pattern = strings.ToLower(pattern)
	if badfilter {
		p.b.cancelRule(pre+pattern+post, important)
		p.st.Badfilter++
		return
	}
	// Cloned: pattern may be a view of the reader's line buffer.
	pattern = strings.Clone(pattern)
	p.b.addGlob(p.src, p.lineNo, k, pattern, pre+pattern+post, a, important)
	p.st.Entries++
}

// adblockLine parses AdGuard/ABP DNS-level rules.
func (p *parser) adblockLine(s string) {
	s = strings.TrimSpace(s)
	switch {
	case s == "", s[0] == '!', s[0] == '[':
		return
	case strings.Contains(s, "##"), strings.Contains(s, "#@#"), strings.Contains(s, "#$#"),
		strings.Contains(s, "#?#"), strings.Contains(s, "#%#"), strings.Contains(s, "$$"):
		p.st.Skipped++ // cosmetic / scriptlet / HTML filtering
		return
	case s[0] == '#':
		return // hosts-style comment, allowed by AdGuard
	}
	a, prefix := Block, ""
	if strings.HasPrefix(s, "@@") {
		a, prefix, s = Allow, "@@", s[2:]
	}
	// Regex rule, optionally with modifiers after the closing slash.
	if len(s) > 1 && s[0] == '/' {
		end := strings.LastIndexByte(s, '/')
		if end > 0 {
			important, badfilter, ok := p.modifiers(s[end+1:])
			if !ok {
				return
			}
			p.addRegex(prefix+s[:end+1], a, important, badfilter)
			return
		}
	}
	important, badfilter := false, false
	if i := strings.LastIndexByte(s, '$'); i >= 0 {
		var ok bool
		if important, badfilter, ok = p.modifiers(s[i:]); !ok {
			return
		}
		s = s[:i]
	}
	k, anchor := kindSub, "||"
	switch {
	case strings.HasPrefix(s, "||"):
		s = s[2:]
	case strings.HasPrefix(s, "|"):
		k, anchor, s = kindExact, "|", s[1:]
		if strings.HasPrefix(s, "http") {
			p.st.Skipped++ // URL rule
			return
		}
	default:
		if _, err := normalize(s); err == nil && strings.Contains(s, ".") && !strings.HasSuffix(s, ".") {
			// Bare domain: AdGuard accepts domains-only lines in filters.
			anchor = ""
		} else {
			p.st.Skipped++ // unanchored pattern: matches inside URLs, not names
			return
		}
	}
	post := ""
	switch {
	case strings.HasSuffix(s, "^|"):
		s, post = s[:len(s)-2], "^"
	case strings.HasSuffix(s, "^"):
		s, post = s[:len(s)-1], "^"
	case strings.HasSuffix(s, "|"):
		s, post = s[:len(s)-1], "^"
	}
	if anchor == "" {
		post = ""
	}
	if strings.ContainsAny(s, "/?:=&") || strings.HasSuffix(s, ".") {
		p.st.Skipped++ // URL, path or prefix pattern
		return
	}
	if strings.HasPrefix(s, "*.") && k == kindSub {
		k, anchor, s = kindWild, "||*.", s[2:]
	}
	if strings.IndexByte(s, '^') >= 0 {
		p.st.Skipped++ // a separator inside the pattern: a URL-level rule
		return
	}
	suffix := post
	if important {
		suffix += "$important"
	}
	if strings.IndexByte(s, '*') >= 0 {
		p.addGlob(k, s, prefix+anchor, suffix, a, important, badfilter)
		return
	}
	name, err := normalize(s)
	if err != nil {
		p.invalid(err.Error())
		return
	}
	if badfilter {
		p.b.cancelEntry(k, a, important, prefix+anchor, name, suffix)
		p.st.Badfilter++
		return
	}
	p.b.add(p.src, p.lineNo, k, a, important, prefix+anchor, name, suffix)
	p.st.Entries++
}

// modifiers parses "$a,b". Of the DNS-level modifiers only important and
// badfilter (the rule disables the same rule without it) are supported,
// so a rule with any other modifier is skipped (ok false), and so is a
// badfilter rule naming one: the rule it disables is skipped too.
func (p *parser) modifiers(m string) (important, badfilter, ok bool) {
	m = strings.TrimPrefix(m, "$")
	if m == "" {
		return false, false, true
	}
	for x := range strings.SplitSeq(m, ",") {
		switch strings.TrimSpace(x) {
		case "important":
			important = true
		case "badfilter":
			badfilter = true
		default:
			p.st.Skipped++
			return false, false, false
		}
	}
	return important, badfilter, true
}

// rpzLine parses one line of an RPZ zone file.
func (p *parser) rpzLine(s string) {
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	inParen := p.parenDepth > 0
	p.parenDepth += strings.Count(s, "(") - strings.Count(s, ")")
	if p.parenDepth < 0 {
		p.parenDepth = 0
	}
	if inParen {
		return // continuation of a multi-line record (SOA)
	}
	if strings.TrimSpace(s) == "" {
		return
	}
	continued := s[0] == ' ' || s[0] == '\t'
	f := p.splitFields(s)
	if f[0] == "$TTL" || f[0] == "$INCLUDE" {
		return
	}
	if f[0] == "$ORIGIN" {
		if len(f) < 2 {
			p.invalid("$ORIGIN without a name")
			return
		}
		origin, fq := p.qualify(nil, f[1])
		if !fq {
			origin = append(origin, '.') // relative to an unknown origin: taken as absolute
		}
		p.origin = string(origin)
		if p.apex == "" {
			p.apex = p.origin // until an SOA owner says otherwise
		}
		return
	}
	if strings.HasPrefix(f[0], "$") {
		p.invalid(fmt.Sprintf("unknown directive %s", f[0]))
		return
	}
	if !continued {
		// The owner applies to the continuation lines that follow: keep it,
		// qualified by the current origin, in a buffer reused from record
		// to record.
		p.ownerBuf, p.ownerFQ = p.qualify(p.ownerBuf[:0], f[0])
		p.owner = unsafe.String(unsafe.SliceData(p.ownerBuf), len(p.ownerBuf))
		f = f[1:]
	}
	// Skip TTL and class to reach the type.
	for len(f) > 0 && (isTTL(f[0]) || isClass(f[0])) {
		f = f[1:]
	}
	if len(f) == 0 {
		p.invalid("record without a type")
		return
	}
	typ := strings.ToUpper(f[0])
	switch typ {
	case "SOA":
		// The zone's first record: its owner is the apex that triggers
		// are relative to (a zone transfer repeats it at the end).
		if !p.soaSeen {
			p.soaSeen = true
			if p.ownerFQ {
				p.apex = strings.Clone(p.owner)
			}
		}
		return
	case "NS":
		return
	case "CNAME":
	default:
		p.st.Skipped++ // local data (A, TXT, ...) is not a policy action here
		return
	}
	if len(f) != 2 {
		p.invalid("CNAME needs exactly one target")
		return
	}
	var a Action
	switch strings.ToLower(f[1]) {
	case ".":
		a = BlockNXDomain
	case "*.":
		a = BlockNoData
	case "rpz-passthru.":
		a = Allow
	case "rpz-drop.":
		a = Block
	default:
		p.st.Skipped++ // rewrite to a local name or rpz-tcp-only
		return
	}
	owner, ok := p.trigger()
	if !ok {
		return
	}
	for _, t := range []string{".rpz-ip", ".rpz-nsdname", ".rpz-nsip", ".rpz-client-ip"} {
		if strings.HasSuffix(owner, t) {
			p.st.Skipped++
			return
		}
	}
	k, pre := kindExact, ""
	if strings.HasPrefix(owner, "*.") {
		k, pre, owner = kindWild, "*.", owner[2:]
	}
	name, err := normalize(owner)
	if err != nil {
		p.invalid(err.Error())
		return
	}
	p.b.add(p.src, p.lineNo, k, a, false, pre, name, "")
	p.st.Entries++
}

// qualify appends owner name s to dst, lower case, fully qualified by the
// current origin ("@" is the origin itself); fq is false when it could not
// be (a relative name or "@" before any $ORIGIN), and dst then gets s as
// it is.
func (p *parser) qualify(dst []byte, s string) (_ []byte, fq bool) {
	start := len(dst)
	switch {
	case s == "@" && p.origin != "":
		dst = append(dst, p.origin...)
		fq = true
	case strings.HasSuffix(s, "."):
		dst = append(dst, s...)
		fq = true
	case s != "@" && p.origin != "":
		dst = append(dst, s...)
		if p.origin != "." {
			dst = append(dst, '.')
		}
		dst = append(dst, p.origin...)
		fq = true
	default:
		dst = append(dst, s...)
	}
	for i := start; i < len(dst); i++ {
		if c := dst[i]; 'A' <= c && c <= 'Z' {
			dst[i] = c + 'a' - 'A'
		}
	}
	return dst, fq
}

// trigger returns the current owner relative to the zone apex, the name a
// policy record triggers on (draft-vixie-dnsop-dns-rpz, section 2): an
// owner is qualified by the origin in force ("bad.example" after
// "$ORIGIN rpz.local." is bad.example.rpz.local.) and the apex is taken
// off ("$ORIGIN sub.rpz.local." then "foo" triggers on foo.sub), so that a
// zone written without $ORIGIN, fully qualified under its SOA owner (the
// output of a zone transfer), reads like one written with relative names.
// A zone whose apex is unknown ("@ SOA" before any $ORIGIN, as published
// lists have it) has its relative owners taken as they are, and its
// absolute ones whole. ok is false when the owner is invalid (counted).
// The result aliases the owner's buffer.
func (p *parser) trigger() (string, bool) {
	owner := p.owner
	if !p.ownerFQ {
		if owner == "@" {
			p.invalid("policy on the zone apex")
			return "", false
		}
		return owner, true
	}
	apex := p.apex
	switch {
	case owner == apex:
		p.invalid("policy on the zone apex")
		return "", false
	case apex == "" || apex == ".":
		return owner[:len(owner)-1], true
	case len(owner) > len(apex) && owner[len(owner)-len(apex)-1] == '.' && strings.HasSuffix(owner, apex):
		return owner[:len(owner)-len(apex)-1], true
	}
	p.invalid(fmt.Sprintf("owner %s is outside the zone %s", owner, apex))
	return "", false
}

func isTTL(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && !strings.ContainsRune("smhdwSMHDW", rune(c)) {
			return false
		}
	}
	return s[0] >= '0' && s[0] <= '9'
}

func isClass(s string) bool {
	switch strings.ToUpper(s) {
	case "IN", "CH", "HS", "CS":
		return true
	}
	return false
}

// errName is wrapped by every name validation error.
var errName = errors.New("invalid name")

// normalize lowercases s, strips one trailing dot, converts IDNs to
// punycode and validates the result: labels of 1-63 letters, digits,
// hyphens or underscores, at most 253 bytes in total.
func normalize(s string) (string, error) {
	s = strings.TrimSuffix(s, ".")
	if s == "" {
		return "", fmt.Errorf("%w: empty", errName)
	}
	ascii := true
	upper := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			ascii = false
			break
		}
		if 'A' <= c && c <= 'Z' {
			upper = true
		}
	}
	if !ascii {
		a, err := idna.Lookup.ToASCII(s)
		if err != nil {
			return "", fmt.Errorf("%w: %q: %v", errName, s, err)
		}
		s = a
	} else if upper {
		s = strings.ToLower(s)
	}
	if len(s) > 253 {
		return "", fmt.Errorf("%w: %d bytes long", errName, len(s))
	}
	label := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '.':
			if label == 0 {
				return "", fmt.Errorf("%w: %q has an empty label", errName, s)
			}
			label = 0
			continue
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
		default:
			return "", fmt.Errorf("%w: %q has character %q", errName, s, c)
		}
		label++
		if label > 63 {
			return "", fmt.Errorf("%w: %q has a label over 63 bytes", errName, s)
		}
	}
	if label == 0 {
		return "", fmt.Errorf("%w: %q has an empty label", errName, s)
	}
	return s, nil
}
