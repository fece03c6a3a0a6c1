package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// newTestApp builds an app from cfg without starting it.
func newTestApp(t testing.TB, cfg *Config) *app {
	t.Helper()
	a, err := newApp(context.Background(), cfg, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("newApp: %v", err)
	}
	t.Cleanup(func() {
		_ = a.obs.Close(context.Background())
		a.cache.Close()
		_ = a.router.Load().Close()
	})
	return a
}

// fakeUpstream is an in-process upstream on 127.0.0.1:0: A queries get
// 192.0.2.1 (TTL 300), names with a label "nx" get NXDOMAIN with a SOA,
// names with a label "cname-to-X" get a CNAME to X.example plus its A.
type fakeUpstream struct {
	addr    string
	queries atomic.Int64
}

func startFakeUpstream(t testing.TB) *fakeUpstream {
	t.Helper()
	f := &fakeUpstream{}
	// UDP and TCP on one port: the TCP side of a free UDP port may be
	// taken (an ephemeral port of another connection), so try again.
	var pc net.PacketConn
	var l net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close()
		if attempt == 20 {
			t.Fatalf("no loopback port free for both UDP and TCP: %v", err)
		}
	}
	f.addr = pc.LocalAddr().String()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		f.queries.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		name := strings.ToLower(q.Name)
		switch {
		case strings.HasPrefix(name, "nx.") || strings.Contains(name, ".nx."):
			m.Rcode = dns.RcodeNameError
			soa, _ := dns.NewRR("example. 300 IN SOA ns.example. host.example. 1 3600 600 86400 60")
			m.Ns = append(m.Ns, soa)
		case strings.HasPrefix(name, "cname-to-"):
			target := strings.TrimPrefix(strings.SplitN(name, ".", 2)[0], "cname-to-") + ".example."
			m.Answer = append(m.Answer, &dns.CNAME{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: 300}, Target: target},
				&dns.A{Hdr: dns.RR_Header{Name: target, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 2)})
		case q.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: net.IPv4(192, 0, 2, 1)})
		}
		_ = w.WriteMsg(m)
	})
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: l, Handler: h}} {
		go func() { _ = s.ActivateAndServe() }()
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return f
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// buildBinary builds cmd/dnsvalve once per test run (with -race when the
// tests run with it).
func buildBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "dnsvalve-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "dnsvalve")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, ".")...).CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("go build: %s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build dnsvalve: %v", buildErr)
	}
	return binPath
}

// needTool skips (or, in CI, fails) when a command the test needs is absent.
func needTool(t testing.TB, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed (the test script installs it): %v", name, err)
		}
		t.Skipf("%s is not installed; run the README's test command, which installs it", name)
	}
}

// proc is a running dnsvalve binary.
type proc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr []string
	lines  chan string
	done   chan error
}

// startDNSValve runs the binary with args and waits for its "dnsvalve
// started" log line.
func startDNSValve(t testing.TB, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, lines: make(chan string, 1024), done: make(chan error, 1)}
	started := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		once := sync.Once{}
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr = append(p.stderr, line)
			p.mu.Unlock()
			select {
			case p.lines <- line:
			default:
			}
			if strings.Contains(line, "dnsvalve started") {
				once.Do(func() { close(started) })
			}
		}
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	select {
	case <-started:
	case err := <-p.done:
		t.Fatalf("dnsvalve exited before starting: %v\n%s", err, p.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("dnsvalve did not start within 30s\n%s", p.log())
	}
	return p
}

// stop sends SIGTERM and waits (20s at most) for a clean exit.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, p.log())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no exit within 20s of SIGTERM\n%s", p.log())
	}
}

func (p *proc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.stderr, "\n")
}

// waitLog waits for a stderr line containing s.
func (p *proc) waitLog(t testing.TB, s string) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case line := <-p.lines:
			if strings.Contains(line, s) {
				return line
			}
		case <-deadline:
			t.Fatalf("no log line containing %q\n%s", s, p.log())
		}
	}
}

// freePort returns a loopback port that was free a moment ago (for the
// binary, which has to be told its port).
func freePort(t testing.TB) string {
	t.Helper()
	// Ports below Linux's ephemeral range (32768-60999): other tests bind
	// ":0" concurrently, and the kernel could hand them a port taken from
	// that range between this check and the binary's own bind.
	for range 200 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			continue
		}
		l, err := net.Listen("tcp", addr)
		pc.Close()
		if err != nil {
			continue
		}
		l.Close()
		return addr
	}
	t.Fatal("no free loopback port found")
	return ""
}

// dig runs dig against addr and returns its output.
func dig(t testing.TB, addr string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	all := append([]string{"@" + host, "-p", port, "+time=3", "+tries=1"}, args...)
	out, err := exec.Command("dig", all...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", all, err, out)
	}
	return string(out)
}

func execCommand(name string, args ...string) *exec.Cmd { return exec.Command(name, args...) }
