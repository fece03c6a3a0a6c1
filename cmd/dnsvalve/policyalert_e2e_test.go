package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dnsvalve/dnsvalve/resolver/querylog"
)

// TestE2EPolicyAlerts: with alerts.policy [alert, block], the binary
// sends one alert record per client and rule per interval to the webhook
// and the query log, for an alert-list match and for blocks (a block list,
// a CNAME target, allow-list-only mode, block_qtypes), and counts the
// repeats it suppressed.
func TestE2EPolicyAlerts(t *testing.T) {
	needTool(t, "dig")
	bin := buildBinary(t)
	up := startFakeUpstream(t)
	hooks := make(chan querylog.Alert, 64)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var a querylog.Alert
		if err := json.Unmarshal(body, &a); err != nil {
			t.Errorf("webhook body is not an alert record: %v: %s", err, body)
		}
		hooks <- a
	}))
	defer hook.Close()

	dir := t.TempDir()
	dnsAddr, httpAddr := freePort(t), freePort(t)
	logFile := filepath.Join(dir, "query.log")
	malware := writeFile(t, dir, "malware.txt", "# feed\n0.0.0.0 malware.example\n")
	writeFile(t, dir, "sharing.txt", "||share.example^\n")
	writeFile(t, dir, "allow.txt", "allowed.example\n")
	file := writeFile(t, dir, "dnsvalve.yaml", fmt.Sprintf(`
server:
  listen: ["%s"]
http:
  listen: "%s"
upstream:
  servers: ["udp://%s"]
  timeout: 1s
state_dir: %s
lists:
  - name: malware
    sources: [malware.txt]
  - name: sharing
    category: file-sharing
    sources: [sharing.txt]
  - name: corp
    sources: [allow.txt]
clients:
  groups:
    - name: locked
      cidrs: ["127.0.0.2/32"]
      policy: sensitive
  names:
    127.0.0.1: build-runner-2
policies:
  default:
    block: [malware]
    alert: [file-sharing]
  sensitive:
    mode: allowlist
    allow: [corp]
    block_qtypes: ["NULL"]
alerts:
  webhook: "%s/hook?token=s3cret"
  policy: [alert, block]
  policy_interval: 1h
querylog:
  sinks: ["file:%s"]
`, dnsAddr, httpAddr, up.addr, dir, hook.URL, logFile))
	p := startDNSValve(t, bin, "serve", "--config", file)

	// Before any query, every category's counters exist at 0, so that
	// increase() in alert rules sees the first alert.
	before := httpGet(t, "http://"+httpAddr+"/metrics")
	for _, w := range []string{
		`dnsvalve_policy_alerts_total{action="BLOCK",category="malware"} 0`,
		`dnsvalve_policy_alerts_total{action="ALERT",category="file-sharing"} 0`,
	} {
		if !strings.Contains(before, w) {
			t.Errorf("/metrics at start lacks %s", w)
		}
	}

	type want struct{ action, kind, client, name, qtype, list, category, rule, source, reason, domain, instance, target string }
	for _, tc := range []struct {
		name  string
		args  []string
		alert *want // nil: no new alert
	}{
		{"block_list", []string{"c2.malware.example", "TXT"},
			&want{"BLOCK", "policy", "127.0.0.1", "c2.malware.example.", "TXT", "malware", "malware", "malware.example", malware + ":2", "list", "malware.example", "build-runner-2", ""}},
		// The same client and rule: one alert, whatever the name or type
		// (a DGA walking subdomains raises one).
		{"repeat_suppressed", []string{"C2.Malware.Example", "TXT"}, nil},
		{"other_name_same_rule", []string{"x7f3a.malware.example", "A"}, nil},
		{"alert_list", []string{"dl.share.example", "A"},
			&want{"ALERT", "policy", "127.0.0.1", "dl.share.example.", "A", "sharing", "file-sharing", "||share.example^", filepath.Join(dir, "sharing.txt") + ":1", "list", "share.example", "build-runner-2", ""}},
		{"allowed_no_alert", []string{"example.com", "A"}, nil},
		{"cname_to_blocked", []string{"cname-to-malware.test", "A"},
			&want{"BLOCK", "policy", "127.0.0.1", "cname-to-malware.test.", "A", "malware", "malware", "malware.example", malware + ":2", "cname", "cname-to-malware.test", "build-runner-2", "malware.example."}},
		{"allowlist_mode", []string{"-b", "127.0.0.2", "exfil.example.net", "A"},
			&want{"BLOCK", "policy", "127.0.0.2", "exfil.example.net.", "A", "", "", "", "", "allowlist_mode", "example.net", "", ""}},
		// Allow-list-only mode has no rule: the registered domain stands
		// for it.
		{"allowlist_mode_same_domain", []string{"-b", "127.0.0.2", "more.example.net", "A"}, nil},
		{"qtype", []string{"-b", "127.0.0.2", "allowed.example", "NULL"},
			&want{"BLOCK", "policy", "127.0.0.2", "allowed.example.", "NULL", "", "", "NULL", "policies.sensitive.block_qtypes", "qtype", "allowed.example", "", ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dig(t, dnsAddr, tc.args...)
			if tc.alert == nil {
				return
			}
			var a querylog.Alert
			select {
			case a = <-hooks:
			case <-time.After(30 * time.Second):
				t.Fatal("no webhook alert")
			}
			w := tc.alert
			got := want{a.Action, a.Kind, a.SrcAddr, a.QueryName, a.QueryType, a.FirewallDomainListID, a.Category, a.Rule, a.Source, a.Reason, a.Domain, a.SrcIDs.Instance, a.Target}
			if got != *w {
				t.Errorf("webhook alert\n got %+v\nwant %+v", got, *w)
			}
		})
	}
	metrics := httpGet(t, "http://"+httpAddr+"/metrics")
	for _, w := range []string{
		`dnsvalve_policy_alerts_total{action="BLOCK",category="malware"} 2`,
		`dnsvalve_policy_alerts_total{action="ALERT",category="file-sharing"} 1`,
		`dnsvalve_policy_alerts_suppressed_total{reason="repeat"} 3`,
	} {
		if !strings.Contains(metrics, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	if log := p.log(); strings.Contains(log, "s3cret") || !strings.Contains(log, "policy alert") {
		t.Errorf("dnsvalve's log names the webhook token or lacks the policy alert lines:\n%s", log)
	}
	p.stop(t)
	select {
	case a := <-hooks:
		t.Errorf("an alert the test did not expect: %+v", a)
	default:
	}
	// The query log holds the same alert records, one per alert.
	alerts := 0
	for _, r := range readLog(t, logFile) {
		if r["type"] == "alert" {
			alerts++
			if r["kind"] != "policy" {
				t.Errorf("alert record of kind %v", r["kind"])
			}
		}
	}
	if alerts != 5 {
		t.Errorf("%d alert records in the query log, want 5", alerts)
	}
}
