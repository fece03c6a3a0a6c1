package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestE2ENamesFile: workload names from clients.names_files name clients
// in the query log and in "why was this blocked?"; a rewrite of the file
// applies without a signal; a broken rewrite keeps the last good names.
func TestE2ENamesFile(t *testing.T) {
	needTool(t, "dig")
	bin := buildBinary(t)
	up := startFakeUpstream(t)
	file, dnsAddr, httpAddr, logFile, _ := e2eConfig(t, up.addr)
	dir := filepath.Dir(file)
	names := writeFile(t, dir, "workloads.txt", "# from the inventory job\n127.0.0.1 runner-a\n127.0.0.2\tlocked-db\n")
	cfg, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	withFile := strings.Replace(string(cfg), "  names:\n    127.0.0.1: test-workload\n", "  names_files: [workloads.txt]\n", 1)
	if withFile == string(cfg) {
		t.Fatal("e2eConfig no longer names 127.0.0.1 as expected")
	}
	writeFile(t, dir, "dnsvalve.yaml", withFile)
	p := startDNSValve(t, bin, "--config", file)

	workload := func(client string) string {
		body := httpGet(t, "http://"+httpAddr+"/api/v1/check?name=example.com&client="+client)
		_, after, ok := strings.Cut(body, `"workload": "`)
		if !ok {
			return ""
		}
		name, _, _ := strings.Cut(after, `"`)
		return name
	}
	replace := func(content string) { // as an inventory job should: write, then rename
		t.Helper()
		tmp := names + ".tmp"
		if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, names); err != nil {
			t.Fatal(err)
		}
	}
	if got := workload("127.0.0.1"); got != "runner-a" {
		t.Errorf("workload of 127.0.0.1 = %q, want runner-a", got)
	}
	if got := workload("127.0.0.2"); got != "locked-db" {
		t.Errorf("workload of 127.0.0.2 = %q, want locked-db", got)
	}
	dig(t, dnsAddr, "first.example", "A")

	replace("127.0.0.1 runner-b\n")
	if line := p.waitLog(t, "configuration reloaded"); !strings.Contains(line, `trigger="names file change"`) {
		t.Errorf("reload trigger: %s", line)
	}
	if got := workload("127.0.0.1"); got != "runner-b" {
		t.Errorf("after the rewrite, workload of 127.0.0.1 = %q, want runner-b", got)
	}
	if got := workload("127.0.0.2"); got != "" {
		t.Errorf("after the rewrite, 127.0.0.2 is still named %q", got)
	}
	dig(t, dnsAddr, "second.example", "A")

	replace(strings.Repeat("x", 5000) + "\n")
	p.waitLog(t, "keeping the names of the file's last good read")
	p.waitLog(t, "configuration reloaded")
	if got := workload("127.0.0.1"); got != "runner-b" {
		t.Errorf("after a broken rewrite, workload of 127.0.0.1 = %q, want runner-b (the last good read)", got)
	}
	metrics := httpGet(t, "http://"+httpAddr+"/metrics")
	for _, w := range []string{`dnsvalve_clients_names{file="` + names + `"} 1`, `dnsvalve_clients_names_file_errors_total{file="` + names + `"} 1`} {
		if !strings.Contains(metrics, w) {
			t.Errorf("/metrics lacks %s", w)
		}
	}
	p.stop(t)

	want := map[string]string{"first.example.": "runner-a", "second.example.": "runner-b"}
	for _, r := range readLog(t, logFile) {
		name, _ := r["query_name"].(string)
		w, ok := want[name]
		if !ok {
			continue
		}
		ids, _ := r["srcids"].(map[string]any)
		if ids["instance"] != w {
			t.Errorf("%s logged with srcids %v, want instance %s", name, ids, w)
		}
		delete(want, name)
	}
	if len(want) > 0 {
		t.Errorf("queries missing from the log: %v", want)
	}
}
