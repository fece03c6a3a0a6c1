// Copyright 2012 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

// Package psl is golang.org/x/net/publicsuffix's lookup (v0.62.0, same
// embedded tables) without the netip.ParseAddr call that makes every lookup
// allocate an error value. The detector calls it once per query, so it has to
// be allocation-free. Callers must not pass IP literals. TestMatchesUpstream
// checks it agrees with golang.org/x/net/publicsuffix.
package psl

import "strings"

// Version is the public suffix list snapshot the tables were built from.
const Version = version

// PublicSuffix returns the public suffix of a lower-case domain without a
// trailing dot, and whether it is ICANN-managed (false for private
// suffixes and for unknown top-level labels, which fall back to the
// last label). The result is a substring of domain.
func PublicSuffix(domain string) (publicSuffix string, icann bool) {

	lo, hi := uint32(0), uint32(numTLD)
	s, suffix, icannNode, wildcard := domain, len(domain), false, false
loop:
	for {
		dot := strings.LastIndexByte(s, '.')
		if wildcard {
			icann = icannNode
			suffix = 1 + dot
		}
		if lo == hi {
			break
		}
		var f uint32
		if lo == 0 && hi == numTLD {
			f = findTLD(s[1+dot:])
		} else {
			f = find(s[1+dot:], lo, hi)
		}
		if f == notFound {
			break
		}

		u := uint32(nodes.get(f) >> (nodesBitsTextOffset + nodesBitsTextLength))
		icannNode = u&(1<<nodesBitsICANN-1) != 0
		u >>= nodesBitsICANN
		u = children.get(u & (1<<nodesBitsChildren - 1))
		lo = u & (1<<childrenBitsLo - 1)
		u >>= childrenBitsLo
		hi = u & (1<<childrenBitsHi - 1)
		u >>= childrenBitsHi
		switch u & (1<<childrenBitsNodeType - 1) {
		case nodeTypeNormal:
			suffix = 1 + dot
		case nodeTypeException:
			suffix = 1 + len(s)
			break loop
		}
		u >>= childrenBitsNodeType
		wildcard = u&(1<<childrenBitsWildcard-1) != 0
		if !wildcard {
			icann = icannNode
		}

		if dot == -1 {
			break
		}
		s = s[:dot]
	}
	if suffix == len(domain) {
		// If no rules match, the prevailing rule is "*".
		return domain[1+strings.LastIndexByte(domain, '.'):], icann
	}
	return domain[suffix:], icann
}

const notFound uint32 = 1<<32 - 1

// find returns the index of the node in the range [lo, hi) whose label equals
// label, or notFound if there is no such node. The range is assumed to be in
// strictly increasing node label order.
func find(label string, lo, hi uint32) uint32 {
	for lo < hi {
		mid := lo + (hi-lo)/2
		switch c := strings.Compare(nodeLabel(mid), label); {
		case c < 0:
			lo = mid + 1
		case c == 0:
			return mid
		default:
			hi = mid
		}
	}
	return notFound
}

// tldIndex maps each top-level label to its node (read-only after init):
// one hash lookup instead of a binary search over the TLDs, the step every
// lookup takes.
var tldIndex = func() map[string]uint32 {
	m := make(map[string]uint32, numTLD)
	for i := uint32(0); i < numTLD; i++ {
		m[nodeLabel(i)] = i
	}
	return m
}()

func findTLD(label string) uint32 {
	if i, ok := tldIndex[label]; ok {
		return i
	}
	return notFound
}

// nodeLabel returns the label for the i'th node.
func nodeLabel(i uint32) string {
	x := nodes.get(i)
	length := x & (1<<nodesBitsTextLength - 1)
	x >>= nodesBitsTextLength
	offset := x & (1<<nodesBitsTextOffset - 1)
	return text[offset : offset+length]
}

type uint32String string

func (u uint32String) get(i uint32) uint32 {
	off := i * 4
	u = u[off:] // help the compiler reduce bounds checks
	return uint32(u[3]) |
		uint32(u[2])<<8 |
		uint32(u[1])<<16 |
		uint32(u[0])<<24
}

type uint40String string

func (u uint40String) get(i uint32) uint64 {
	off := uint64(i * (nodesBits / 8))
	u = u[off:] // help the compiler reduce bounds checks
	return uint64(u[4]) |
		uint64(u[3])<<8 |
		uint64(u[2])<<16 |
		uint64(u[1])<<24 |
		uint64(u[0])<<32
}
