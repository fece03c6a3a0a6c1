package deploy

import (
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

const (
	rulesFile     = "prometheus/alerts.yml"
	rulesTestFile = "prometheus/alerts_test.yml"
	dashboardFile = "grafana/dnsvalve.json"
)

// targetLabels are added by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

// metric is one metric family declared in the Go sources.
type metric struct {
	name   string
	kind   string // counter, gauge, histogram, summary
	labels []string
	pos    string
}

// series maps the series names a family exports (histograms: _bucket,
// _sum, _count) to their label names, target labels included.
func (m metric) series() map[string][]string {
	base := append(slices.Clone(m.labels), targetLabels...)
	switch m.kind {
	case "histogram":
		return map[string][]string{m.name + "_bucket": append(slices.Clone(base), "le"),
			m.name + "_sum": base, m.name + "_count": base}
	case "summary":
		return map[string][]string{m.name: append(slices.Clone(base), "quantile"),
			m.name + "_sum": base, m.name + "_count": base}
	}
	return map[string][]string{m.name: base}
}

// catalog is what the module exports: series name -> label names.
type catalog struct {
	families map[string]metric
	series   map[string][]string
	labels   map[string]bool // every label of any series
}

func loadCatalog(tb testing.TB) *catalog {
	tb.Helper()
	fams := scanMetrics(tb, "..")
	c := &catalog{families: fams, series: map[string][]string{}, labels: map[string]bool{}}
	for _, m := range fams {
		for s, ls := range m.series() {
			c.series[s] = ls
			for _, l := range ls {
				c.labels[l] = true
			}
		}
	}
	return c
}

// scanMetrics parses every non-test Go file of the module under root (not
// nested modules, testdata or hidden directories) and returns the metric
// families built from prometheus.{Counter,Gauge,Histogram,Summary}Opts
// literals, keyed by full name.
func scanMetrics(tb testing.TB, root string) map[string]metric {
	tb.Helper()
	out := map[string]metric{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") ||
				name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			if path != root {
				if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
					return filepath.SkipDir // a nested module
				}
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		ms, err := metricsInFile(path)
		if err != nil {
			return err
		}
		for _, m := range ms {
			if prev, ok := out[m.name]; ok && prev.pos != m.pos {
				return fmt.Errorf("metric %s declared twice: %s and %s", m.name, prev.pos, m.pos)
			}
			out[m.name] = m
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("scan Go sources for metrics: %v", err)
	}
	return out
}

var optsKinds = map[string]string{
	"CounterOpts": "counter", "GaugeOpts": "gauge", "HistogramOpts": "histogram", "SummaryOpts": "summary",
}

// metricsInFile finds the metric declarations of one Go file. Namespace,
// Subsystem and Name may be string literals, constants of the file, or a
// parameter of a closure that is called with string literals (the
// `counter := func(name, help string) ...` helper pattern).
func metricsInFile(path string) ([]metric, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, 0)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	consts := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		gd, ok := n.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST {
			return true
		}
		for _, spec := range gd.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				if i < len(vs.Values) {
					if s, ok := stringLit(vs.Values[i]); ok {
						consts[name.Name] = s
					}
				}
			}
		}
		return true
	})

	var (
		out   []metric
		errs  []string
		stack []ast.Node
	)
	ast.Inspect(f, func(n ast.Node) bool {
		if n == nil {
			stack = stack[:len(stack)-1]
			return true
		}
		stack = append(stack, n)
		cl, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		kind := optsKind(cl.Type)
		if kind == "" {
			return true
		}
		pos := fset.Position(cl.Pos()).String()
		fields := map[string][]string{"Namespace": {""}, "Subsystem": {""}, "Name": {""}}
		for _, elt := range cl.Elts {
			kv, ok := elt.(*ast.KeyValueExpr)
			if !ok {
				continue
			}
			key, ok := kv.Key.(*ast.Ident)
			if !ok || fields[key.Name] == nil {
				continue
			}
			vals, err := resolveString(f, stack, consts, kv.Value)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s: %s: %v", pos, key.Name, err))
				return true
			}
			fields[key.Name] = vals
		}
		labels, err := vecLabels(stack)
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", pos, err))
			return true
		}
		for _, ns := range fields["Namespace"] {
			for _, sub := range fields["Subsystem"] {
				for _, name := range fields["Name"] {
					var parts []string
					for _, p := range []string{ns, sub, name} {
						if p != "" {
							parts = append(parts, p)
						}
					}
					out = append(out, metric{name: strings.Join(parts, "_"), kind: kind, labels: labels, pos: pos})
				}
			}
		}
		return true
	})
	if len(errs) > 0 {
		return nil, fmt.Errorf("cannot resolve metric declarations (extend deploy_test.go):\n%s", strings.Join(errs, "\n"))
	}
	return out, nil
}

func optsKind(e ast.Expr) string {
	sel, ok := e.(*ast.SelectorExpr)
	if !ok {
		return ""
	}
	if x, ok := sel.X.(*ast.Ident); !ok || x.Name != "prometheus" {
		return ""
	}
	return optsKinds[sel.Sel.Name]
}

func stringLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

// resolveString evaluates e to the string values it can take.
func resolveString(f *ast.File, stack []ast.Node, consts map[string]string, e ast.Expr) ([]string, error) {
	if s, ok := stringLit(e); ok {
		return []string{s}, nil
	}
	id, ok := e.(*ast.Ident)
	if !ok {
		return nil, fmt.Errorf("unsupported expression %T", e)
	}
	if s, ok := consts[id.Name]; ok {
		return []string{s}, nil
	}
	// A parameter of an enclosing closure assigned to a variable.
	for i := len(stack) - 1; i >= 0; i-- {
		fl, ok := stack[i].(*ast.FuncLit)
		if !ok {
			continue
		}
		idx := paramIndex(fl.Type, id.Name)
		if idx < 0 {
			continue
		}
		fn := assignedName(stack[:i], fl)
		if fn == "" {
			return nil, fmt.Errorf("closure parameter %s: closure not assigned to a variable", id.Name)
		}
		var vals []string
		var bad error
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			if c, ok := call.Fun.(*ast.Ident); !ok || c.Name != fn || idx >= len(call.Args) {
				return true
			}
			s, ok := stringLit(call.Args[idx])
			if !ok {
				bad = fmt.Errorf("call of %s with a non-literal %s", fn, id.Name)
				return true
			}
			vals = append(vals, s)
			return true
		})
		if bad != nil {
			return nil, bad
		}
		if len(vals) == 0 {
			return nil, fmt.Errorf("closure %s is never called", fn)
		}
		return vals, nil
	}
	return nil, fmt.Errorf("identifier %s is neither a string constant nor a closure parameter", id.Name)
}

func paramIndex(ft *ast.FuncType, name string) int {
	i := 0
	for _, field := range ft.Params.List {
		for _, n := range field.Names {
			if n.Name == name {
				return i
			}
			i++
		}
	}
	return -1
}

// assignedName is the variable fl is assigned to in the innermost
// assignment among parents.
func assignedName(parents []ast.Node, fl *ast.FuncLit) string {
	for i := len(parents) - 1; i >= 0; i-- {
		as, ok := parents[i].(*ast.AssignStmt)
		if !ok {
			continue
		}
		for j, rhs := range as.Rhs {
			if rhs == fl && j < len(as.Lhs) {
				if id, ok := as.Lhs[j].(*ast.Ident); ok {
					return id.Name
				}
			}
		}
	}
	return ""
}

// vecLabels returns the label names when the Opts literal on top of stack is
// the first argument of prometheus.New*Vec, nil for plain metrics.
func vecLabels(stack []ast.Node) ([]string, error) {
	if len(stack) < 2 {
		return nil, nil
	}
	call, ok := stack[len(stack)-2].(*ast.CallExpr)
	if !ok {
		return nil, fmt.Errorf("options literal outside a prometheus.New* call")
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || !strings.HasPrefix(sel.Sel.Name, "New") {
		return nil, fmt.Errorf("options literal passed to %T, want prometheus.New*", call.Fun)
	}
	if !strings.HasSuffix(sel.Sel.Name, "Vec") {
		return nil, nil
	}
	if len(call.Args) < 2 {
		return nil, fmt.Errorf("%s without label names", sel.Sel.Name)
	}
	lit, ok := call.Args[1].(*ast.CompositeLit)
	if !ok {
		return nil, fmt.Errorf("%s label names are not a []string literal", sel.Sel.Name)
	}
	var labels []string
	for _, e := range lit.Elts {
		s, ok := stringLit(e)
		if !ok {
			return nil, fmt.Errorf("%s: non-literal label name", sel.Sel.Name)
		}
		labels = append(labels, s)
	}
	return labels, nil
}

// --- references in rules and dashboard ------------------------------------------

var (
	// selectorRE matches a metric name and, if present, its label matchers.
	selectorRE = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*(\s*\{[^}]*\})?`)
	matcherRE  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)`)
	groupingRE = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)`)
)

// checkRefs reports every dnsvalve_ name in text that is not an exported
// series (or, with a colon, a recording rule in records), and every label
// matcher on such a series that names a label it does not have. exprLike
// also checks the labels of by/without/on/ignoring/group_* clauses.
func (c *catalog) checkRefs(text string, exprLike bool, records map[string]bool) []string {
	var problems []string
	for _, m := range selectorRE.FindAllString(text, -1) {
		name, sel, _ := strings.Cut(m, "{")
		name = strings.TrimSpace(name)
		if !strings.Contains(name, "dnsvalve_") {
			continue
		}
		if strings.Contains(name, ":") {
			if !records[name] {
				problems = append(problems, fmt.Sprintf("unknown recording rule %s", name))
			}
			continue
		}
		labels, ok := c.series[name]
		if !ok {
			problems = append(problems, fmt.Sprintf("unknown metric %s", name))
			continue
		}
		for _, mm := range matcherRE.FindAllStringSubmatch(sel, -1) {
			if !slices.Contains(labels, mm[1]) {
				problems = append(problems, fmt.Sprintf("%s has no label %q (labels: %v)", name, mm[1], labels))
			}
		}
	}
	if exprLike {
		for _, g := range groupingRE.FindAllStringSubmatch(text, -1) {
			for _, l := range strings.Split(g[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !c.labels[l] {
					problems = append(problems, fmt.Sprintf("grouping by unknown label %q in %q", l, g[0]))
				}
			}
		}
	}
	return problems
}

// --- rules --------------------------------------------------------------------

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []rule `yaml:"rules"`
	} `yaml:"groups"`
}

type rule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadRules(tb testing.TB) ruleFile {
	tb.Helper()
	data, err := os.ReadFile(rulesFile)
	if err != nil {
		tb.Fatal(err)
	}
	var rf ruleFile
	if err := yaml.Unmarshal(data, &rf); err != nil {
		tb.Fatalf("%s: %v", rulesFile, err)
	}
	return rf
}

func (rf ruleFile) records() map[string]bool {
	out := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				out[r.Record] = true
			}
		}
	}
	return out
}

var templateLabelRE = regexp.MustCompile(`\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)`)

func TestCatalogFindsTheModulesMetrics(t *testing.T) {
	c := loadCatalog(t)
	tests := []struct {
		name   string
		series string
		labels []string
	}{
		{name: "vec_with_literal_names", series: "dnsvalve_server_queries_total", labels: []string{"qtype", "rcode", "transport", "job", "instance"}},
		{name: "closure_helper", series: "dnsvalve_cache_hits_total", labels: []string{"job", "instance"}},
		{name: "const_namespace_histogram", series: "dnsvalve_detect_score_bucket", labels: []string{"job", "instance", "le"}},
		{name: "histogram_vec_count", series: "dnsvalve_upstream_request_duration_seconds_count", labels: []string{"upstream", "job", "instance"}},
		{name: "main_package", series: "dnsvalve_config_reloads_total", labels: []string{"result", "job", "instance"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := c.series[tt.series]
			if !ok {
				t.Fatalf("series %s not found", tt.series)
			}
			if !slices.Equal(sorted(got), sorted(tt.labels)) {
				t.Errorf("labels of %s = %v, want %v", tt.series, got, tt.labels)
			}
		})
	}
	if _, ok := c.series["dnsvalve_detect_score"]; ok {
		t.Error("a histogram's bare name must not be a queryable series")
	}
	if len(c.families) < 40 {
		t.Errorf("found %d metric families, want at least 40: is the scan missing files?", len(c.families))
	}
}

func TestRulesUseExportedMetrics(t *testing.T) {
	c := loadCatalog(t)
	rf := loadRules(t)
	records := rf.records()
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			id := r.Alert + r.Record
			for _, p := range c.checkRefs(r.Expr, true, records) {
				t.Errorf("%s expr: %s", id, p)
			}
			if r.Record != "" && !strings.Contains(r.Record, ":") {
				t.Errorf("recording rule %s: name it level:metric:operations", r.Record)
			}
			for k, v := range r.Annotations {
				for _, p := range c.checkRefs(v, false, records) {
					t.Errorf("%s annotation %s: %s", id, k, p)
				}
				for _, m := range templateLabelRE.FindAllStringSubmatch(v, -1) {
					if !c.labels[m[1]] {
						t.Errorf("%s annotation %s: $labels.%s is not a label of any dnsvalve series", id, k, m[1])
					}
				}
			}
		}
	}
}

func TestAlertsAreRunbookReady(t *testing.T) {
	rf := loadRules(t)
	var alerts int
	seen := map[string]bool{}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			if g.Name != "dnsvalve" {
				t.Errorf("alert %s is in group %q, want dnsvalve", r.Alert, g.Name)
			}
			if seen[r.Alert] {
				t.Errorf("alert %s defined twice", r.Alert)
			}
			seen[r.Alert] = true
			if !strings.HasPrefix(r.Alert, "DNSValve") {
				t.Errorf("alert %s: name must start with DNSValve", r.Alert)
			}
			if s := r.Labels["severity"]; s != "critical" && s != "warning" && s != "info" {
				t.Errorf("alert %s: severity %q, want critical, warning or info", r.Alert, s)
			}
			if len(r.Annotations["summary"]) < 20 {
				t.Errorf("alert %s: summary %q too short", r.Alert, r.Annotations["summary"])
			}
			if len(r.Annotations["description"]) < 120 {
				t.Errorf("alert %s: description must say what to do, got %q", r.Alert, r.Annotations["description"])
			}
		}
	}
	for _, want := range []string{"DNSValveDown", "DNSValveUpstreamDown", "DNSValveAllUpstreamsDown",
		"DNSValveHighServfailRatio", "DNSValveListRefreshFailing", "DNSValveListEmpty",
		"DNSValveQueryLogDropping", "DNSValveTunnelingAlert", "DNSValveTunnelingScoreHigh", "DNSValvePanics",
		"DNSValveConfigReloadFailed", "DNSValveRateLimiting", "DNSValveUpstreamOverloaded"} {
		if !seen[want] {
			t.Errorf("alert %s missing", want)
		}
	}
}

// TestEveryAlertIsUnitTested makes sure alerts_test.yml has, for every
// alert, a case where it fires (annotations checked) and one where it
// must not; promtool then runs them (scripts/test.sh).
func TestEveryAlertIsUnitTested(t *testing.T) {
	rf := loadRules(t)
	data, err := os.ReadFile(rulesTestFile)
	if err != nil {
		t.Fatal(err)
	}
	var tf struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
				ExpAlerts []struct {
					ExpLabels      map[string]string `yaml:"exp_labels"`
					ExpAnnotations map[string]string `yaml:"exp_annotations"`
				} `yaml:"exp_alerts"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	if err := yaml.Unmarshal(data, &tf); err != nil {
		t.Fatalf("%s: %v", rulesTestFile, err)
	}
	if !slices.Contains(tf.RuleFiles, filepath.Base(rulesFile)) {
		t.Errorf("%s rule_files = %v, want %s (relative to the test file)", rulesTestFile, tf.RuleFiles, filepath.Base(rulesFile))
	}
	fires, quiet := map[string]bool{}, map[string]bool{}
	for _, tc := range tf.Tests {
		for _, at := range tc.AlertRuleTest {
			if len(at.ExpAlerts) == 0 {
				quiet[at.Alertname] = true
			}
			for _, ea := range at.ExpAlerts {
				if ea.ExpAnnotations["summary"] != "" && ea.ExpAnnotations["description"] != "" && ea.ExpLabels["severity"] != "" {
					fires[at.Alertname] = true
				}
			}
		}
	}
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			if !fires[r.Alert] {
				t.Errorf("%s: no test case where it fires with labels and annotations checked", r.Alert)
			}
			if !quiet[r.Alert] {
				t.Errorf("%s: no test case where it must not fire", r.Alert)
			}
		}
	}
}

// --- dashboard ------------------------------------------------------------------

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource map[string]any `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		Expr         string         `json:"expr"`
		LegendFormat string         `json:"legendFormat"`
		RefID        string         `json:"refId"`
		Datasource   map[string]any `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

type dashboard struct {
	Inputs []struct {
		Name     string `json:"name"`
		Type     string `json:"type"`
		PluginID string `json:"pluginId"`
	} `json:"__inputs"`
	Annotations struct {
		List []struct {
			Name string `json:"name"`
			Expr string `json:"expr"`
		} `json:"list"`
	} `json:"annotations"`
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
	Templating    struct {
		List []struct {
			Name       string         `json:"name"`
			Type       string         `json:"type"`
			Query      any            `json:"query"`
			Definition string         `json:"definition"`
			Datasource map[string]any `json:"datasource"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(tb testing.TB) (dashboard, []byte) {
	tb.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		tb.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		tb.Fatalf("%s: %v", dashboardFile, err)
	}
	return d, data
}

// allPanels flattens rows (collapsed rows hold their panels).
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

var legendLabelRE = regexp.MustCompile(`\{\{\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}`)

func TestDashboardIsImportable(t *testing.T) {
	d, _ := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("uid %q, title %q: both must be set", d.UID, d.Title)
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d, want >= 36", d.SchemaVersion)
	}
	if len(d.Inputs) != 1 || d.Inputs[0].Name != "DS_PROMETHEUS" || d.Inputs[0].PluginID != "prometheus" {
		t.Errorf("__inputs = %+v, want one prometheus datasource input DS_PROMETHEUS", d.Inputs)
	}
	vars := map[string]string{}
	for _, v := range d.Templating.List {
		vars[v.Name] = v.Type
	}
	if vars["datasource"] != "datasource" || vars["instance"] != "query" {
		t.Errorf("template variables %v, want datasource (datasource) and instance (query)", vars)
	}
	ids := map[int]string{}
	for _, p := range allPanels(d.Panels) {
		if prev, ok := ids[p.ID]; ok {
			t.Errorf("panel id %d used by %q and %q", p.ID, prev, p.Title)
		}
		ids[p.ID] = p.Title
		if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
			t.Errorf("panel %q has no gridPos", p.Title)
		}
		if p.Type == "row" {
			continue
		}
		if uid, _ := p.Datasource["uid"].(string); uid != "${datasource}" {
			t.Errorf("panel %q datasource uid %q, want ${datasource}", p.Title, uid)
		}
		if len(p.Targets) == 0 && p.Type != "text" {
			t.Errorf("panel %q has no queries", p.Title)
		}
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			if refs[tg.RefID] || tg.RefID == "" {
				t.Errorf("panel %q: refId %q empty or repeated", p.Title, tg.RefID)
			}
			refs[tg.RefID] = true
			if !strings.Contains(tg.Expr, `instance=~"$instance"`) {
				t.Errorf("panel %q: query %q does not filter on instance=~\"$instance\"", p.Title, tg.Expr)
			}
		}
	}
}

func TestDashboardUsesExportedMetrics(t *testing.T) {
	c := loadCatalog(t)
	d, raw := loadDashboard(t)
	records := loadRules(t).records()
	used := map[string]bool{}
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			for _, prob := range c.checkRefs(tg.Expr, true, records) {
				t.Errorf("panel %q: %s", p.Title, prob)
			}
			for _, m := range legendLabelRE.FindAllStringSubmatch(tg.LegendFormat, -1) {
				if !c.labels[m[1]] {
					t.Errorf("panel %q: legend {{%s}} is not a label of any dnsvalve series", p.Title, m[1])
				}
			}
			for _, m := range selectorRE.FindAllString(tg.Expr, -1) {
				name, _, _ := strings.Cut(m, "{")
				used[strings.TrimSpace(name)] = true
			}
		}
	}
	for _, v := range d.Templating.List {
		q := v.Definition
		if s, ok := v.Query.(string); ok {
			q += " " + s
		} else if m, ok := v.Query.(map[string]any); ok {
			q += fmt.Sprint(" ", m["query"])
		}
		for _, prob := range c.checkRefs(q, true, records) {
			t.Errorf("template variable %s: %s", v.Name, prob)
		}
	}
	// Anything else in the file (titles, descriptions, links) too.
	var all any
	if err := json.Unmarshal(raw, &all); err != nil {
		t.Fatal(err)
	}
	walkStrings(all, func(s string) {
		for _, prob := range c.checkRefs(s, false, records) {
			t.Errorf("dashboard text %q: %s", s, prob)
		}
	})

	for _, want := range []string{
		"dnsvalve_server_queries_total", "dnsvalve_server_request_duration_seconds_bucket",
		"dnsvalve_cache_hits_total", "dnsvalve_cache_misses_total", "dnsvalve_cache_entries", "dnsvalve_cache_evictions_total",
		"dnsvalve_upstream_healthy", "dnsvalve_upstream_request_duration_seconds_bucket", "dnsvalve_upstream_errors_total",
		"dnsvalve_policy_decisions_total", "dnsvalve_detect_score_bucket", "dnsvalve_detect_alerts_total",
		"dnsvalve_detect_newly_seen_total", "dnsvalve_lists_source_last_success_timestamp_seconds", "dnsvalve_lists_entries",
		"dnsvalve_querylog_dropped_total", "dnsvalve_querylog_queue_length", "dnsvalve_config_reloads_total",
	} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

func walkStrings(v any, fn func(string)) {
	switch v := v.(type) {
	case string:
		fn(v)
	case []any:
		for _, e := range v {
			walkStrings(e, fn)
		}
	case map[string]any:
		for _, e := range v {
			walkStrings(e, fn)
		}
	}
}

// TestDashboardPromQLParses hands every dashboard query and annotation, with Grafana's
// variables substituted, to promtool as a recording rule: promtool parses
// PromQL exactly as Prometheus does. Skipped without promtool
// (scripts/test.sh installs it).
func TestDashboardPromQLParses(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed")
	}
	d, _ := loadDashboard(t)
	vars := strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h",
		"${instance:regex}", ".*", "${instance}", ".*", "$instance", ".*")
	type rec struct {
		Record string `yaml:"record"`
		Expr   string `yaml:"expr"`
	}
	var rules []rec
	for _, p := range allPanels(d.Panels) {
		for _, tg := range p.Targets {
			rules = append(rules, rec{Record: fmt.Sprintf("panel_%d_%s", p.ID, tg.RefID), Expr: vars.Replace(tg.Expr)})
		}
	}
	for i, a := range d.Annotations.List {
		if a.Expr != "" {
			rules = append(rules, rec{Record: fmt.Sprintf("annotation_%d", i), Expr: vars.Replace(a.Expr)})
		}
	}
	file := map[string]any{"groups": []map[string]any{{"name": "dashboard", "rules": rules}}}
	out, err := yaml.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "dashboard_rules.yml")
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command(promtool, "check", "rules", path).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules on the dashboard's queries: %v\n%s", err, msg)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

func TestCheckRefs(t *testing.T) {
	c := loadCatalog(t)
	records := map[string]bool{"instance:dnsvalve_server_queries:rate5m": true}
	tests := []struct {
		name     string
		text     string
		exprLike bool
		want     []string // substrings of the problems, in order
	}{
		{name: "known_metric_and_labels", text: `sum without (qtype) (rate(dnsvalve_server_queries_total{rcode="SERVFAIL", instance=~"$instance"}[5m]))`, exprLike: true},
		{name: "unknown_metric", text: `rate(dnsvalve_server_query_total[5m])`, want: []string{"unknown metric dnsvalve_server_query_total"}},
		{name: "unknown_label", text: `dnsvalve_upstream_healthy{server="a"}`, want: []string{`no label "server"`}},
		{name: "bare_histogram", text: `rate(dnsvalve_detect_score[5m])`, want: []string{"unknown metric dnsvalve_detect_score"}},
		{name: "histogram_bucket_le", text: `dnsvalve_detect_score_bucket{le="0.9"}`},
		{name: "le_only_on_buckets", text: `dnsvalve_detect_score_count{le="0.9"}`, want: []string{`no label "le"`}},
		{name: "known_record", text: `instance:dnsvalve_server_queries:rate5m > 10`},
		{name: "unknown_record", text: `instance:dnsvalve_cache_hits:rate5m`, want: []string{"unknown recording rule"}},
		{name: "grouping_unknown_label", text: `sum by (client) (rate(dnsvalve_server_queries_total[5m]))`, exprLike: true, want: []string{`unknown label "client"`}},
		{name: "grouping_ignored_in_prose", text: `depends on (client) behaviour`, exprLike: false},
		{name: "prose_mentions_metric", text: `check dnsvalve_lists_parse_errors_total{list="x"} and dnsvalve.reason`},
		{name: "template_inside_matcher", text: `dnsvalve_upstream_errors_total{upstream="{{ $labels.upstream }}"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := c.checkRefs(tt.text, tt.exprLike, records)
			if len(got) != len(tt.want) {
				t.Fatalf("checkRefs(%q) = %q, want %d problems like %q", tt.text, got, len(tt.want), tt.want)
			}
			for i := range got {
				if !strings.Contains(got[i], tt.want[i]) {
					t.Errorf("problem %d = %q, want it to contain %q", i, got[i], tt.want[i])
				}
			}
		})
	}
}
