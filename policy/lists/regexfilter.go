package lists

import (
	"regexp/syntax"
	"strings"
	"unicode"
	"unicode/utf8"
)

// regexFilter holds what a regex rule's syntax says of every name it
// matches, so that most names are turned away without running the regexp:
// the literal text the name starts with, contains and ends with, its
// length in runes, and the set of its possible first bytes. The zero
// regexFilter passes every name.
type regexFilter struct {
	prefix, contains, suffix string
	minLen                   int
	maxLen                   int // -1: unbounded
	first                    [4]uint64
	firstSet                 bool // first holds the possible first bytes
}

// pass reports whether name may match the regexp the filter was made
// from. It never turns away a name the regexp matches.
func (f *regexFilter) pass(name string) bool {
	if len(name) < f.minLen { // a name has at least as many bytes as runes
		return false
	}
	if f.maxLen >= 0 && len(name) > f.maxLen && utf8.RuneCountInString(name) > f.maxLen {
		return false
	}
	if f.firstSet && (len(name) == 0 || f.first[name[0]>>6]&(1<<(name[0]&63)) == 0) {
		return false
	}
	return strings.HasPrefix(name, f.prefix) && strings.HasSuffix(name, f.suffix) && strings.Contains(name, f.contains)
}

// newRegexFilter returns the filter of regular expression expr (Go
// syntax, as regexp.Compile reads it); an expression that does not parse
// gets the zero filter.
func newRegexFilter(expr string) regexFilter {
	f := regexFilter{maxLen: -1}
	re, err := syntax.Parse(expr, syntax.Perl)
	if err != nil {
		return f
	}
	re = re.Simplify()
	subs := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		subs = re.Sub
	}
	anchoredStart := len(subs) > 1 && isBegin(subs[0])
	anchoredEnd := len(subs) > 1 && isEnd(subs[len(subs)-1])
	// A match is part of the name, so its least length bounds the name's;
	// its most only when the match must span the whole name.
	f.minLen, f.maxLen = lenBounds(re)
	if !anchoredStart || !anchoredEnd {
		f.maxLen = -1
	}
	for i, sub := range subs {
		if !isLiteral(sub) {
			continue
		}
		lit := string(sub.Rune)
		if len(lit) > len(f.contains) {
			f.contains = lit
		}
		if i == 1 && anchoredStart {
			f.prefix = lit
		}
		if i == len(subs)-2 && anchoredEnd {
			f.suffix = lit
		}
	}
	if anchoredStart {
		f.first, f.firstSet = firstBytes(subs[1])
	}
	return f
}

func isLiteral(re *syntax.Regexp) bool {
	return re.Op == syntax.OpLiteral && re.Flags&syntax.FoldCase == 0
}

// isBegin and isEnd report the anchors of a name: ^ and $ match only at
// its ends, with or without (?m), since a name holds no newline.
func isBegin(re *syntax.Regexp) bool {
	return re.Op == syntax.OpBeginText || re.Op == syntax.OpBeginLine
}

func isEnd(re *syntax.Regexp) bool {
	return re.Op == syntax.OpEndText || re.Op == syntax.OpEndLine
}

// lenBounds returns the fewest and most runes a match of re spans (max -1
// when unbounded).
func lenBounds(re *syntax.Regexp) (lo, hi int) {
	switch re.Op {
	case syntax.OpLiteral:
		return len(re.Rune), len(re.Rune)
	case syntax.OpCharClass, syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 1, 1
	case syntax.OpCapture:
		return lenBounds(re.Sub[0])
	case syntax.OpStar:
		return 0, -1
	case syntax.OpPlus:
		lo, _ := lenBounds(re.Sub[0])
		return lo, -1
	case syntax.OpQuest:
		_, hi := lenBounds(re.Sub[0])
		return 0, hi
	case syntax.OpRepeat:
		lo, hi := lenBounds(re.Sub[0])
		if re.Max < 0 || hi < 0 {
			return lo * re.Min, -1
		}
		return lo * re.Min, hi * re.Max
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			l, h := lenBounds(sub)
			lo += l
			if hi >= 0 {
				hi = h + hi
				if h < 0 {
					hi = -1
				}
			}
		}
		return lo, hi
	case syntax.OpAlternate:
		lo, hi = lenBounds(re.Sub[0])
		for _, sub := range re.Sub[1:] {
			l, h := lenBounds(sub)
			lo = min(lo, l)
			if hi >= 0 && (h < 0 || h > hi) {
				hi = h
			}
		}
		return lo, hi
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText,
		syntax.OpEndText, syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return 0, 0
	}
	return 0, -1 // OpNoMatch and anything unforeseen: no bound
}

// firstBytes returns the set of bytes a match of re can start with, when
// they are ASCII and re cannot match the empty string; ok is false
// otherwise.
func firstBytes(re *syntax.Regexp) (set [4]uint64, ok bool) {
	add := func(lo, hi rune) bool {
		if lo > hi || hi > 0x7f {
			return false
		}
		for c := lo; c <= hi; c++ {
			set[c>>6] |= 1 << (c & 63)
		}
		return true
	}
	switch re.Op {
	case syntax.OpLiteral:
		if len(re.Rune) == 0 {
			return set, false
		}
		c := re.Rune[0]
		if !add(c, c) {
			return set, false
		}
		if re.Flags&syntax.FoldCase != 0 {
			// Every case form, as the regexp folds them: 'k' also
			// matches U+212A KELVIN SIGN, which makes the set not ASCII.
			for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
				if !add(f, f) {
					return set, false
				}
			}
		}
		return set, true
	case syntax.OpCharClass:
		if len(re.Rune) == 0 {
			return set, false
		}
		for i := 0; i+1 < len(re.Rune); i += 2 {
			if !add(re.Rune[i], re.Rune[i+1]) {
				return set, false
			}
		}
		return set, true
	case syntax.OpCapture, syntax.OpPlus:
		return firstBytes(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min < 1 {
			return set, false
		}
		return firstBytes(re.Sub[0])
	case syntax.OpAlternate:
		for _, sub := range re.Sub {
			s, ok := firstBytes(sub)
			if !ok {
				return set, false
			}
			for i := range set {
				set[i] |= s[i]
			}
		}
		return set, true
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			switch sub.Op {
			case syntax.OpBeginLine, syntax.OpBeginText, syntax.OpWordBoundary, syntax.OpNoWordBoundary, syntax.OpEmptyMatch:
				continue // zero width: the next one starts the match
			}
			if lo, _ := lenBounds(sub); lo == 0 {
				return set, false // it may match empty: the next one could start the match
			}
			return firstBytes(sub)
		}
	}
	return set, false
}
