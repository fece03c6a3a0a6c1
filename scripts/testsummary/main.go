// Command testsummary reads `go test -json` events on stdin, prints each
// package's result line as go test would, the output of every failed test,
// and a closing "N passed, N failed, N skipped" line. It exits 1 when a
// test or package failed, or when no test ran at all.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type event struct {
	Action  string
	Package string
	Test    string
	Output  string
	Elapsed float64
}

func main() {
	os.Exit(run())
}

func run() int {
	var passed, failed, skipped int
	pkgFailed := false
	outputs := map[string]*strings.Builder{} // package/test -> output
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Println(sc.Text()) // not an event: build errors and the like
			continue
		}
		key := e.Package + "/" + e.Test
		switch e.Action {
		case "output":
			if e.Test == "" {
				if strings.HasPrefix(e.Output, "ok ") || strings.HasPrefix(e.Output, "FAIL") || strings.HasPrefix(e.Output, "?") ||
					strings.HasPrefix(e.Output, "---") || strings.Contains(e.Output, "[build failed]") || strings.HasPrefix(e.Output, "#") {
					fmt.Print(e.Output)
				}
				continue
			}
			b := outputs[key]
			if b == nil {
				b = &strings.Builder{}
				outputs[key] = b
			}
			if b.Len() < 64<<10 {
				b.WriteString(e.Output)
			}
		case "pass":
			if e.Test != "" {
				passed++
				delete(outputs, key)
			}
		case "skip":
			if e.Test != "" {
				skipped++
				delete(outputs, key)
			}
		case "fail":
			if e.Test == "" {
				pkgFailed = true
				continue
			}
			failed++
			if b := outputs[key]; b != nil {
				fmt.Printf("--- FAIL: %s (%s)\n%s", e.Test, e.Package, b.String())
			}
			delete(outputs, key)
		}
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if failed > 0 || pkgFailed || passed == 0 {
		return 1
	}
	return 0
}
