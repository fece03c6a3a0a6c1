package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/dnsvalve/dnsvalve/resolver/stats"
)

// topCmd shows the top clients, blocked domains and scored pairs of the
// last minutes from a running dnsvalve's /api/v1/stats.
func topCmd(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("top", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("http", "127.0.0.1:9153", "HTTP address of the running dnsvalve (http.listen)")
	token := fs.String("token", "", "API token (http.token); default $DNSVALVE_HTTP_TOKEN")
	minutes := fs.Int("minutes", 5, "how many minutes back")
	n := fs.Int("n", 10, "rows per table")
	asJSON := fs.Bool("json", false, "print the JSON as served")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *token == "" {
		*token = lookupEnv("DNSVALVE_HTTP_TOKEN")
	}
	u := url.URL{Scheme: "http", Host: *addr, Path: "/api/v1/stats",
		RawQuery: url.Values{"minutes": {strconv.Itoa(*minutes)}, "n": {strconv.Itoa(*n)}}.Encode()}
	req, err := http.NewRequest(http.MethodGet, u.String(), nil)
	if err != nil {
		fmt.Fprintf(stderr, "dnsvalve top: %v\n", err)
		return 2
	}
	if *token != "" {
		req.Header.Set("Authorization", "Bearer "+*token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "dnsvalve top: %v\n", err)
		return 1
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "dnsvalve top: %s: %s %v\n", u.String(), resp.Status, err)
		return 1
	}
	if *asJSON {
		_, _ = stdout.Write(body)
		return 0
	}
	var top stats.Top
	if err := json.Unmarshal(body, &top); err != nil {
		fmt.Fprintf(stderr, "dnsvalve top: decode: %v\n", err)
		return 1
	}
	writeTop(stdout, top)
	return 0
}

func writeTop(w io.Writer, top stats.Top) {
	fmt.Fprintf(w, "last %d minutes (since %s): %d queries\n\n", top.Minutes, top.Since.Format(time.RFC3339), top.Queries)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOP CLIENTS\tWORKLOAD\tQUERIES\tBLOCKED")
	for _, c := range top.Clients {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", c.Addr, dash(c.Workload), c.Queries, c.Blocked)
	}
	fmt.Fprintln(tw, "\nTOP BLOCKED\tCATEGORY\tCOUNT\t")
	for _, b := range top.Blocked {
		fmt.Fprintf(tw, "%s\t%s\t%d\t\n", b.Name, dash(b.Category), b.Count)
	}
	fmt.Fprintln(tw, "\nTOP SCORED\tDOMAIN\tMAX SCORE\tQUERIES\tALERT")
	for _, s := range top.Scored {
		client := s.Client
		if s.Workload != "" {
			client += " (" + s.Workload + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%.2f\t%d\t%v\n", client, s.Domain, s.MaxScore, s.Queries, s.Alert)
	}
	_ = tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
