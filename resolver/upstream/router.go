package upstream

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/miekg/dns"
)

// Conditional is an upstream group and the zones it answers for
// (conditional forwarding): each zone and every name under it.
type Conditional struct {
	Zones []string // fully qualified; case does not matter
	Group *Group
}

// Router sends a query to the group of the longest zone its name is in,
// and any other query to the default group: "corp.internal" to the
// company's servers, everything else to the public upstreams.
type Router struct {
	def   *Group
	conds []Conditional
	zones map[string]*Group // lower-case FQDN -> group
}

// NewRouter routes to def, except for names in the zones of conds (kept
// lower-cased and fully qualified, as Status shows them). A zone given
// twice, or the root, is an error. The router owns the groups (Close
// closes them all).
func NewRouter(def *Group, conds []Conditional) (*Router, error) {
	r := &Router{def: def, zones: map[string]*Group{}}
	for _, c := range conds {
		zones := make([]string, len(c.Zones))
		for i, z := range c.Zones {
			z = dns.CanonicalName(z)
			if z == "." {
				return nil, errors.New("the root zone is what the default upstreams are for")
			}
			if _, ok := r.zones[z]; ok {
				return nil, fmt.Errorf("zone %s is given twice", z)
			}
			r.zones[z], zones[i] = c.Group, z
		}
		r.conds = append(r.conds, Conditional{Zones: zones, Group: c.Group})
	}
	return r, nil
}

// Exchange sends m to the group its question's name routes to. A DS
// record lives on the parent side of a zone cut, so a DS query routes by
// the name without its first label (as Unbound's forward zones do): DS of
// corp.internal goes to the default group, DS of lab.corp.internal to
// corp.internal's.
func (r *Router) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, string, error) {
	g := r.def
	if len(r.zones) > 0 && len(m.Question) > 0 {
		q := m.Question[0]
		name := q.Name
		if q.Qtype == dns.TypeDS {
			if i, end := dns.NextLabel(name, 0); !end {
				name = name[i:]
			}
		}
		g = r.route(name)
	}
	return g.Exchange(ctx, m)
}

// route returns the group of the longest zone name is in (the default
// group when none): it looks up name, then the name without its first
// label, and so on.
func (r *Router) route(name string) *Group {
	name = strings.ToLower(name) // no copy when it has no upper case
	if !strings.HasSuffix(name, ".") {
		name += "."
	}
	// dns.NextLabel steps over escaped dots ("x\.corp.test." is one
	// label under test., not a name in corp.test.).
	for off, end := 0, false; !end; off, end = dns.NextLabel(name, off) {
		if g, ok := r.zones[name[off:]]; ok {
			return g
		}
	}
	return r.def
}

// Healthy reports whether an upstream of the default group is up: the
// conditional groups serve only their zones.
func (r *Router) Healthy() bool { return r.def.Healthy() }

// Status returns the health of every upstream: the default group's, then
// each conditional group's, with the zones it serves.
func (r *Router) Status() []UpstreamStatus {
	out := r.def.Status()
	for _, c := range r.conds {
		for _, st := range c.Group.Status() {
			st.Zones = c.Zones
			out = append(out, st)
		}
	}
	return out
}

// Close closes every group.
func (r *Router) Close() error {
	errs := []error{r.def.Close()}
	for _, c := range r.conds {
		errs = append(errs, c.Group.Close())
	}
	return errors.Join(errs...)
}
