package policy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"text/tabwriter"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// Explanation answers "why was this blocked?" for one name and client:
// who the client is, which policy applied, what it decided and which list
// entry (down to file and line) made it so. Used by `dnsvalve check` and
// GET /api/v1/check.
type Explanation struct {
	Name     string `json:"name"`               // query name, lower case, fully qualified
	Client   string `json:"client"`             // client address, "" when none was given
	Workload string `json:"workload,omitempty"` // clients.names entry for Client
	Group    string `json:"group"`              // client group, "" for none
	Policy   string `json:"policy"`
	Mode     string `json:"mode"`             // open | allowlist
	Decision string `json:"decision"`         // allow | block | alert | none
	Reason   string `json:"reason,omitempty"` // list | allowlist_mode | qtype
	List     string `json:"list,omitempty"`
	Category string `json:"category,omitempty"`
	Rule     string `json:"rule,omitempty"`   // the matched entry as written
	Source   string `json:"source,omitempty"` // file or URL of the entry
	Line     int    `json:"line,omitempty"`
	Response string `json:"response,omitempty"` // for blocks: nxdomain | nodata | refused | sinkhole
	EDE      uint16 `json:"ede,omitempty"`
	Qtype    string `json:"qtype"`
}

// Explain reports how a query for qname/qtype from client would be decided
// (query side only: CNAME and rebinding checks need an upstream answer).
// An invalid client address is treated as a client in no group.
func (s *Snapshot) Explain(client netip.Addr, qname string, qtype uint16) Explanation {
	group, policy, workload := s.Identify(client)
	p := s.policy(policy)
	d := p.decide(normalize(qname), qtype)
	ex := Explanation{
		Name:     dns.Fqdn(normalize(qname)),
		Workload: workload,
		Group:    group,
		Policy:   p.name,
		Mode:     p.mode,
		Decision: actionLabel(d.Action),
		Reason:   d.Reason,
		List:     d.List,
		Category: d.Category,
		Rule:     d.Match.Rule,
		Source:   d.Match.Source,
		Line:     d.Match.Line,
		EDE:      d.EDE,
		Qtype:    qtypeString(qtype),
	}
	if client.IsValid() {
		ex.Client = client.Unmap().String()
	}
	if d.Action == query.ActionBlock {
		ex.Response = s.Response(p.name, d)
	}
	return ex
}

func qtypeString(t uint16) string {
	if s, ok := dns.TypeToString[t]; ok {
		return s
	}
	return "TYPE" + strconv.Itoa(int(t))
}

// WriteExplanations writes ex to w as an aligned human-readable table, or
// with asJSON as an indented JSON array.
func WriteExplanations(w io.Writer, ex []Explanation, asJSON bool) error {
	if asJSON {
		if ex == nil {
			ex = []Explanation{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(ex); err != nil {
			return fmt.Errorf("write explanations: %w", err)
		}
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTYPE\tCLIENT\tGROUP\tPOLICY\tMODE\tDECISION\tRESPONSE\tREASON\tLIST\tCATEGORY\tRULE\tSOURCE")
	for _, e := range ex {
		client := e.Client
		if e.Workload != "" {
			client += " (" + e.Workload + ")"
		}
		src := e.Source
		if src != "" && e.Line > 0 {
			src += ":" + strconv.Itoa(e.Line)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			dash(e.Name), dash(e.Qtype), dash(client), dash(e.Group), dash(e.Policy), dash(e.Mode),
			dash(e.Decision), dash(e.Response), dash(e.Reason), dash(e.List), dash(e.Category),
			dash(e.Rule), dash(src))
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write explanations: %w", err)
	}
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
