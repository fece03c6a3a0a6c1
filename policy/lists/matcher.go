package lists

import (
	"hash/maphash"
	"math"
	"math/bits"
	"regexp"
	"slices"
	"strings"
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
// per list so an entry stores at most a small shape id (nothing at all
// when the whole list has one shape, the common case).
type shape struct {
	pre, post string // rule text before and after the name ("@@||", "^$important")
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

// maxEntries is the most entries one List can hold (32-bit slot numbers
// keep the matcher compact, and the table has ~1.33 slots per entry);
// further entries are dropped. On 32-bit platforms it is half of what an
// int holds, so that the builder's array (1.5 words per entry) has a
// length an int holds too.
const maxEntries = min(3<<30, math.MaxInt/2)

// Entry key layout: the top fpBits hold the low fpBits of the name hash
// (the fingerprint; the bucket comes from the top bits), the low lineBits
// the line number. Lines that do not fit are stored as lineMask plus an
// overflow map. A fingerprint of 0 is stored as 1, so no entry's key is 0
// and 0 marks an empty slot.
const (
	lineBits = 24
	lineMask = 1<<lineBits - 1
	fpBits   = 64 - lineBits
	fpMask   = 1<<fpBits - 1
	// maxShapes bounds the number of shapes of one list.
	maxShapes = 1 << 24
	// sortLoad is the average number of entries per radix bucket of the
	// build's sort (the buckets are then sorted by insertion).
	sortLoad = 4
	// slotsPerBucket keys make one 64-byte cache line: a table bucket.
	slotsPerBucket = 8
	// The builder keeps 12 bytes (1.5 words) per entry, and the table
	// and prefilter are built in that array when its size is about right
	// (see Builder.grow): then the prefilter takes 1 byte per entry and
	// the table the rest, ~5.8 entries per 8-slot bucket (a load of ~0.73).
	// minEntriesPerBucket and maxEntriesPerBucket bound the load of a
	// table built in place (the array may hold a little more or less than
	// the entries added); one built in a fresh array has
	// maxEntriesPerBucket.
	minEntriesPerBucket = 5.0 // ~15 % of spare capacity in the builder
	maxEntriesPerBucket = 6.4 // a load of 0.8
	// bloomBitsPerEntry sizes the prefilter: 8 bits per entry (2 MB for
	// 2M names, small enough to stay in cache) with bloomK bits set per
	// entry in one 64-bit word pass ~3.4% of names that are not in the
	// list.
	bloomBitsPerEntry = 8
	bloomK            = 4
	// noText marks an entry without stored text.
	noText = ^uint32(0)
)

// bloomWord returns the prefilter word of hash h among nw words: the top
// 32 bits scaled onto the word count.
func bloomWord(h, nw uint64) uint64 { return (h >> 32 * nw) >> 32 }

// bloomMask returns the bloomK bits hash h sets in its prefilter word,
// from its low 24 bits.
func bloomMask(h uint64) uint64 {
	return 1<<(h&63) | 1<<(h>>6&63) | 1<<(h>>12&63) | 1<<(h>>18&63)
}

// ruleInfo is what a regex or wildcard rule reports when it matches: its
// text, where it came from, and what it does.
type ruleInfo struct {
	rule      string
	src       uint32
	line      int
	action    Action
	important bool
}

func (r *ruleInfo) rank() int { return rank(r.action, r.important) }

// match returns the rule as a Match; sources are the List's.
func (r *ruleInfo) match(sources []string) Match {
	return Match{Rule: r.rule, Source: sources[r.src], Line: r.line, Action: r.action, Important: r.important}
}

// regexEntry is one compiled /regex/ rule.
type regexEntry struct {
	re *regexp.Regexp
	// filter holds cheap tests every name the regexp matches passes (see
	// newRegexFilter): a regexp costs ~30 ns per call even when it fails
	// at once.
	filter regexFilter
	ruleInfo
}

// globEntry is an adblock rule with '*' wildcards ("||ads*.example.com^"),
// as AdGuard Home reads them: each '*' stands for any run of characters,
// dots included. A kindSub pattern matches the name or a suffix of it that
// starts at a label, kindExact only the whole name, kindWild only a proper
// suffix (a subdomain).
type globEntry struct {
	pattern string // lower case, without anchors and modifiers
	head    string // pattern before its first '*'
	dotHead string // "." + head
	below   string // "*." + pattern: matches where pattern matches a proper suffix
	tail    string // pattern after its last '*'
	kind    kind
	ruleInfo
}

// Builder collects entries from one or more sources and compiles them into
// a List. A Builder is not safe for concurrent use; Build resets it.
//
// Entries are kept as 12 bytes each (name hash; sequence number), never as
// text: see List for what that costs and saves. The sequence number is the
// entry's line plus an offset per parsed source, so it grows in the order
// entries are added; the shape and line of an entry are found from it in
// runs, a short table with a row each time the shape or source changes
// (one row for a plain list), which keeps the builder's peak, when a big
// list is refreshed next to the one it replaces, at 12 bytes per entry.
// Both arrays live in one allocation, buf (hashes first, then the sequence
// numbers as uint32s), which Build turns into the List's table in place:
// building a list costs no memory beyond that of the entries added.
type Builder struct {
	hash   hasher
	buf    []uint64 // cap(hashes) words of hashes, then cap(hashes) uint32 sequence numbers
	hashes []uint64 // name hash per entry: buf[:n:c]
	seqs   []uint32 // sequence number per entry (seqBase + line), a view of buf[c:]
	runs   []shapeRun
	// seqBase is added to the line numbers of the source being parsed;
	// seqLast is the highest sequence number given out.
	seqBase, seqLast uint32
	// Decorated entries ("||name^", "*.name") keep their name text so
	// Match can return the rule without allocating: tOff is the offset in
	// text of a length byte and the name, noText for bare names; nil until
	// the first decorated entry.
	text      []byte
	tOff      []uint32
	shapes    []shape
	shapeID   map[shape]uint32
	lastShape shape
	lastID    uint32
	srcIdx    map[string]uint32
	sources   []string
	regexes   []regexEntry
	globs     []globEntry
	// cancels are the rules "$badfilter" rules disable, dropped at Build.
	cancels []cancel
	dropped int
	// remaining, set while a source is parsed, estimates how many more
	// entries it will add (0 = unknown): grow sizes the arrays with it.
	remaining func() int
	// onAdd, when set (tests only), sees every hashed entry added.
	onAdd func(k kind, name string)
}

// shapeRun says that entries from sequence number start on have shape id
// and line number seq - base, up to the next run.
type shapeRun struct{ start, id, base uint32 }

// runOf returns the run of sequence number seq: the last one starting at
// or before it.
func runOf(runs []shapeRun, seq uint32) *shapeRun {
	if len(runs) == 1 {
		return &runs[0]
	}
	i, _ := slices.BinarySearchFunc(runs, seq, func(r shapeRun, seq uint32) int {
		if r.start <= seq {
			return -1
		}
		return 1
	})
	return &runs[i-1]
}

// cancel is a rule that a "$badfilter" rule disables (AdGuard's syntax:
// "||name^$badfilter" disables "||name^", the same rule without
// $badfilter), in whichever of the list's sources it is: a hashed entry
// by its name's hash and its shape but for the source, a wildcard rule or
// regex by its text. (A bare "name$badfilter" has the shape of a domains
// or hosts entry, so it disables "name" in such a source of the list too.)
type cancel struct {
	hash uint64
	sh   shape  // src 0
	rule string // a wildcard rule's or regex's text; "" for a hashed entry
	// important tells a regex's "$important" (a wildcard rule's text has it)
	important bool
}

// NewBuilder returns an empty Builder.
func NewBuilder() *Builder {
	return &Builder{hash: newHasher(), shapeID: map[shape]uint32{}, srcIdx: map[string]uint32{}, lastID: ^uint32(0)}
}

// source starts a source: its lines get sequence numbers after every
// entry added so far. It returns the source's index.
func (b *Builder) source(s string) uint32 {
	b.seqBase = b.seqLast
	if i, ok := b.srcIdx[s]; ok {
		return i
	}
	i := uint32(len(b.sources))
	b.sources = append(b.sources, redactSource(s)) // shown in matches
	b.srcIdx[s] = i
	return i
}

// add records one entry. name must be normalised and valid; pre and post
// are the rule text around it (e.g. "||" and "^"). Only a hash of name is
// kept, so name may alias a buffer the caller reuses.
func (b *Builder) add(src uint32, line int, k kind, a Action, important bool, pre, name, post string) {
	decorated := pre != "" || post != ""
	if len(b.hashes) >= maxEntries || (decorated && uint64(len(b.text))+uint64(len(name))+1 > 1<<32-2) {
		b.dropped++
		return
	}
	// Line numbers past what 32 bits hold (a source of 4 GiB or more)
	// saturate.
	seq := ^uint32(0)
	if line >= 0 && uint64(line) <= uint64(^uint32(0)-b.seqBase) {
		seq = b.seqBase + uint32(line)
	}
	sh := shape{pre: pre, post: post, kind: k, action: a, important: important, src: src}
	id := b.lastID
	if id == ^uint32(0) || sh != b.lastShape {
		var ok bool
		if id, ok = b.shapeID[sh]; !ok {
			if len(b.shapes) >= maxShapes {
				b.dropped++
				return
			}
			id = uint32(len(b.shapes))
			sh.pre, sh.post = strings.Clone(pre), strings.Clone(post)
			b.shapes = append(b.shapes, sh)
			b.shapeID[sh] = id
		}
		b.lastShape, b.lastID = b.shapes[id], id
	}
	if n := len(b.runs); n == 0 || b.runs[n-1].id != id || b.runs[n-1].base != b.seqBase {
		if n > 0 && seq <= b.seqLast {
			// A new shape on the line of the previous entry: a run needs a
			// sequence number of its own, so shift this source's numbers
			// by one (lines are seq - base, so they do not change).
			if seq == ^uint32(0) {
				b.dropped++
				return
			}
			b.seqBase++
			seq++
		}
		b.runs = append(b.runs, shapeRun{start: seq, id: id, base: b.seqBase})
	}
	if len(b.hashes) == cap(b.hashes) {
		b.grow()
	}
	if decorated {
		if b.tOff == nil {
			b.tOff = make([]uint32, len(b.hashes), cap(b.hashes))
			for i := range b.tOff {
				b.tOff[i] = noText
			}
		}
		b.tOff = append(b.tOff, uint32(len(b.text)))
		b.text = append(b.text, byte(len(name)))
		b.text = append(b.text, name...)
	} else if b.tOff != nil {
		b.tOff = append(b.tOff, noText)
	}
	if b.onAdd != nil {
		b.onAdd(k, name)
	}
	b.hashes = append(b.hashes, b.hash.name(name))
	b.seqs = append(b.seqs, seq)
	b.seqLast = max(b.seqLast, seq)
}

// grow makes room for more entries in the per-entry arrays. With an
// estimate of what the source being parsed still holds, it allocates that
// much (plus a little) once, so a 2M-entry list is not copied over and
// over by append's doubling, nor left with up to 25 % of slack (which a
// List built in place would keep); without one it doubles.
func (b *Builder) grow() {
	n := len(b.hashes)
	more := max(n, 256)
	if b.remaining != nil {
		if r := b.remaining(); r > 0 {
			more = r
		}
	}
	// add drops entries past maxEntries before it grows, so n < maxEntries.
	more = min(more, maxEntries-n)
	c := n + more
	buf := make([]uint64, c+(c+1)/2)
	hashes := buf[:n:c]
	copy(hashes, b.hashes)
	seqs := unsafe.Slice((*uint32)(unsafe.Pointer(&buf[c])), c)[:n]
	copy(seqs, b.seqs)
	b.buf, b.hashes, b.seqs = buf, hashes, seqs
	if b.tOff != nil {
		b.tOff = slices.Grow(b.tOff, more)
	}
}

// cancelEntry records that the hashed rule pre+name+post of kind k,
// action a and importance important is disabled.
func (b *Builder) cancelEntry(k kind, a Action, important bool, pre, name, post string) {
	b.cancels = append(b.cancels, cancel{hash: b.hash.name(name),
		sh: shape{pre: strings.Clone(pre), post: strings.Clone(post), kind: k, action: a, important: important}})
}

// cancelRule records that the wildcard rule or regex with text rule (and,
// for a regex, importance important) is disabled.
func (b *Builder) cancelRule(rule string, important bool) {
	b.cancels = append(b.cancels, cancel{rule: strings.Clone(rule), important: important})
}

// dropCancelled removes what the cancels disable: from the per-entry
// arrays, compacted in place before Build sorts them, and from the
// wildcard rules and regexes.
func (b *Builder) dropCancelled() {
	entries := map[uint64][]shape{}
	type ruleKey struct {
		rule      string
		important bool
	}
	rules := map[ruleKey]bool{}
	for _, c := range b.cancels {
		if c.rule == "" {
			entries[c.hash] = append(entries[c.hash], c.sh)
		} else {
			rules[ruleKey{c.rule, c.important}] = true
		}
	}
	if len(entries) > 0 {
		m := 0
		for i, h := range b.hashes {
			if shs, ok := entries[h]; ok {
				sh := b.shapes[runOf(b.runs, b.seqs[i]).id]
				sh.src = 0
				if slices.Contains(shs, sh) {
					continue
				}
			}
			b.hashes[m], b.seqs[m] = h, b.seqs[i]
			if b.tOff != nil {
				b.tOff[m] = b.tOff[i]
			}
			m++
		}
		b.hashes, b.seqs = b.hashes[:m], b.seqs[:m]
		if b.tOff != nil {
			b.tOff = b.tOff[:m]
		}
	}
	if len(rules) > 0 {
		b.globs = slices.DeleteFunc(b.globs, func(g globEntry) bool { return rules[ruleKey{g.rule, g.important}] })
		b.regexes = slices.DeleteFunc(b.regexes, func(r regexEntry) bool { return rules[ruleKey{r.rule, r.important}] })
	}
	b.cancels = nil
}

// builderMark is a rollback point.
type builderMark struct{ entries, regexes, globs, text, runs, cancels int }

func (b *Builder) mark() builderMark {
	return builderMark{len(b.hashes), len(b.regexes), len(b.globs), len(b.text), len(b.runs), len(b.cancels)}
}

// rollback drops every entry added since mk.
func (b *Builder) rollback(mk builderMark) {
	b.hashes = b.hashes[:mk.entries]
	b.seqs = b.seqs[:mk.entries]
	b.runs = b.runs[:mk.runs]
	b.text = b.text[:mk.text]
	if len(b.tOff) > mk.entries {
		b.tOff = b.tOff[:mk.entries]
	}
	b.regexes = b.regexes[:mk.regexes]
	b.globs = b.globs[:mk.globs]
	b.cancels = b.cancels[:mk.cancels]
}

func (b *Builder) addRegex(src uint32, line int, re *regexp.Regexp, rule string, a Action, important bool) {
	b.regexes = append(b.regexes, regexEntry{re: re, filter: newRegexFilter(re.String()),
		ruleInfo: ruleInfo{rule: rule, src: src, line: line, action: a, important: important}})
}

func (b *Builder) addGlob(src uint32, line int, k kind, pattern, rule string, a Action, important bool) {
	g := newGlob(k, pattern)
	g.ruleInfo = ruleInfo{rule: rule, src: src, line: line, action: a, important: important}
	b.globs = append(b.globs, g)
}

// newGlob returns the entry of a pattern of kind k (which has a '*').
func newGlob(k kind, pattern string) globEntry {
	first, last := strings.IndexByte(pattern, '*'), strings.LastIndexByte(pattern, '*')
	return globEntry{pattern: pattern, kind: k, head: pattern[:first], dotHead: "." + pattern[:first],
		below: "*." + pattern, tail: pattern[last+1:]}
}

// Name hashing. A name is hashed label by label from the right: each
// label's bytes are folded into the running state with a wyhash-style
// multiply-mix keyed by per-List random secrets, so the hash of every
// suffix that starts at a label falls out of one pass over the query name,
// and nobody can compute in advance a name that collides with a list
// entry (the secrets are not reproducible across builds).
type hasher struct{ k0, k1, k2 uint64 }

func newHasher() hasher {
	seed := maphash.MakeSeed()
	return hasher{
		k0: maphash.String(seed, "k0") | 1,
		k1: maphash.String(seed, "k1"),
		k2: maphash.String(seed, "k2"),
	}
}

const (
	hashInit = 0x243F6A8885A308D3
)

// mum is the 64x64->128 multiply folded to 64 bits.
func mum(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	return hi ^ lo
}

func r8(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

func r4(s string, i int) uint64 {
	_ = s[i+3]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24
}

// label folds one label (any length, possibly empty) into state h. For a
// given length the (a, b) words determine the bytes uniquely, and the
// length enters through a secret multiple, so equal hashes of different
// label sequences happen only by chance (~2^-64), never by construction.
func (x hasher) label(h uint64, s string) uint64 {
	n := len(s)
	var a, b uint64
	switch {
	case n == 0:
	case n < 4:
		a = uint64(s[0]) | uint64(s[n>>1])<<8 | uint64(s[n-1])<<16
	case n <= 8:
		a = r4(s, 0)
		b = r4(s, n-4)
	case n <= 16:
		a = r8(s, 0)
		b = r8(s, n-8)
	default:
		i := 0
		for ; n-i > 16; i += 16 {
			h = mum(r8(s, i)^x.k1, r8(s, i+8)^h)
		}
		a = r8(s, n-16)
		b = r8(s, n-8)
	}
	return mum(a^h^x.k1, b^(uint64(n)*x.k0)^x.k2)
}

// lastDot returns the index of the last '.' in s[:end], or -1. It tests
// eight bytes at a time: (b&0x7f)+0x7f sets the high bit of every byte
// whose low seven bits are non-zero, without carries between bytes.
func lastDot(s string, end int) int {
	const lo7, dots = 0x7f7f7f7f7f7f7f7f, 0x2e2e2e2e2e2e2e2e
	for ; end >= 8; end -= 8 {
		x := r8(s, end-8) ^ dots
		if m := ^((x&lo7 + lo7) | x | lo7); m != 0 {
			return end - 8 + (63-bits.LeadingZeros64(m))>>3
		}
	}
	for end--; end >= 0; end-- {
		if s[end] == '.' {
			break
		}
	}
	return end
}

func (x hasher) name(s string) uint64 {
	h := uint64(hashInit)
	end := len(s)
	for {
		i := lastDot(s, end) + 1
		h = x.label(h, s[i:end])
		if i == 0 {
			return h
		}
		end = i - 1
	}
}

// shapeIndex maps an entry to its shape id, in the narrowest width that
// holds every id; empty when the list has a single shape.
type shapeIndex struct {
	w8  []uint8
	w16 []uint16
	w32 []uint32
}

func (x *shapeIndex) at(i uint32) uint32 {
	switch {
	case x.w8 != nil:
		return uint32(x.w8[i])
	case x.w16 != nil:
		return uint32(x.w16[i])
	case x.w32 != nil:
		return x.w32[i]
	}
	return 0
}

func (x *shapeIndex) set(i, id uint32) {
	switch {
	case x.w8 != nil:
		x.w8[i] = uint8(id)
	case x.w16 != nil:
		x.w16[i] = uint16(id)
	case x.w32 != nil:
		x.w32[i] = id
	}
}

// grow extends the index to n entries (new ones 0).
func (x *shapeIndex) grow(n int) {
	switch {
	case x.w8 != nil:
		x.w8 = append(x.w8, make([]uint8, n-len(x.w8))...)
	case x.w16 != nil:
		x.w16 = append(x.w16, make([]uint16, n-len(x.w16))...)
	case x.w32 != nil:
		x.w32 = append(x.w32, make([]uint32, n-len(x.w32))...)
	}
}

// List is an immutable compiled list; safe for concurrent use.
//
// Entry names are not stored. Each hashed entry is one uint64 key (40
// bits of name hash, 24 bits of line number) in a table of buckets of
// eight keys, one 64-byte cache line each. The bucket comes straight from
// the top bits of the hash (a multiply-shift onto the bucket count), so a
// probe is a single cache miss: no directory to read first. Entries are
// placed in hash order, each in its bucket or, when that is full, in the
// next free slot after it (linear probing; the table records the farthest
// any entry landed from its bucket). At ~0.73 entries per slot, with the
// prefilter below, that is about 12 bytes per entry (what the Builder
// held: the table is built in its array), against the 20-30 bytes of the
// names themselves. For a bare-name entry (hosts, plain
// domains, RPZ names) the matched rule is the suffix of the query that
// matched, so it is not stored. Decorated rules ("||name^", "*.name",
// "@@||name^$important") do keep their text (plus 4 bytes of offset per
// entry) so that Match can return them without allocating: an adblock list
// costs about as much as the names' text.
//
// The trade-off: an entry matches when its bucket and 40 fingerprint
// bits of the seeded 64-bit hash agree, not when the text does. A probe
// compares against the keys from its bucket's first slot up to its own
// entries (about 8, a few more when the bucket has spilled), so a name
// that is not in the list falsely matches with probability about
// 8 × 2^-40 ≈ 7e-12 per probed suffix (a few probes per query), and some
// two distinct list names of n merge as one (a probe for one finds the
// other's key first) with probability about n × 8 × 2^-41, ~7e-6 for 2M
// names. The hash
// seed is random per List, so collisions cannot be aimed at and are not
// reproducible across builds. Verifying against stored text would remove
// that risk at the cost of the text itself (~40 MB for 2M names).
//
// In front of the keys sits a prefilter: a Bloom filter of one 64-bit
// word per probe (8 bits per entry, ~2 MB for 2M names, so it stays in
// cache) built from the same hashes. A probed suffix whose bits are not
// all set is not in the list and costs no table load; ~3.4% of
// absent names pass it and are then settled by the keys. The prefilter
// only removes candidates, so the false-match analysis above is that of
// the keys alone.
//
// Regex rules and wildcard rules ("||ads*.example.com^") are kept apart and
// only run when the hashed entries did not already give the strongest
// possible answer. Wildcard rules are indexed by the longest whole-label
// suffix every name they match must end with (the text after the last '*'
// from its first dot on: "example.com" here), hashed like the entries, so a
// query only tries the rules whose suffix it has; rules without one
// (ending in '*', or "||ads*com^") are tried on every query.
type List struct {
	name, category string
	sources        []string
	hash           hasher
	shapes         []shape
	sids           shapeIndex     // shape id per slot; empty when len(shapes) <= 1
	keys           []uint64       // the table: fingerprint << lineBits | line per slot, 0 when empty; 64-byte aligned
	bloom          []uint64       // prefilter: bloomMask(h) set in word bloomWord(h); shares keys' array
	nbuckets       uint64         // home bucket of hash h: (h>>32 * nbuckets) >> 32
	span           int            // slots a probe may scan: entries sit at most span-1 slots after their bucket's first
	n              int            // entries in the table
	bigLines       map[uint32]int // slot -> line, for lines >= lineMask
	rules          string         // decorated rules' text, in slot order
	ruleOff        []uint32       // slot j's rule is rules[ruleOff[j]:ruleOff[j+1]]; empty for bare names
	regexes        []regexEntry
	globs          []globEntry
	globIdx        map[uint64][]int32 // suffix hash -> globs ending in that suffix
	globAny        []int32            // globs without a whole-label suffix
	maxRank        int                // the strongest rank of any entry
	onlySub        bool               // every hashed entry is a name-and-subdomains entry
	inPlace        bool               // keys and bloom were built in the builder's array (tests)
	hugeBytes      int                // bytes of keys and bloom on transparent huge pages
	hugeErr        error              // why they are not, when the kernel refused
}

// Name returns the list name from the config.
func (l *List) Name() string { return l.name }

// Category returns the list category (the name unless configured).
func (l *List) Category() string { return l.category }

// Len returns the number of distinct entries, regexes included.
func (l *List) Len() int { return l.n + len(l.regexes) + len(l.globs) }

// HugePageBytes returns how many bytes of the list's table the kernel
// backs with transparent huge pages, and the error when it refused (a
// kernel before Linux 6.1, or THP disabled): 0 and nil for a small table
// or on other systems.
func (l *List) HugePageBytes() (int, error) { return l.hugeBytes, l.hugeErr }

// Regexps returns the number of regex rules; each one costs a regexp
// evaluation on every Match that the hashed entries do not settle.
func (l *List) Regexps() int { return len(l.regexes) }

// Sources returns the sources the entries came from, in load order.
func (l *List) Sources() []string { return slices.Clone(l.sources) }

func (l *List) shapeAt(i uint32) *shape {
	return &l.shapes[l.sids.at(i)]
}

func (l *List) line(i uint32) int {
	ln := int(l.keys[i] & lineMask)
	if ln == lineMask {
		return l.bigLines[i]
	}
	return ln
}

// Build compiles everything added so far into a List and resets b.
//
// The table and the prefilter are written into the builder's own array
// (see Builder) when it has about the right size, which it has when the
// sources' sizes were known: pass one sorts the entries, keeps one per
// (name, kind), works out every entry's slot and packs its key into the
// front of the array, consuming the sequence numbers; pass two moves the
// keys to the array's end and places them from its front, each slot
// written only after the keys stored there were read. So a build's peak is
// the builder's 12 bytes per entry plus the sort's directory (~1 byte per
// entry), not that plus a second, fresh table.
func (b *Builder) Build(name, category string) *List {
	if category == "" {
		category = name
	}
	if len(b.cancels) > 0 {
		b.dropCancelled()
	}
	l := &List{name: name, category: category, sources: b.sources, shapes: b.shapes, regexes: b.regexes, hash: b.hash}
	l.indexGlobs(b.globs)
	buf, hs, seqs, tOff, text, runs := b.buf, b.hashes, b.seqs, b.tOff, b.text, b.runs
	n := len(hs)
	if n == 0 {
		l.finish(b)
		return l
	}
	b.buf, b.hashes, b.seqs, b.tOff, b.text = nil, nil, nil, nil, nil
	var sortBits uint
	for n>>sortBits > sortLoad {
		sortBits++
	}
	nsb := 1 << sortBits
	dir := make([]uint32, nsb+1)
	sortBuckets(hs, seqs, tOff, sortBits, dir)
	less := func(i, j int) bool {
		if hs[i] != hs[j] {
			return hs[i] < hs[j]
		}
		return seqs[i] < seqs[j]
	}
	// Within each sort bucket: sort by hash, then sequence number (the
	// order the entries were added in).
	for bk := range nsb {
		start, end := int(dir[bk]), int(dir[bk+1])
		for i := start + 1; i < end; i++ { // insertion sort: ~4 per bucket
			for j := i; j > start && less(j, j-1); j-- {
				hs[j], hs[j-1] = hs[j-1], hs[j]
				seqs[j], seqs[j-1] = seqs[j-1], seqs[j]
				if tOff != nil {
					tOff[j], tOff[j-1] = tOff[j-1], tOff[j]
				}
			}
		}
	}

	// The geometry: the prefilter, then the number of buckets that fills
	// the rest of buf (one spare bucket and alignment included) if that
	// gives a load in range, else maxEntriesPerBucket per bucket in a
	// fresh array. Duplicates, dropped below, only make it emptier.
	nw := max(1, n*bloomBitsPerEntry/64)
	nb := (len(buf) - nw - slotsPerBucket - 7) / slotsPerBucket
	inPlace := float64(nb) >= float64(n)/maxEntriesPerBucket && float64(nb) <= float64(n)/minEntriesPerBucket
	if !inPlace {
		nb = max(1, int(math.Ceil(float64(n)/maxEntriesPerBucket)))
	}
	l.nbuckets = uint64(nb)
	// The prefilter is set from the full hashes in pass one, in an array
	// of its own (buf is full then), and copied to buf in pass two.
	bloom := make([]uint64, nw)
	nslots := nb*slotsPerBucket + slotsPerBucket
	if len(b.shapes) > 1 {
		switch {
		case len(b.shapes) <= 1<<8:
			l.sids.w8 = make([]uint8, nslots)
		case len(b.shapes) <= 1<<16:
			l.sids.w16 = make([]uint16, nslots)
		default:
			l.sids.w32 = make([]uint32, nslots)
		}
	}
	var rules []byte
	if tOff != nil {
		l.ruleOff = make([]uint32, 0, nslots+1)
	}
	// homes counts the keys of each bucket, in the sort directory's memory
	// (it has at least a bucket per 5 entries).
	var homes []uint32
	if len(dir) >= nb {
		homes = dir[:nb]
		clear(homes)
	} else {
		homes = make([]uint32, nb)
	}
	dir = nil
	shapeOf := func(x int) *shape { return &b.shapes[runOf(runs, seqs[x]).id] }

	// Pass one: keep one entry per (name, kind), the strongest, the first
	// added among equals, in kind order. Entries are visited in hash
	// order, so their home buckets never decrease and each goes to the
	// first free slot at or after its home bucket's first slot; everything
	// but the key is stored by slot now, the key is packed into hs[m]
	// (m never passes the entries already read) and its bucket counted.
	m := 0
	maxDist := 0
	next := 0 // the first free slot
	type winner struct {
		x int
		r *shapeRun
	}
	for i := 0; i < n; {
		h := hs[i]
		j := i + 1
		for j < n && hs[j] == h {
			j++
		}
		var wins [kindWild + 1]winner
		nwin := 0
		for k := kindSub; k <= kindWild; k++ {
			best := -1
			var bestRun *shapeRun
			for x := i; x < j; x++ {
				r := runOf(runs, seqs[x])
				sh := &b.shapes[r.id]
				if sh.kind != k {
					continue
				}
				if best < 0 || rank(sh.action, sh.important) > rank(shapeOf(best).action, shapeOf(best).important) {
					best, bestRun = x, r
				}
			}
			if best >= 0 {
				wins[nwin] = winner{best, bestRun}
				nwin++
			}
		}
		home := int(l.home(h))
		for _, w := range wins[:nwin] {
			next = max(next, home*slotsPerBucket)
			if next == nslots { // the last buckets spilled past the end
				nslots += slotsPerBucket
				l.sids.grow(nslots)
			}
			slot := uint32(next)
			maxDist = max(maxDist, next/slotsPerBucket-home)
			next++
			line := uint64(seqs[w.x] - w.r.base)
			if line >= lineMask {
				if l.bigLines == nil {
					l.bigLines = map[uint32]int{}
				}
				l.bigLines[slot] = int(line)
				line = lineMask
			}
			l.sids.set(slot, w.r.id)
			if l.ruleOff != nil {
				// Empty slots before this one get empty rules.
				for len(l.ruleOff) <= int(slot) {
					l.ruleOff = append(l.ruleOff, uint32(len(rules)))
				}
				if t := tOff[w.x]; t != noText {
					sh := &b.shapes[w.r.id]
					rules = append(rules, sh.pre...)
					rules = append(rules, text[t+1:t+1+uint32(text[t])]...)
					rules = append(rules, sh.post...)
				}
			}
			hs[m] = fingerprint(h)<<lineBits | line
			m++
			homes[home]++
			bloom[bloomWord(h, uint64(nw))] |= bloomMask(h)
		}
		i = j
	}
	seqs, tOff, text = nil, nil, nil
	l.n = m
	if l.ruleOff != nil {
		for len(l.ruleOff) <= nslots {
			l.ruleOff = append(l.ruleOff, uint32(len(rules)))
		}
		l.ruleOff = slices.Clip(l.ruleOff)
		l.rules = string(rules)
	}

	// Pass two: the prefilter at the front of dst, the table from the
	// next 64-byte boundary. In place, dst is buf and the keys are first
	// moved to its end, out of the way of the table's front (see placeKeys
	// for why the table never overwrites a key not yet placed).
	dst, t0, src := buf, alignedIndex(buf, nw), hs[:m]
	if l.inPlace = inPlace && t0+nslots <= len(buf); l.inPlace {
		src = buf[len(buf)-m:]
		copy(src, hs[:m])
	} else {
		dst = make([]uint64, nw+7+nslots)
		t0 = alignedIndex(dst, nw)
	}
	buf, hs = nil, nil
	l.bloom = dst[:nw:nw]
	copy(l.bloom, bloom)
	l.keys = placeKeys(dst, t0, nslots, homes, src)
	l.hugeBytes, l.hugeErr = collapseHuge(dst[:t0+nslots])
	l.span = (maxDist + 1) * slotsPerBucket
	l.finish(b)
	return l
}

// placeKeys is Build's second pass: it writes the table, nslots keys,
// to dst from index t0 on and returns it. src holds the keys in hash
// order, homes[bk] of them for bucket bk; each goes to the first free slot
// at or after its bucket's first (nslots leaves room for every one, as
// Build's first pass made sure).
//
// src may be the last len(src) words of dst[:t0+nslots] (or of a longer
// dst): slots are written in increasing order, and slots are distinct and
// below nslots, so when the k-th key (from 1) goes to slot s, the
// len(src)-k keys after it still need slots above s: s < nslots-(len(src)-k),
// so t0+s lies before src[k], the first key not yet read. The gaps cleared
// on the way lie below s too.
func placeKeys(dst []uint64, t0, nslots int, homes []uint32, src []uint64) []uint64 {
	keys := dst[t0 : t0+nslots : t0+nslots]
	rd, done := 0, 0 // src[rd] is the next key; keys[:done] are written
	for bk, c := range homes {
		for ; c > 0; c-- {
			slot := max(done, bk*slotsPerBucket)
			clear(keys[done:slot])
			keys[slot] = src[rd]
			rd++
			done = slot + 1
		}
	}
	clear(keys[done:])
	return keys
}

// finish sets the list-wide summaries and resets b.
func (l *List) finish(b *Builder) {
	l.onlySub = true
	for _, sh := range l.shapes {
		if sh.kind != kindSub {
			l.onlySub = false
		}
		l.maxRank = max(l.maxRank, rank(sh.action, sh.important))
	}
	for i := range l.regexes {
		l.maxRank = max(l.maxRank, l.regexes[i].rank())
	}
	for i := range l.globs {
		l.maxRank = max(l.maxRank, l.globs[i].rank())
	}
	*b = *NewBuilder()
}

// home returns the bucket of hash h: the top 32 bits scaled onto the
// bucket count, so buckets follow hash order.
func (l *List) home(h uint64) uint64 {
	return (h >> 32 * l.nbuckets) >> 32
}

// fingerprint returns the part of hash h a key keeps: its low fpBits,
// never 0 (0 is an empty slot).
func fingerprint(h uint64) uint64 {
	fp := h & fpMask
	if fp == 0 {
		fp = 1
	}
	return fp
}

// alignedIndex returns the first index at or after i of a word of buf
// that starts on a 64-byte boundary (buf needs 7 words of slack), so that
// each bucket of slotsPerBucket keys from there is exactly one cache line.
func alignedIndex(buf []uint64, i int) int {
	if r := (uintptr(unsafe.Pointer(unsafe.SliceData(buf))) + uintptr(i)*8) % 64; r != 0 {
		i += int(64-r) / 8
	}
	return i
}

// sortBuckets orders the (hash, sequence number) pairs by the top bits of the hash
// and fills dir (len 1<<bits + 1) with the bucket offsets. Two passes keep
// memory traffic cache friendly without a second full-size array: an
// in-place 256-way partition on the top 8 bits (256 write streams stay in
// cache), then a counting sort of each partition on the remaining bits
// through a scratch buffer the size of one partition.
func sortBuckets(hs []uint64, meta, aux []uint32, bits uint, dir []uint32) {
	r1 := min(bits, 8)
	n1 := 1 << r1
	shift1 := 64 - r1
	var cnt [257]uint32
	for _, h := range hs {
		cnt[h>>shift1+1]++
	}
	for i := 1; i <= n1; i++ {
		cnt[i] += cnt[i-1]
	}
	var next [256]uint32
	copy(next[:], cnt[:n1])
	for bk := range n1 {
		end := cnt[bk+1]
		for i := next[bk]; i < end; i = next[bk] {
			h, m := hs[i], meta[i]
			var x uint32
			if aux != nil {
				x = aux[i]
			}
			for t := h >> shift1; t != uint64(bk); t = h >> shift1 {
				j := next[t]
				next[t]++
				h, hs[j] = hs[j], h
				m, meta[j] = meta[j], m
				if aux != nil {
					x, aux[j] = aux[j], x
				}
			}
			hs[i], meta[i] = h, m
			if aux != nil {
				aux[i] = x
			}
			next[bk]++
		}
	}
	r2 := bits - r1
	if r2 == 0 {
		for i := range n1 + 1 {
			dir[i] = cnt[i]
		}
		return
	}
	n2 := 1 << r2
	mask2 := uint64(n2 - 1)
	shift2 := 64 - bits
	var scratchH []uint64
	var scratchM, scratchA []uint32
	pos := make([]uint32, n2+1)
	for top := range n1 {
		a, b := cnt[top], cnt[top+1]
		ph, pm := hs[a:b], meta[a:b]
		clear(pos)
		for _, h := range ph {
			pos[(h>>shift2)&mask2+1]++
		}
		for i := 1; i <= n2; i++ {
			pos[i] += pos[i-1]
		}
		d := dir[top<<r2:]
		for i := range n2 {
			d[i] = a + pos[i]
		}
		scratchH = slices.Grow(scratchH[:0], len(ph))[:len(ph)]
		scratchM = slices.Grow(scratchM[:0], len(ph))[:len(ph)]
		var pa []uint32
		if aux != nil {
			pa = aux[a:b]
			scratchA = slices.Grow(scratchA[:0], len(ph))[:len(ph)]
		}
		for i, h := range ph {
			sb := (h >> shift2) & mask2
			p := pos[sb]
			pos[sb]++
			scratchH[p], scratchM[p] = h, pm[i]
			if aux != nil {
				scratchA[p] = pa[i]
			}
		}
		copy(ph, scratchH)
		copy(pm, scratchM)
		copy(pa, scratchA)
	}
	dir[1<<bits] = uint32(len(hs))
}

// Match reports the entry that matches name (any case, with or without
// trailing dot). Exceptions (Action==Allow) and blocks are both returned:
// if both an exception and a block match, the exception wins unless the
// block is Important (an important exception beats everything). Among
// entries of equal strength the most specific (longest) name wins, except
// in lists made only of name-and-subdomain entries of one strength, where
// the walk stops at the first (shortest) matching suffix.
//
// Match does not allocate when nothing matches, when the matched rule is
// decorated ("||name^", "*.name": stored text), nor when it is a bare name
// (hosts, plain domains, RPZ names) and that part of name is lower case:
// Rule is then a substring of name. It allocates Rule for a bare name
// whose matched part has upper case, and a lower-cased copy of name when
// a regexp runs on a name with upper case.
func (l *List) Match(name string) (m Match, ok bool) {
	if l == nil {
		return Match{}, false
	}
	if len(name) > 0 && name[len(name)-1] == '.' {
		name = name[:len(name)-1]
	}
	if len(name) == 0 || len(name) > 253 {
		return Match{}, false
	}
	lastUpper := lastUpperIndex(name)
	if lastUpper < 0 {
		ok = l.match(name, name, -1, &m)
		return
	}
	var buf [253]byte
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	// s lives on this stack frame: match only hashes it and copies from it.
	ok = l.match(unsafe.String(&buf[0], len(name)), name, lastUpper, &m)
	return
}

// lastUpperIndex returns the index of the last byte of s in 'A'..'Z', or
// -1. It tests eight bytes at a time: with the high bits cleared, adding
// 0x3f sets a byte's high bit when it is >= 'A' and adding 0x25 when it is
// > 'Z', without carries between bytes; bytes >= 0x80 are masked out.
func lastUpperIndex(s string) int {
	const lo7, hi, geA, gtZ = 0x7f7f7f7f7f7f7f7f, 0x8080808080808080, 0x3f3f3f3f3f3f3f3f, 0x2525252525252525
	end := len(s)
	for ; end >= 8; end -= 8 {
		w := r8(s, end-8)
		x := w & lo7
		if m := (x + geA) &^ (x + gtZ) &^ w & hi; m != 0 {
			return end - 8 + (63-bits.LeadingZeros64(m))>>3
		}
	}
	for end--; end >= 0; end-- {
		if c := s[end]; 'A' <= c && c <= 'Z' {
			break
		}
	}
	return end
}

// probe looks up every suffix of s that starts at a label, shortest first,
// and returns the best hashed entry.
//
// A suffix that passes the prefilter has its home bucket loaded and
// examined at once. The CPU does not wait for that load: it predicts the
// branches on the bucket's keys and goes on to hash the next suffixes and
// issue their loads, so the cache misses of several suffixes overlap. The
// prefilter test is a branch for the same reason: most suffixes fail it,
// and a bucket's load waits only on its own suffix's prefilter word. (An
// earlier version hashed a batch of suffixes first and counted those that
// passed without a branch; that made each one's place in the batch depend
// on every earlier prefilter load, which chained them: ~60 ns more per
// hit on a 2M-name list.)
func (l *List) probe(s string) found {
	var best found
	keys := l.keys
	bloom := l.bloom
	nw := uint64(len(bloom))
	h := uint64(hashInit)
	for end := len(s); end >= 0; {
		i := lastDot(s, end) + 1
		h = l.hash.label(h, s[i:end])
		end = i - 1 // -1 after the full name
		if m := bloomMask(h); bloom[bloomWord(h, nw)]&m != m {
			continue
		}
		fp := fingerprint(h)
		slot := int(l.home(h)) * slotsPerBucket
		stop := min(slot+l.span, len(keys))
		matched := false
		for j := slot; j < stop; j++ {
			key := keys[j]
			if key == 0 {
				break // entries fill slots from their bucket on, without gaps
			}
			if key>>lineBits != fp {
				if matched {
					break // a name's entries are adjacent
				}
				continue
			}
			matched = true
			sh := l.shapeAt(uint32(j))
			switch sh.kind {
			case kindExact:
				if i != 0 {
					continue
				}
			case kindWild:
				if i == 0 {
					continue
				}
			}
			// Longer suffixes come later, so >= prefers the most specific.
			if r := rank(sh.action, sh.important); !best.ok() || r >= best.rank {
				best = found{at: uint32(j), start: int32(i), rank: r, from: fromTable}
			}
		}
		if best.ok() && l.onlySub && best.rank == l.maxRank {
			return best // nothing longer can win
		}
	}
	return best
}

// found is the strongest rule matched so far. It has at most four fields
// of at most 32 bytes, so the compiler keeps it in registers: a larger
// struct lives on the stack, and its copies (probe's result, each update)
// are vector loads of fields just stored as scalars, which stall on store
// forwarding (~10 ns each, a third of a cached hit).
type found struct {
	at    uint32 // slot of a hashed entry, or index into regexes or globs
	start int32  // where a hashed entry's suffix starts in the name
	rank  int
	from  uint8 // fromNone (nothing matched), fromTable, fromRegex or fromGlob
}

// Where a found rule is.
const (
	fromNone uint8 = iota
	fromTable
	fromRegex
	fromGlob
)

func (f found) ok() bool { return f.from != fromNone }

// match walks the suffixes of s (lower case, no trailing dot) from the
// shortest to the full name. orig is the caller's name (same length);
// lastUpper is the index of its last upper-case byte, -1 for none (s is
// then orig). s must not be retained: it may point into Match's frame.
// It reports whether a rule matched and writes it to *m (Match's result:
// returning a Match would copy it through the stack, see found).
func (l *List) match(s, orig string, lastUpper int, m *Match) bool {
	var best found
	if l.n > 0 {
		best = l.probe(s)
	}
	if len(l.globs) > 0 && (!best.ok() || best.rank < l.maxRank) {
		best = l.matchGlobs(s, best)
	}
	if len(l.regexes) > 0 && (!best.ok() || best.rank < l.maxRank) {
		// The filters read s; a regexp gets rs, which must not point into
		// Match's frame: orig, or when it has upper case a copy of s, made
		// only once a filter lets a name through.
		rs := ""
		for k := range l.regexes {
			re := &l.regexes[k]
			r := re.rank()
			if best.ok() && r <= best.rank || !re.filter.pass(s) {
				continue
			}
			if rs == "" {
				rs = orig
				if lastUpper >= 0 {
					rs = strings.Clone(s)
				}
			}
			if re.re.MatchString(rs) {
				best = found{at: uint32(k), rank: r, from: fromRegex}
			}
		}
	}
	switch best.from {
	case fromNone:
		return false
	case fromRegex:
		*m = l.regexes[best.at].match(l.sources)
		return true
	case fromGlob:
		*m = l.globs[best.at].match(l.sources)
		return true
	}
	idx, start := best.at, int(best.start)
	sh := l.shapeAt(idx)
	var rule string
	switch {
	case l.ruleOff != nil && l.ruleOff[idx] != l.ruleOff[idx+1]:
		rule = l.rules[l.ruleOff[idx]:l.ruleOff[idx+1]]
	case sh.pre == "" && sh.post == "" && lastUpper < start:
		rule = orig[start:]
	case sh.pre == "" && sh.post == "":
		rule = strings.Clone(s[start:])
	default:
		rule = sh.pre + s[start:] + sh.post
	}
	m.Rule, m.Source, m.Line, m.Action, m.Important = rule, l.sources[sh.src], l.line(idx), sh.action, sh.important
	return true
}

// globSuffix returns the longest whole-label suffix that every name
// matching pattern ends with: what follows the last '*' from its first dot
// on ("" when there is none).
func globSuffix(pattern string) string {
	fixed := pattern[strings.LastIndexByte(pattern, '*')+1:]
	if i := strings.IndexByte(fixed, '.'); i >= 0 {
		return fixed[i+1:]
	}
	return ""
}

// indexGlobs keeps globs and indexes them by the hash of their suffix.
func (l *List) indexGlobs(globs []globEntry) {
	if len(globs) == 0 {
		return
	}
	// One of each rule (the first seen), like the hashed entries: Len
	// counts distinct rules.
	type ruleKey struct {
		pattern   string
		kind      kind
		action    Action
		important bool
	}
	seen := make(map[ruleKey]bool, len(globs))
	kept := globs[:0]
	for _, g := range globs {
		if k := (ruleKey{g.pattern, g.kind, g.action, g.important}); !seen[k] {
			seen[k] = true
			kept = append(kept, g)
		}
	}
	clear(globs[len(kept):])
	globs = kept
	l.globs = globs
	l.globIdx = map[uint64][]int32{}
	for i, g := range globs {
		if suf := globSuffix(g.pattern); suf != "" {
			h := l.hash.name(suf)
			l.globIdx[h] = append(l.globIdx[h], int32(i))
		} else {
			l.globAny = append(l.globAny, int32(i))
		}
	}
}

// matchGlobs tries the wildcard rules whose suffix s has (and those
// without one) and returns best, or the stronger glob match.
func (l *List) matchGlobs(s string, best found) found {
	try := func(ids []int32) {
		for _, id := range ids {
			g := &l.globs[id]
			r := g.rank()
			if best.ok() && r <= best.rank {
				continue
			}
			if g.matchName(s) {
				best = found{at: uint32(id), rank: r, from: fromGlob}
			}
		}
	}
	try(l.globAny)
	h := uint64(hashInit)
	for end := len(s); end >= 0; {
		i := lastDot(s, end) + 1
		h = l.hash.label(h, s[i:end])
		if ids := l.globIdx[h]; ids != nil {
			try(ids)
		}
		end = i - 1
	}
	return best
}

// matchName reports whether the rule matches name (lower case): the whole
// name, or a suffix starting at a label, as its kind allows.
//
// A suffix below the apex is matched as "*." + pattern, since '*' spans
// dots: at most two runs of globMatch, O(len(pattern) * len(name)) each.
// Two cheap tests come first, as most rules tried fail them: the name must
// end with the pattern's text after its last '*', and contain the text
// before its first '*' where a match would start it.
func (g *globEntry) matchName(name string) bool {
	if !strings.HasSuffix(name, g.tail) {
		return false
	}
	if g.kind != kindWild && strings.HasPrefix(name, g.head) && globMatch(g.pattern, name) {
		return true
	}
	return g.kind != kindExact && strings.Contains(name, g.dotHead) && globMatch(g.below, name)
}

// globMatch reports whether s matches pattern, where '*' stands for any
// run of bytes and every other byte for itself. It backtracks only to the
// last '*', so it runs in O(len(pattern) * len(s)) at worst.
func globMatch(pattern, s string) bool {
	p, i := 0, 0
	star, mark := -1, 0
	for i < len(s) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, i
			p++
		case p < len(pattern) && pattern[p] == s[i]:
			p++
			i++
		case star >= 0:
			p = star + 1
			mark++
			i = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
