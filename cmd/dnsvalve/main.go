// Command dnsvalve is a DNS-filtering forwarding resolver for cloud egress:
// it forwards and caches, enforces per-client-group policy (allow-list-only
// mode, category block lists, alert-only rules), scores every query for
// tunneling and newly seen domains, and logs every query with the client's
// identity in the Route 53 Resolver query-log schema.
//
// Subcommands: serve (the default), check, score, top, version.
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strings"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

const usage = `dnsvalve: a DNS-filtering resolver, the one-way valve for DNS egress.

Usage:
  dnsvalve [serve] [--config FILE] [--listen ADDR]... [--upstream URL]... [--http ADDR]
  dnsvalve check [--config FILE] [--client IP] [--qtype TYPE] [--json] NAME...
  dnsvalve score [--config FILE] [--format auto|dnsvalve|route53] [FILE...]
  dnsvalve top [--http ADDR] [--token TOKEN]
  dnsvalve version

Without --config, dnsvalve runs on its embedded default configuration:
UDP and TCP on 127.0.0.1:5353, upstreams from /etc/resolv.conf, HTTP
(metrics, health) on 127.0.0.1:9153. Environment variables DNSVALVE_<SECTION>_<KEY>
override the file; flags override both.
`

// run is main without os.Exit, for tests. It returns the exit status:
// 0 ok, 1 runtime failure (check: a name was blocked), 2 usage or config error.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serveCmd(args, stderr)
	case "check":
		return checkCmd(args, stdout, stderr)
	case "score":
		return scoreCmd(args, stdin, stdout, stderr)
	case "top":
		return topCmd(args, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, versionString())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "dnsvalve: unknown command %q\n\n%s", cmd, usage)
	return 2
}

func versionString() string {
	v := version
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " (" + s.Value[:12] + ")"
			}
		}
		return fmt.Sprintf("dnsvalve %s %s", v, bi.GoVersion)
	}
	return "dnsvalve " + v
}

// exitStatus maps an error to the exit status: 2 for configuration errors.
func exitStatus(err error) int {
	if errors.Is(err, ErrConfig) {
		return 2
	}
	return 1
}

func lookupEnv(key string) string { return os.Getenv(key) }
