// Package redistest runs a real redis-server on a free loopback port for
// tests of the Redis-backed detector state.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is a redis-server child process on 127.0.0.1.
type Server struct {
	Port int
	tb   testing.TB
	cmd  *exec.Cmd
	done chan struct{}
}

// Addr is "127.0.0.1:PORT".
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)) }

// URL is "redis://127.0.0.1:PORT/0".
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Start runs redis-server on a free port without persistence and waits
// until it answers. Without redis-server the test is skipped, or fails
// when the CI environment variable is set. The server stops at cleanup.
func Start(tb testing.TB) *Server {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") != "" {
			tb.Fatalf("redis-server is not installed (the test script installs it): %v", err)
		}
		tb.Skip("redis-server is not installed; run the README's test command (scripts/test.sh), which installs it")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{Port: port, tb: tb}
	s.start()
	tb.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.tb.Helper()
	s.cmd = exec.Command("redis-server", "--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--protected-mode", "yes")
	s.cmd.Stdout, s.cmd.Stderr = nil, nil
	if err := s.cmd.Start(); err != nil {
		s.tb.Fatalf("redis-server: %v", err)
	}
	s.done = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(s.cmd, s.done)
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := s.Do("PING"); err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.tb.Fatalf("redis-server on port %d did not answer within 10s", s.Port)
		}
		select {
		case <-s.done:
			s.tb.Fatalf("redis-server on port %d exited at start", s.Port)
		case <-time.After(20 * time.Millisecond): // polling a child process's readiness
		}
	}
}

// Stop kills the server and waits for it to exit (idempotent).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	<-s.done
	s.cmd = nil
}

// Restart starts the server again on the same port (empty: no persistence).
func (s *Server) Restart() {
	s.tb.Helper()
	s.Stop()
	s.start()
}

// Do sends one command in RESP and returns the raw first reply line (and
// for bulk replies the payload), enough for PING, INFO and FLUSHALL.
func (s *Server) Do(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", s.Addr())
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.Write([]byte(b.String())); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimRight(line, "\r\n")
	switch {
	case strings.HasPrefix(line, "-"):
		return "", fmt.Errorf("redis: %s", line[1:])
	case strings.HasPrefix(line, "$"):
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
	return line, nil
}

// Info returns the integer field of INFO section (e.g. "memory",
// "used_memory").
func (s *Server) Info(section, field string) (int64, error) {
	out, err := s.Do("INFO", section)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(out, "\r\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, fmt.Errorf("INFO %s: no field %s", section, field)
}

// Commands is the total number of commands processed
// (INFO stats total_commands_processed), including the INFO calls.
func (s *Server) Commands() (int64, error) { return s.Info("stats", "total_commands_processed") }
