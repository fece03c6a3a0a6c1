package detect

import (
	"bytes"
	"strconv"
)

// fastRecord is one query-log line as parsed by parseFast: every string
// field is a sub-slice of the line, valid until the next read. It holds
// what encoding/json would decode into inRecord, for the lines parseFast
// accepts.
type fastRecord struct {
	version, accountID, region, vpcID []byte
	ts, qname, qtype, qclass, rcode   []byte
	srcaddr, srcport, transport, typ  []byte
	instance                          []byte
	fwAction, fwGroup, fwList         []byte
	answers                           [][3][]byte // Rdata, Type, Class
	group, policy, category, rule     []byte
	source, cache, upstream, reason   []byte
	ecs, forwarder, dvInstance        []byte
	latency                           int64
}

// jsonScan is a strict scanner over one JSON line. parseFast accepts only
// the plain shape of query-log records: string values of printable ASCII
// without escapes, no duplicate or case-variant keys, known value types.
// Anything else makes it report false, and the caller decodes the line
// with encoding/json instead, so both paths always agree.
type jsonScan struct {
	b []byte
	i int
}

func (s *jsonScan) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next skips white space and returns the next byte (0 at the end).
func (s *jsonScan) next() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *jsonScan) eat(c byte) bool {
	if s.next() == c {
		s.i++
		return true
	}
	return false
}

func (s *jsonScan) lit(l string) bool {
	if bytes.HasPrefix(s.b[s.i:], []byte(l)) {
		s.i += len(l)
		return true
	}
	return false
}

// plain reads a string of printable ASCII without escapes (encoding/json
// writes such a string back unchanged) and returns its contents.
func (s *jsonScan) plain() ([]byte, bool) {
	if !s.eat('"') {
		return nil, false
	}
	start := s.i
	for s.i < len(s.b) {
		c := s.b[s.i]
		if c == '"' {
			s.i++
			return s.b[start : s.i-1], true
		}
		if c < 0x20 || c == '\\' || c >= 0x80 {
			return nil, false
		}
		s.i++
	}
	return nil, false
}

// plainOrNull reads a plain string or null (nil, as encoding/json leaves
// the field alone).
func (s *jsonScan) plainOrNull() ([]byte, bool) {
	if s.next() == 'n' {
		return nil, s.lit("null")
	}
	return s.plain()
}

// key reads an object key and its colon.
func (s *jsonScan) key() ([]byte, bool) {
	k, ok := s.plain()
	return k, ok && s.eat(':')
}

// number checks a JSON number and returns its text.
func (s *jsonScan) number() ([]byte, bool) {
	s.ws()
	b, start := s.b, s.i
	i := s.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return nil, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == d {
			return nil, false
		}
	}
	s.i = i
	return b[start:i], true
}

// skip checks and skips any JSON value (for keys inRecord does not have).
func (s *jsonScan) skip(depth int) bool {
	if depth > 32 {
		return false
	}
	switch c := s.next(); c {
	case '"':
		s.i++
		for s.i < len(s.b) {
			c := s.b[s.i]
			s.i++
			switch {
			case c == '"':
				return true
			case c < 0x20:
				return false
			case c == '\\':
				if s.i >= len(s.b) {
					return false
				}
				e := s.b[s.i]
				s.i++
				switch e {
				case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				case 'u':
					if s.i+4 > len(s.b) {
						return false
					}
					for _, h := range s.b[s.i : s.i+4] {
						if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
							return false
						}
					}
					s.i += 4
				default:
					return false
				}
			}
		}
		return false
	case '{':
		s.i++
		if s.eat('}') {
			return true
		}
		for {
			if _, ok := s.key(); !ok || !s.skip(depth+1) {
				return false
			}
			if s.eat('}') {
				return true
			}
			if !s.eat(',') {
				return false
			}
		}
	case '[':
		s.i++
		if s.eat(']') {
			return true
		}
		for {
			if !s.skip(depth + 1) {
				return false
			}
			if s.eat(']') {
				return true
			}
			if !s.eat(',') {
				return false
			}
		}
	case 't':
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	default:
		_, ok := s.number()
		return ok
	}
}

// object reads an object (or null) calling field for each key; field
// reads the value. Duplicate keys (bit from bitOf) and keys that match a
// field only case-insensitively fail, as encoding/json would merge or
// match them.
func (s *jsonScan) object(fields []string, field func(k int) bool) bool {
	if s.next() == 'n' {
		return s.lit("null")
	}
	if !s.eat('{') {
		return false
	}
	if s.eat('}') {
		return true
	}
	var seen uint64
	for {
		key, ok := s.key()
		if !ok {
			return false
		}
		k := fieldIndex(fields, key)
		switch {
		case k >= 0:
			if seen&(1<<k) != 0 || !field(k) {
				return false
			}
			seen |= 1 << k
		case k == foldMatch:
			return false
		default:
			if !s.skip(0) {
				return false
			}
		}
		if s.eat('}') {
			return true
		}
		if !s.eat(',') {
			return false
		}
	}
}

const (
	noMatch   = -1
	foldMatch = -2
)

// fieldIndex returns key's index in fields, foldMatch if it equals one
// only ignoring case (encoding/json would use it: the line goes the slow
// way), or noMatch. Keys are ASCII (plain).
func fieldIndex(fields []string, key []byte) int {
	for i, f := range fields {
		if string(key) == f {
			return i
		}
	}
	for _, f := range fields {
		if bytes.EqualFold(key, []byte(f)) {
			return foldMatch
		}
	}
	return noMatch
}

// Field names, in the order of the index constants below.
var (
	topFields = []string{"version", "account_id", "region", "vpc_id", "query_timestamp", "query_name",
		"query_type", "query_class", "rcode", "answers", "srcaddr", "srcport", "transport", "srcids",
		"firewall_rule_action", "firewall_rule_group_id", "firewall_domain_list_id", "dnsvalve", "type"}
	answerFields = []string{"Rdata", "Type", "Class"}
	srcidsFields = []string{"instance"}
	extraFields  = []string{"group", "policy", "category", "rule", "source", "cache", "upstream",
		"latency_us", "score", "signals", "alert", "newly_seen", "reason", "ecs", "forwarder", "instance"}
)

// parseFast fills r from line and reports whether the line has the plain
// shape (see jsonScan); on false r is garbage and the caller falls back to
// encoding/json.
func parseFast(line []byte, r *fastRecord) bool {
	answers := r.answers[:0]
	*r = fastRecord{answers: answers}
	s := jsonScan{b: line}
	ok := s.object(topFields, func(k int) bool {
		var ok bool
		switch k {
		case 9: // answers
			return s.answerList(r)
		case 13: // srcids
			return s.object(srcidsFields, func(int) bool {
				r.instance, ok = s.plainOrNull()
				return ok
			})
		case 17: // dnsvalve
			return s.object(extraFields, func(k int) bool { return s.extraField(r, k) })
		}
		v, ok := s.plainOrNull()
		switch k {
		case 0:
			r.version = v
		case 1:
			r.accountID = v
		case 2:
			r.region = v
		case 3:
			r.vpcID = v
		case 4:
			r.ts = v
		case 5:
			r.qname = v
		case 6:
			r.qtype = v
		case 7:
			r.qclass = v
		case 8:
			r.rcode = v
		case 10:
			r.srcaddr = v
		case 11:
			r.srcport = v
		case 12:
			r.transport = v
		case 14:
			r.fwAction = v
		case 15:
			r.fwGroup = v
		case 16:
			r.fwList = v
		case 18:
			r.typ = v
		}
		return ok
	})
	// a top-level null decodes to nothing; let encoding/json have it
	return ok && line[0] == '{' && s.next() == 0
}

func (s *jsonScan) answerList(r *fastRecord) bool {
	if s.next() == 'n' {
		return s.lit("null")
	}
	if !s.eat('[') {
		return false
	}
	if s.eat(']') {
		return true
	}
	for {
		if s.next() != '{' { // null elements and the like: slow path
			return false
		}
		var a [3][]byte
		if !s.object(answerFields, func(k int) bool {
			var ok bool
			a[k], ok = s.plainOrNull()
			return ok
		}) {
			return false
		}
		r.answers = append(r.answers, a)
		if s.eat(']') {
			return true
		}
		if !s.eat(',') {
			return false
		}
	}
}

func (s *jsonScan) extraField(r *fastRecord, k int) bool {
	var ok bool
	switch k {
	case 7: // latency_us
		if s.next() == 'n' {
			return s.lit("null")
		}
		n, ok := s.number()
		if !ok {
			return false
		}
		r.latency, ok = parseInt64(n)
		return ok
	case 8: // score: replaced, but must decode into a float64
		if s.next() == 'n' {
			return s.lit("null")
		}
		n, ok := s.number()
		if !ok {
			return false
		}
		_, err := strconv.ParseFloat(string(n), 64)
		return err == nil
	case 9: // signals: replaced, but must be strings
		if s.next() == 'n' {
			return s.lit("null")
		}
		if !s.eat('[') {
			return false
		}
		if s.eat(']') {
			return true
		}
		for {
			if _, ok := s.plain(); !ok {
				return false
			}
			if s.eat(']') {
				return true
			}
			if !s.eat(',') {
				return false
			}
		}
	case 10, 11: // alert, newly_seen: replaced, but must be booleans
		switch s.next() {
		case 't':
			return s.lit("true")
		case 'f':
			return s.lit("false")
		case 'n':
			return s.lit("null")
		}
		return false
	}
	v, ok := s.plainOrNull()
	switch k {
	case 0:
		r.group = v
	case 1:
		r.policy = v
	case 2:
		r.category = v
	case 3:
		r.rule = v
	case 4:
		r.source = v
	case 5:
		r.cache = v
	case 6:
		r.upstream = v
	case 12:
		r.reason = v
	case 13:
		r.ecs = v
	case 14:
		r.forwarder = v
	case 15:
		r.dvInstance = v
	}
	return ok
}

// parseInt64 parses an integer JSON number (no fraction or exponent, which
// encoding/json refuses for an int64).
func parseInt64(n []byte) (int64, bool) {
	neg := n[0] == '-'
	if neg {
		n = n[1:]
	}
	if len(n) > 18 {
		return 0, false
	}
	var v int64
	for _, c := range n {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + int64(c-'0')
	}
	if neg {
		v = -v
	}
	return v, true
}
