package detect

import (
	"math"
	"strings"

	"github.com/dnsvalve/dnsvalve/detect/internal/psl"
)

// Features are the per-query facts the detector scores. All string fields
// are substrings of the qname passed to Extract (no copies).
type Features struct {
	// Registered is the registered domain (eTLD+1) without a trailing dot,
	// or the whole name when it has no label left of its public suffix.
	// Names whose top label is not a known TLD use that label as suffix
	// (so "api.ns.svc.cluster.local" registers as "cluster.local").
	Registered string
	// Sub is the part left of Registered, without the joining dot.
	Sub string
	// SubLen is len(Sub), dots included.
	SubLen int
	// MaxLabel is the longest label of Sub.
	MaxLabel int
	// Labels is the number of labels in Sub.
	Labels int
	// Entropy is the Shannon entropy (bits per character) of Sub without dots.
	Entropy float64
	// DigitShare, HexShare, Base32Share and Base64Share are the shares of
	// Sub's characters (dots excluded) that are digits, in [0-9a-fA-F], in
	// the RFC 4648 base32 alphabet [a-zA-Z2-7] and in the base64/base64url
	// alphabet [A-Za-z0-9+/_=-].
	DigitShare, HexShare, Base32Share, Base64Share float64
	// MixedCase is true when one label of Sub has both upper- and lower-case letters.
	MixedCase bool
	// NonPrintable counts bytes of the qname outside printable ASCII
	// (iodine's Base128 encoding uses high bytes).
	NonPrintable int
	// BadTLD is true when the top-level label is not in the public suffix list.
	BadTLD bool
	// QtypeWeight is how unusual the query type is for normal traffic:
	// 1 for A, AAAA, HTTPS, PTR, ...; more for TXT, NULL, KEY, PRIVATE, ANY.
	QtypeWeight float64
	// Encoded is the per-query "encodedness" in [0,1]: how much Sub looks
	// like encoded data (length times randomness). One query alone never
	// alerts; the detector weighs it with per-pair volume.
	Encoded float64

	bpc        float64 // payload bits per character / 5: 1.2 for mixed case, else 1 (0 when Encoded is 0)
	switchRate float64 // character-class switches per character of Sub
	chars      int     // characters of Sub without dots
	hyphens    int     // hyphens in Sub
	uuids      int     // canonical UUID labels in Sub
	upper      bool    // the qname has an ASCII upper-case letter
	// lazyEntropy: extract took the lite path, Entropy is not filled in.
	lazyEntropy bool
}

// entropy returns f.Entropy, computing it if extract skipped it.
func (f *Features) entropy() float64 {
	if f.lazyEntropy {
		f.Entropy, f.lazyEntropy = shannon(f.Sub), false
	}
	return f.Entropy
}

// shannon is the entropy (bits per character) of s without dots, computed
// exactly as subFeatures does.
func shannon(s string) float64 {
	var hist [256]uint8
	n := 0
	for i := 0; i < len(s); i++ {
		if c := s[i]; c != '.' {
			n++
			if hist[c] < 255 {
				hist[c]++
			}
		}
	}
	if n == 0 {
		return 0
	}
	var sum float64
	for i := 0; i < len(s); i++ {
		if c := hist[s[i]]; c > 0 && s[i] != '.' {
			sum += nlog2n[c]
			hist[s[i]] = 0
		}
	}
	return math.Log2(float64(n)) - sum/float64(n)
}

// shortLabels fills Labels and MaxLabel of s into f and reports whether
// no label is longer than liteMaxLabel.
func shortLabels(f *Features, s string) bool {
	f.Labels = 1
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			f.Labels++
			f.MaxLabel = max(f.MaxLabel, i-start)
			start = i + 1
		}
	}
	f.MaxLabel = max(f.MaxLabel, len(s)-start)
	return f.MaxLabel <= liteMaxLabel
}

// QtypeWeight returns the weight of a query type: 1 for everyday types,
// up to 2 for the ones tunnels prefer (NULL, PRIVATE 65399).
func QtypeWeight(qtype uint16) float64 {
	switch qtype {
	case 1, 28, 65, 64, 12, 6, 2, 43, 48, 257: // A AAAA HTTPS SVCB PTR SOA NS DS DNSKEY CAA
		return 1
	case 5, 33: // CNAME SRV
		return 1.2
	case 15: // MX
		return 1.3
	case 16, 255: // TXT ANY
		return 1.5
	case 25: // KEY
		return 1.8
	case 10, 65399: // NULL, PRIVATE (iodine)
		return 2
	default:
		return 1.3
	}
}

// Extract fills f from qname (trailing dot optional) and qtype. It is pure
// and allocates nothing, so the detector can call it on every query. The
// registered-domain lookup is case-sensitive: a tail with upper-case letters
// is looked up as is and will usually come out as BadTLD; Detector.Observe
// lower-cases such names first.
func Extract(qname string, qtype uint16, f *Features) {
	extract(qname, qtype, f, false)
}

// extract is Extract; with lite set, a short subdomain of short labels
// (which cannot be encoded: Encoded is 0 by the length rule) gets only
// SubLen, Labels and MaxLabel, and Entropy is left for entropy() to
// compute on demand.
func extract(qname string, qtype uint16, f *Features, lite bool) {
	*f = Features{QtypeWeight: QtypeWeight(qtype)}
	name := strings.TrimSuffix(qname, ".")
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c < 0x21 || c > 0x7e {
			f.NonPrintable++
		}
		f.upper = f.upper || c-'A' < 26
	}
	if name == "" {
		return
	}
	last := name[strings.LastIndexByte(name, '.')+1:]
	var suffix string
	if allDigits(last) {
		// IP literal or numeric junk: no registered domain in the PSL sense.
		suffix, f.BadTLD = last, true
	} else {
		var icann bool
		suffix, icann = psl.PublicSuffix(name)
		if !icann && strings.IndexByte(suffix, '.') < 0 {
			f.BadTLD = true
		}
	}
	if len(suffix) >= len(name) {
		f.Registered = name
		return
	}
	head := name[:len(name)-len(suffix)-1]
	dot := strings.LastIndexByte(head, '.')
	f.Registered = name[dot+1:]
	if dot < 0 {
		return
	}
	f.Sub = name[:dot]
	subFeatures(f, lite)
}

// allDigits reports whether s is non-empty and only digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// charTab bits: the low 3 bits hold class+1 (0: not alphanumeric).
const (
	bDigit = 3 + iota
	bHex
	bB32
	bB64
	bHyphen
)

// charTab classifies bytes for subFeatures (read-only after init).
var charTab = func() (t [256]uint8) {
	for c := 0; c < 256; c++ {
		var v uint8
		switch {
		case c >= 'a' && c <= 'z':
			v = clsLower + 1 | 1<<bB32 | 1<<bB64
			if c <= 'f' {
				v |= 1 << bHex
			}
		case c >= 'A' && c <= 'Z':
			v = clsUpper + 1 | 1<<bB32 | 1<<bB64
			if c <= 'F' {
				v |= 1 << bHex
			}
		case c >= '0' && c <= '9':
			v = clsDigit + 1 | 1<<bDigit | 1<<bHex | 1<<bB64
			if c >= '2' && c <= '7' {
				v |= 1 << bB32
			}
		case c == '-':
			v = 1<<bHyphen | 1<<bB64
		case c == '_' || c == '+' || c == '/' || c == '=':
			v = 1 << bB64
		}
		t[c] = v
	}
	return t
}()

// character classes for the switch rate.
const (
	clsLower = iota
	clsUpper
	clsDigit
)

// Below these the length score, and so Encoded, is 0 (see encodedness).
const (
	liteMaxLabel = 12
	liteMaxSub   = 24
)

func subFeatures(f *Features, lite bool) {
	s := f.Sub
	f.SubLen = len(s)
	if lite && len(s) <= liteMaxSub && f.NonPrintable < 4 && shortLabels(f, s) {
		f.lazyEntropy = true
		return
	}
	var hist [256]uint8
	var n, digits, hex, b32, b64, switches, hyphens int
	labelLen, lower, upper, uuids := 0, false, false, 0
	prev := -1
	f.Labels = 1
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			f.Labels++
			if labelLen == 36 && isUUID(s[i-36:i]) {
				uuids++
			}
			if labelLen > f.MaxLabel {
				f.MaxLabel = labelLen
			}
			if lower && upper {
				f.MixedCase = true
			}
			labelLen, lower, upper, prev = 0, false, false, -1
			continue
		}
		labelLen++
		n++
		if hist[c] < 255 {
			hist[c]++
		}
		t := charTab[c]
		digits += int(t >> bDigit & 1)
		hex += int(t >> bHex & 1)
		b32 += int(t >> bB32 & 1)
		b64 += int(t >> bB64 & 1)
		hyphens += int(t >> bHyphen & 1)
		cls := int(t&7) - 1 // clsLower, clsUpper, clsDigit or -1
		lower = lower || cls == clsLower
		upper = upper || cls == clsUpper
		// Switches count only between letter cases and digits: hyphens
		// and underscores join words in names and are rare in encodings.
		if cls >= 0 {
			if prev >= 0 && cls != prev {
				switches++
			}
			prev = cls
		}
	}
	if labelLen > f.MaxLabel {
		f.MaxLabel = labelLen
	}
	if labelLen == 36 && isUUID(s[len(s)-36:]) {
		uuids++
	}
	if lower && upper {
		f.MixedCase = true
	}
	if n == 0 {
		return
	}
	// Entropy from the histogram: H = log2(n) - (1/n) * sum c*log2(c).
	var sum float64
	for i := 0; i < len(s); i++ {
		if c := hist[s[i]]; c > 0 && s[i] != '.' {
			sum += nlog2n[c]
			hist[s[i]] = 0
		}
	}
	nf := float64(n)
	f.Entropy = math.Log2(nf) - sum/nf
	f.DigitShare = float64(digits) / nf
	f.HexShare = float64(hex) / nf
	f.Base32Share = float64(b32) / nf
	f.Base64Share = float64(b64) / nf
	f.switchRate = float64(switches) / nf
	f.chars, f.hyphens, f.uuids = n, hyphens, uuids
	f.Encoded = f.encoded()
}

// encoded computes Encoded from the other features (subFeatures' full
// path filled them).
func (f *Features) encoded() float64 {
	e := encodedness(f)
	if f.uuids > 0 && f.SubLen <= 37*f.uuids+16 {
		// A canonical UUID label is an identifier (telemetry, sessions),
		// 16 bytes per query at most; tunnels do not emit that shape.
		e *= 0.5
	}
	return e
}

// isUUID reports whether s has the 8-4-4-4-12 hex shape.
func isUUID(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return len(s) == 36
}

// encodedness combines length and randomness into [0,1].
func encodedness(f *Features) float64 {
	f.bpc = 1
	if f.NonPrintable >= 4 {
		return clamp01(float64(f.MaxLabel-8) / 24)
	}
	// Length: tools fill labels to 57-63 characters and names to ~250.
	// Random-looking service ids (API gateway, RDS, ELB) are 10-20.
	if f.MaxLabel <= 12 && f.SubLen <= 24 {
		return 0
	}
	// Alphabet the string seems to be drawn from, for the expected entropy
	// of a random string of that length (Miller-Madow corrected).
	k := 36.0
	switch {
	case f.HexShare >= 0.9:
		k = 16
	case f.MixedCase || f.Base64Share >= 0.98 && f.Base32Share < 0.9:
		k = 64
	case f.Base32Share >= 0.95:
		k = 32
	}
	// Past the id allowance, length counts by the payload bits each
	// character carries, relative to base32's 5: mixed-case base64(url)
	// packs 6, so the same chunk is 1/1.2 as long (low-and-slow
	// DNSExfiltrator). Only mixed case counts: lower-case host names with
	// hyphens also pass the base64 share test above.
	if f.MixedCase {
		f.bpc = 1.2
	}
	bpc := f.bpc
	lenScore := math.Max(clamp01(float64(f.MaxLabel-12)*bpc/28), clamp01(float64(f.SubLen-24)*bpc/56))
	nf := float64(f.chars)
	expH := math.Log2(k) - (k-1)/(2*nf*math.Ln2)
	if expH < 1 {
		expH = 1
	}
	entScore := clamp01((f.Entropy/expH - 0.6) / 0.3)
	// Class switches: random base32 ~0.3/char, hex ~0.47, base64 ~0.6;
	// words with a number here and there stay under 0.1.
	swScore := clamp01((f.switchRate - 0.04) / 0.2)
	r := 0.45*entScore + 0.55*swScore
	// Hyphen-separated words (service names) are not encodings; base64url
	// has hyphens too but then the rest of the string is random.
	if f.hyphens > 0 && swScore < 0.5 {
		r *= 0.6
	}
	return clamp01(lenScore * r)
}

func clamp01(x float64) float64 {
	if x < 0 {
		return 0
	}
	if x > 1 {
		return 1
	}
	return x
}

// nlog2n[c] = c*log2(c), for the entropy sum.
var nlog2n = func() (t [256]float64) {
	for i := 1; i < 256; i++ {
		t[i] = float64(i) * math.Log2(float64(i))
	}
	return t
}()
