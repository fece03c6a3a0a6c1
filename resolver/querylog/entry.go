package querylog

// Entry is one query-log record: one JSON object per line. Field names follow
// AWS Route 53 Resolver query logs (ARCHITECTURE.md §5) so that SIEM parsers
// and Athena tables written for Route 53 read dnsvalve's log as is; dnsvalve's
// own fields live under "dnsvalve". The schema is a user-facing contract: add
// fields, never rename or remove one.
type Entry struct {
	Version        string   `json:"version"`         // schema version, "1.100000" as Route 53
	AccountID      string   `json:"account_id"`      // unused by dnsvalve, "" (kept for Athena shape)
	Region         string   `json:"region"`          // unused, ""
	VPCID          string   `json:"vpc_id"`          // unused, ""
	QueryTimestamp string   `json:"query_timestamp"` // RFC 3339, UTC, millisecond precision
	QueryName      string   `json:"query_name"`      // with trailing dot
	QueryType      string   `json:"query_type"`      // "A", "TXT", "TYPE65399"
	QueryClass     string   `json:"query_class"`     // "IN"
	Rcode          string   `json:"rcode"`           // "NOERROR", "NXDOMAIN", ...
	Answers        []Answer `json:"answers"`         // never null: [] when empty
	SrcAddr        string   `json:"srcaddr"`
	SrcPort        string   `json:"srcport"`
	Transport      string   `json:"transport"` // "UDP", "TCP", "DoT", "DoH"
	SrcIDs         SrcIDs   `json:"srcids"`

	FirewallRuleAction string `json:"firewall_rule_action,omitempty"` // ALLOW | BLOCK | ALERT
	// FirewallRuleGroupID is the policy that decided (added: Route 53's
	// r53_rlogs DDL has the column; set with firewall_rule_action).
	FirewallRuleGroupID  string `json:"firewall_rule_group_id,omitempty"`
	FirewallDomainListID string `json:"firewall_domain_list_id,omitempty"` // list name

	DNSValve Extra `json:"dnsvalve"`
}

// Answer is one answer record, as Route 53 logs it.
type Answer struct {
	Rdata string `json:"Rdata"`
	Type  string `json:"Type"`
	Class string `json:"Class"`
}

// SrcIDs identifies the source workload.
type SrcIDs struct {
	Instance string `json:"instance,omitempty"` // workload name from clients.names
}

// Extra is dnsvalve's own part of a record.
type Extra struct {
	Group     string   `json:"group,omitempty"`
	Policy    string   `json:"policy,omitempty"`
	Category  string   `json:"category,omitempty"`
	Rule      string   `json:"rule,omitempty"`
	Source    string   `json:"source,omitempty"` // file or URL of the matched rule, with ":line"
	Cache     string   `json:"cache,omitempty"`  // hit | miss | stale | failure
	Upstream  string   `json:"upstream,omitempty"`
	LatencyUS int64    `json:"latency_us"`
	Score     float64  `json:"score"`
	Signals   []string `json:"signals,omitempty"`
	Alert     bool     `json:"alert"`
	NewlySeen bool     `json:"newly_seen"`
	Reason    string   `json:"reason,omitempty"`    // e.g. rate_limited, not_allowed, upstream_failed
	ECS       string   `json:"ecs,omitempty"`       // client subnet from EDNS0, when used
	Forwarder string   `json:"forwarder,omitempty"` // trusted forwarder or load balancer that relayed the query (client from ECS or PROXY v2)
	Instance  string   `json:"instance,omitempty"`  // the dnsvalve instance (hostname) that answered
}

// Alert is a separate record with "type":"alert", written to the same
// stream when a (client, registered domain) pair crosses detect.alert_score.
type Alert struct {
	Type        string   `json:"type"` // always "alert"
	Timestamp   string   `json:"alert_timestamp"`
	SrcAddr     string   `json:"srcaddr"`
	SrcIDs      SrcIDs   `json:"srcids"`
	Group       string   `json:"group,omitempty"`
	Policy      string   `json:"policy,omitempty"`
	Domain      string   `json:"domain"` // registered domain (eTLD+1)
	Score       float64  `json:"score"`
	Signals     []string `json:"signals"`
	Queries     int64    `json:"queries"`           // queries to the domain in the window
	Unique      int64    `json:"unique_subdomains"` // distinct subdomains estimate
	Bytes       int64    `json:"bytes"`             // subdomain bytes in the window
	SampleNames []string `json:"sample_names"`
	Action      string   `json:"action"` // ALERT, or BLOCK in enforce mode

	// Kind is what raised the alert: "tunneling" (the detector: the
	// fields above) or "policy" (a policy decision named in
	// alerts.policy: the fields below, with Domain the query name's
	// registered domain and the counts 0).
	Kind string `json:"kind,omitempty"`
	// The question and the rule of a policy alert, keyed as in the query
	// log's records.
	QueryName            string `json:"query_name,omitempty"`
	QueryType            string `json:"query_type,omitempty"`
	FirewallDomainListID string `json:"firewall_domain_list_id,omitempty"` // the list that matched
	Category             string `json:"category,omitempty"`
	Rule                 string `json:"rule,omitempty"`
	Source               string `json:"source,omitempty"`
	Reason               string `json:"reason,omitempty"` // list, allowlist_mode, qtype, cname, rebinding
	Target               string `json:"target,omitempty"` // the refused CNAME target (cname) or private address (rebinding)
}
