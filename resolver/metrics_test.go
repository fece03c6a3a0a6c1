package resolver_test

import (
	"testing"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestServerMetricsLint drives a few queries through a server and lints
// every metric it registered (names, help, units, label cardinality).
func TestServerMetricsLint(t *testing.T) {
	t.Parallel()
	h := newHarness(t, harnessConfig{})
	for _, network := range []string{"udp", "tcp"} {
		wantRcode(t, h.exchange(t, network, msg("lint.example.", dns.TypeA, 1232, false)), dns.RcodeSuccess)
		h.obs.next(t)
	}
	if got := testutil.ToFloat64(h.metrics.Queries.WithLabelValues("A", "NOERROR", "UDP")); got != 1 {
		t.Errorf("queries_total{A,NOERROR,UDP} = %v, want 1", got)
	}
	if got := testutil.ToFloat64(h.metrics.Queries.WithLabelValues("A", "NOERROR", "TCP")); got != 1 {
		t.Errorf("queries_total{A,NOERROR,TCP} = %v, want 1", got)
	}
	problems, err := testutil.GatherAndLint(h.reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
}
