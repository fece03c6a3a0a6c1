package querylog

import (
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// AppendJSON appends r as one JSON object (no trailing newline) to dst and
// returns the extended buffer. The output is exactly what encoding/json
// produces for NewEntry(r) with HTML escaping off (same keys, same order,
// same number and string formatting), but written without reflection or
// intermediate strings: with a reused dst it allocates nothing for the
// common answer types (A, AAAA, CNAME, PTR, NS, DNAME, MX).
func AppendJSON(dst []byte, r *Record) []byte {
	dst = append(dst, `{"version":"`+Version+`","account_id":"","region":"","vpc_id":"","query_timestamp":"`...)
	dst = appendTimestamp(dst, r.Time)
	dst = append(dst, `","query_name":`...)
	dst = appendString(dst, r.Question.Name)
	dst = append(dst, `,"query_type":`...)
	dst = appendString(dst, TypeString(r.Question.Qtype))
	dst = append(dst, `,"query_class":`...)
	dst = appendString(dst, ClassString(r.Question.Qclass))
	dst = append(dst, `,"rcode":`...)
	dst = appendString(dst, rcodeString(r.Resp))
	dst = append(dst, `,"answers":[`...)
	if r.Resp != nil {
		for i, rr := range r.Resp.Answer {
			if i > 0 {
				dst = append(dst, ',')
			}
			h := rr.Header()
			dst = append(dst, `{"Rdata":"`...)
			// Rdata is escaped in place: presentation format is mostly
			// ASCII, but TXT quotes and backslashes need escaping.
			start := len(dst)
			dst = appendRdata(dst, rr)
			dst = escapeTail(dst, start)
			dst = append(dst, `","Type":`...)
			dst = appendString(dst, TypeString(h.Rrtype))
			dst = append(dst, `,"Class":`...)
			dst = appendString(dst, ClassString(h.Class))
			dst = append(dst, '}')
		}
	}
	dst = append(dst, `],"srcaddr":"`...)
	dst = appendAddr(dst, r.Client.Addr)
	dst = append(dst, `","srcport":"`...)
	dst = strconv.AppendUint(dst, uint64(r.Client.Port), 10)
	dst = append(dst, `","transport":`...)
	dst = appendString(dst, r.Proto.String())
	dst = append(dst, `,"srcids":{`...)
	if r.Client.Name != "" {
		dst = append(dst, `"instance":`...)
		dst = appendString(dst, r.Client.Name)
	}
	dst = append(dst, '}')
	if r.Info.Action != query.ActionNone {
		dst = append(dst, `,"firewall_rule_action":`...)
		dst = appendString(dst, r.Info.Action.String())
		dst = appendOptString(dst, `,"firewall_rule_group_id":`, r.Client.Policy)
		dst = appendOptString(dst, `,"firewall_domain_list_id":`, r.Info.List)
	}
	dst = append(dst, `,"dnsvalve":{`...)
	n := len(dst)
	dst = appendOptString(dst, `,"group":`, r.Client.Group)
	dst = appendOptString(dst, `,"policy":`, r.Client.Policy)
	dst = appendOptString(dst, `,"category":`, r.Info.Category)
	dst = appendOptString(dst, `,"rule":`, r.Info.Rule)
	if r.Info.Source != "" {
		dst = append(dst, `,"source":"`...)
		start := len(dst)
		dst = appendSource(dst, r.Info.Source, r.Info.Line)
		dst = escapeTail(dst, start)
		dst = append(dst, '"')
	}
	dst = appendOptString(dst, `,"cache":`, r.Info.Cache.String())
	dst = appendOptString(dst, `,"upstream":`, r.Info.Upstream)
	dst = append(dst, `,"latency_us":`...)
	dst = strconv.AppendInt(dst, r.Latency.Microseconds(), 10)
	dst = append(dst, `,"score":`...)
	dst = appendFloat(dst, r.Info.Score)
	if len(r.Info.Signals) > 0 {
		dst = append(dst, `,"signals":`...)
		dst = appendStrings(dst, r.Info.Signals)
	}
	dst = append(dst, `,"alert":`...)
	dst = strconv.AppendBool(dst, r.Info.Alert)
	dst = append(dst, `,"newly_seen":`...)
	dst = strconv.AppendBool(dst, r.Info.NewlySeen)
	dst = appendOptString(dst, `,"reason":`, r.Info.Reason)
	if sn := query.ECSOption(r.Req); sn != nil {
		dst = append(dst, `,"ecs":"`...)
		dst = appendECS(dst, sn)
		dst = append(dst, '"')
	}
	if r.Client.Via.IsValid() {
		dst = append(dst, `,"forwarder":"`...)
		dst = appendAddr(dst, r.Client.Via)
		dst = append(dst, '"')
	}
	dst = appendOptString(dst, `,"instance":`, r.Instance)
	// Drop the comma in front of the first dnsvalve key (latency_us is
	// always written, so there is one).
	dst = append(dst[:n], dst[n+1:]...)
	return append(dst, `}}`...)
}

// AppendAlert appends a as one JSON object (no trailing newline), exactly
// as encoding/json would with HTML escaping off. An empty Type is written
// as "alert"; nil Signals and SampleNames as [].
func AppendAlert(dst []byte, a *Alert) []byte {
	typ := a.Type
	if typ == "" {
		typ = "alert"
	}
	dst = append(dst, `{"type":`...)
	dst = appendString(dst, typ)
	dst = append(dst, `,"alert_timestamp":`...)
	dst = appendString(dst, a.Timestamp)
	dst = append(dst, `,"srcaddr":`...)
	dst = appendString(dst, a.SrcAddr)
	dst = append(dst, `,"srcids":{`...)
	if a.SrcIDs.Instance != "" {
		dst = append(dst, `"instance":`...)
		dst = appendString(dst, a.SrcIDs.Instance)
	}
	dst = append(dst, '}')
	dst = appendOptString(dst, `,"group":`, a.Group)
	dst = appendOptString(dst, `,"policy":`, a.Policy)
	dst = append(dst, `,"domain":`...)
	dst = appendString(dst, a.Domain)
	dst = append(dst, `,"score":`...)
	dst = appendFloat(dst, a.Score)
	dst = append(dst, `,"signals":`...)
	dst = appendStrings(dst, a.Signals)
	dst = append(dst, `,"queries":`...)
	dst = strconv.AppendInt(dst, a.Queries, 10)
	dst = append(dst, `,"unique_subdomains":`...)
	dst = strconv.AppendInt(dst, a.Unique, 10)
	dst = append(dst, `,"bytes":`...)
	dst = strconv.AppendInt(dst, a.Bytes, 10)
	dst = append(dst, `,"sample_names":`...)
	dst = appendStrings(dst, a.SampleNames)
	dst = append(dst, `,"action":`...)
	dst = appendString(dst, a.Action)
	dst = appendOptString(dst, `,"kind":`, a.Kind)
	dst = appendOptString(dst, `,"query_name":`, a.QueryName)
	dst = appendOptString(dst, `,"query_type":`, a.QueryType)
	dst = appendOptString(dst, `,"firewall_domain_list_id":`, a.FirewallDomainListID)
	dst = appendOptString(dst, `,"category":`, a.Category)
	dst = appendOptString(dst, `,"rule":`, a.Rule)
	dst = appendOptString(dst, `,"source":`, a.Source)
	dst = appendOptString(dst, `,"reason":`, a.Reason)
	dst = appendOptString(dst, `,"target":`, a.Target)
	return append(dst, '}')
}

func appendOptString(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	dst = append(dst, key...)
	return appendString(dst, s)
}

func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}

// finite maps NaN and ±Inf, which JSON cannot carry, to 0.
func finite(f float64) float64 {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0
	}
	return f
}

// AppendFloat formats f as encoding/json does (ES6 number formatting);
// NaN and infinities, which JSON cannot carry, are written as 0 or ±max.
func AppendFloat(dst []byte, f float64) []byte { return appendFloat(dst, f) }

func appendFloat(dst []byte, f float64) []byte {
	f = finite(f)
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// e-09 -> e-9, as encoding/json.
		n := len(dst)
		if n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// escapeTail JSON-escapes dst[start:] in place (the opening quote is
// already in dst, the closing one is not). Most presentation-format data
// needs no escaping, so the common case is a scan without copying.
func escapeTail(dst []byte, start int) []byte {
	tail := dst[start:]
	for i := 0; i < len(tail); i++ {
		if c := tail[i]; c < 0x20 || c == '"' || c == '\\' || c >= utf8.RuneSelf {
			// Slow path: re-escape the tail from a copy.
			cp := append([]byte(nil), tail...)
			dst = appendEscaped(dst[:start], cp)
			return dst
		}
	}
	return dst
}

// appendString appends s as a JSON string with encoding/json's escaping
// (HTML escaping off): \" \\ \b \f \n \r \t, \u00XX for other control
// bytes, \ufffd for invalid UTF-8, \u2028 and \u2029 escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = appendEscaped(dst, s)
	return append(dst, '"')
}

const hexDigits = "0123456789abcdef"

func appendEscaped[S []byte | string](dst []byte, s S) []byte {
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		n := min(len(s)-i, utf8.UTFMax)
		c, size := utf8.DecodeRuneInString(string(s[i : i+n]))
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}
