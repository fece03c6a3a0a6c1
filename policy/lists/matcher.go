package lists

import (
	"encoding/binary"
	"regexp"
	"slices"
	"unsafe"
)

// kind says which names an entry matches.
type kind uint8

const (
	kindSub   kind = iota // the name and every subdomain (hosts, plain, ||name^)
	kindExact             // only the name itself (RPZ, |name^)
	kindWild              // subdomains only, not the apex (*.name)
)

// shape is everything an entry shares with many others: how its rule text
// wraps the name, what it does and where it came from. Shapes are interned
// per list so each entry stores only a small shape id.
type shape struct {
	pre, post uint8 // bytes of rule text before and after the name
	kind      kind
	action    Action
	important bool
	src       uint32 // index into List.sources
}

// rank orders entries for conflict resolution: an important exception beats
// an important block beats an exception beats a block.
func rank(a Action, important bool) int {
	r := 0
	if a == Allow {
		r = 1
	}
	if important {
		r += 2
	}
	return r
}

// maxEntries is the most entries one List can hold (32-bit offsets keep
// the matcher compact); further entries are dropped.
const maxEntries = 1<<32 - 2

// regexEntry is one compiled /regex/ rule.
type regexEntry struct {
	re        *regexp.Regexp
	rule      string
	src       uint32
	line      int
	action    Action
	important bool
}

// Builder collects entries from one or more sources and compiles them into
// a List. A Builder is not safe for concurrent use; Build resets it.
type Builder struct {
	arena   []byte   // per entry: uvarint shape, uvarint line, byte nlen, rule text
	hashes  []uint64 // name hash per entry
	offs    []uint32 // arena offset per entry
	shapes  []shape
	shapeID map[shape]uint32
	srcIdx  map[string]uint32
	sources []string
	regexes []regexEntry
	dropped int
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder {
	return &Builder{shapeID: map[shape]uint32{}, srcIdx: map[string]uint32{}}
}

func (b *Builder) source(s string) uint32 {
	if i, ok := b.srcIdx[s]; ok {
		return i
	}
	i := uint32(len(b.sources))
	b.sources = append(b.sources, s)
	b.srcIdx[s] = i
	return i
}

// add records one entry. name must be normalised and valid; pre and post
// are the rule text around it (e.g. "||" and "^").
func (b *Builder) add(src uint32, line int, k kind, a Action, important bool, pre, name, post string) {
	if len(b.offs) >= maxEntries || len(b.arena) > 1<<32-1024 {
		b.dropped++
		return
	}
	sh := shape{pre: uint8(len(pre)), post: uint8(len(post)), kind: k, action: a, important: important, src: src}
	id, ok := b.shapeID[sh]
	if !ok {
		id = uint32(len(b.shapes))
		b.shapes = append(b.shapes, sh)
		b.shapeID[sh] = id
	}
	b.offs = append(b.offs, uint32(len(b.arena)))
	b.hashes = append(b.hashes, hashName(name))
	b.arena = binary.AppendUvarint(b.arena, uint64(id))
	b.arena = binary.AppendUvarint(b.arena, uint64(line))
	b.arena = append(b.arena, byte(len(name)))
	b.arena = append(b.arena, pre...)
	b.arena = append(b.arena, name...)
	b.arena = append(b.arena, post...)
}

// builderMark is a rollback point.
type builderMark struct{ arena, offs, regexes int }

func (b *Builder) mark() builderMark {
	return builderMark{len(b.arena), len(b.offs), len(b.regexes)}
}

// rollback drops every entry added since mk.
func (b *Builder) rollback(mk builderMark) {
	b.arena = b.arena[:mk.arena]
	b.offs = b.offs[:mk.offs]
	b.hashes = b.hashes[:mk.offs]
	b.regexes = b.regexes[:mk.regexes]
}

func (b *Builder) addRegex(src uint32, line int, re *regexp.Regexp, rule string, a Action, important bool) {
	b.regexes = append(b.regexes, regexEntry{re: re, rule: rule, src: src, line: line, action: a, important: important})
}

// FNV-1a, run from the last byte of the name to the first so that the hash
// of every suffix falls out of one pass at match time.
const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
	golden    = 0x9E3779B97F4A7C15
)

func hashName(s string) uint64 {
	h := uint64(fnvOffset)
	for i := len(s) - 1; i >= 0; i-- {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// List is an immutable compiled list; safe for concurrent use.
//
// Names live in one string arena; a bucketed hash directory (dir, tags,
// offs) finds them with one or two cache lines per probed suffix. Regex
// rules are kept apart and only run when the hashed entries did not
// already give the strongest possible answer.
type List struct {
	name, category string
	sources        []string
	arena          string
	shapes         []shape
	dir            []uint32 // bucket b holds ents[dir[b]:dir[b+1]]
	ents           []uint64 // low 32 bits of the name hash << 32 | arena offset
	shift          uint     // bucket = (h*golden) >> shift
	regexes        []regexEntry
	maxRank        int  // the strongest rank of any entry
	onlySub        bool // every hashed entry is a name-and-subdomains entry
}

// Name returns the list name from the config.
func (l *List) Name() string { return l.name }

// Category returns the list category (the name unless configured).
func (l *List) Category() string { return l.category }

// Len returns the number of distinct entries, regexes included.
func (l *List) Len() int { return len(l.ents) + len(l.regexes) }

// Regexps returns the number of regex rules; each one costs a regexp
// evaluation on every Match that the hashed entries do not settle.
func (l *List) Regexps() int { return len(l.regexes) }

// Sources returns the sources the entries came from, in load order.
func (l *List) Sources() []string { return slices.Clone(l.sources) }

// record decodes the entry at arena offset off.
func (l *List) record(off uint32) (sh *shape, line int, name, rule string) {
	a := l.arena[off:]
	id, n := uvarint(a)
	a = a[n:]
	ln, n := uvarint(a)
	a = a[n:]
	nlen := int(a[0])
	sh = &l.shapes[id]
	rule = a[1 : 1+int(sh.pre)+nlen+int(sh.post)]
	name = rule[sh.pre : int(sh.pre)+nlen]
	return sh, int(ln), name, rule
}

func uvarint(s string) (uint64, int) {
	var x uint64
	var shift uint
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x80 {
			return x | uint64(c)<<shift, i + 1
		}
		x |= uint64(c&0x7f) << shift
		shift += 7
	}
	return 0, len(s)
}

// Build compiles everything added so far into a List and resets b.
func (b *Builder) Build(name, category string) *List {
	if category == "" {
		category = name
	}
	n := len(b.offs)
	// The tags and offs scratch arrays are freed once ents is built.
	nb := 1
	for nb*4 < n {
		nb <<= 1
	}
	bits := uint(0)
	for 1<<bits < nb {
		bits++
	}
	l := &List{name: name, category: category, sources: b.sources, shapes: b.shapes, regexes: b.regexes}
	l.shift = 64 - bits
	if bits == 0 {
		l.shift = 63 // one bucket; (h*golden)>>63 is 0 or 1, so use two
		nb = 2
	}
	// The arena is never written again, so it can back a string without a copy.
	if len(b.arena) > 0 {
		l.arena = unsafe.String(unsafe.SliceData(b.arena), len(b.arena))
	}

	// Counting sort by bucket.
	dir := make([]uint32, nb+1)
	for _, h := range b.hashes {
		dir[(h*golden)>>l.shift+1]++
	}
	for i := 1; i <= nb; i++ {
		dir[i] += dir[i-1]
	}
	pos := slices.Clone(dir[:nb])
	tags := make([]uint32, n)
	offs := make([]uint32, n)
	for i, h := range b.hashes {
		bk := (h * golden) >> l.shift
		p := pos[bk]
		pos[bk]++
		tags[p] = uint32(h)
		offs[p] = b.offs[i]
	}
	b.hashes = nil
	b.offs = nil

	// Deduplicate within buckets: equal name and kind keep the strongest
	// rank, and among equals the first added.
	w := uint32(0)
	for bk := 0; bk < nb; bk++ {
		start, end := dir[bk], dir[bk+1]
		dir[bk] = w
		seg := w
		for i := start; i < end; i++ {
			sh, _, nm, _ := l.record(offs[i])
			dup := false
			for j := seg; j < w; j++ {
				if tags[j] != tags[i] {
					continue
				}
				sh2, _, nm2, _ := l.record(offs[j])
				if sh2.kind != sh.kind || nm2 != nm {
					continue
				}
				dup = true
				if rank(sh.action, sh.important) > rank(sh2.action, sh2.important) ||
					(rank(sh.action, sh.important) == rank(sh2.action, sh2.important) && offs[i] < offs[j]) {
					offs[j] = offs[i]
				}
				break
			}
			if !dup {
				tags[w] = tags[i]
				offs[w] = offs[i]
				w++
			}
		}
	}
	dir[nb] = w
	l.dir = dir
	l.ents = make([]uint64, w)
	for i := range l.ents {
		l.ents[i] = uint64(tags[i])<<32 | uint64(offs[i])
	}
	l.onlySub = true
	for _, sh := range l.shapes {
		if sh.kind != kindSub {
			l.onlySub = false
		}
		l.maxRank = max(l.maxRank, rank(sh.action, sh.important))
	}
	for _, r := range l.regexes {
		l.maxRank = max(l.maxRank, rank(r.action, r.important))
	}
	*b = *NewBuilder()
	return l
}

// Match reports the entry that matches name (any case, with or without
// trailing dot). Exceptions (Action==Allow) and blocks are both returned:
// if both an exception and a block match, the exception wins unless the
// block is Important (an important exception beats everything). Among
// entries of equal strength the most specific (longest) name wins, except
// in lists made only of name-and-subdomain entries of one strength, where
// the walk stops at the first (shortest) matching suffix.
// Match does not allocate (regex lists: unless name has upper case).
func (l *List) Match(name string) (Match, bool) {
	if l == nil {
		return Match{}, false
	}
	if len(name) > 0 && name[len(name)-1] == '.' {
		name = name[:len(name)-1]
	}
	if len(name) == 0 || len(name) > 253 {
		return Match{}, false
	}
	lower := true
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			lower = false
			break
		}
	}
	if lower {
		return match(l, name, name, false)
	}
	var buf [256]byte
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return match(l, buf[:len(name)], name, true)
}

type found struct {
	off  uint32
	rank int
	ok   bool
	re   int // index+1 into regexes when the match is a regex
}

// match walks the suffixes of s (already lower case, no trailing dot) from
// the shortest to the full name. orig is the caller's string, lowered for
// regexes when copied is set (s is then a stack buffer).
func match[T string | []byte](l *List, s T, orig string, copied bool) (Match, bool) {
	var best found
	h := uint64(fnvOffset)
	for i := len(s) - 1; i >= 0; i-- {
		h ^= uint64(s[i])
		h *= fnvPrime
		if i > 0 && s[i-1] != '.' {
			continue
		}
		full := i == 0
		bk := (h * golden) >> l.shift
		tag := uint32(h)
		for _, e := range l.ents[l.dir[bk]:l.dir[bk+1]] {
			if uint32(e>>32) != tag {
				continue
			}
			sh, _, nm, _ := l.record(uint32(e))
			switch sh.kind {
			case kindExact:
				if !full {
					continue
				}
			case kindWild:
				if full {
					continue
				}
			}
			if nm != string(s[i:]) {
				continue
			}
			// Longer suffixes come later, so >= prefers the most specific.
			if r := rank(sh.action, sh.important); !best.ok || r >= best.rank {
				best = found{off: uint32(e), rank: r, ok: true}
			}
		}
		if best.ok && l.onlySub && best.rank == l.maxRank {
			break // nothing longer can win
		}
	}
	if len(l.regexes) > 0 && (!best.ok || best.rank < l.maxRank) {
		rs := orig
		if copied {
			rs = toLower(orig)
		}
		for k := range l.regexes {
			re := &l.regexes[k]
			r := rank(re.action, re.important)
			if best.ok && r <= best.rank {
				continue
			}
			if re.re.MatchString(rs) {
				best = found{rank: r, ok: true, re: k + 1}
			}
		}
	}
	if !best.ok {
		return Match{}, false
	}
	if best.re > 0 {
		re := &l.regexes[best.re-1]
		return Match{Rule: re.rule, Source: l.sources[re.src], Line: re.line, Action: re.action, Important: re.important}, true
	}
	sh, line, _, rule := l.record(best.off)
	return Match{Rule: rule, Source: l.sources[sh.src], Line: line, Action: sh.action, Important: sh.important}, true
}

func toLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
