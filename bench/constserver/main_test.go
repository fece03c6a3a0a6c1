package main

import (
	"bytes"
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func startServer(tb testing.TB) (addr string, stop func() string) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	readyc := make(chan string, 1)
	done := make(chan error, 1)
	var out bytes.Buffer
	go func() {
		done <- serve(ctx, "127.0.0.1:0", true, &out, func(a net.Addr) { readyc <- a.String() })
	}()
	select {
	case addr = <-readyc:
	case err := <-done:
		tb.Fatalf("serve: %v", err)
	}
	var once sync.Once
	stop = func() string {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				tb.Errorf("serve returned %v", err)
			}
		})
		return out.String()
	}
	tb.Cleanup(func() { stop() })
	return addr, stop
}

func TestConstAnswer(t *testing.T) {
	addr, stop := startServer(t)
	tests := []struct {
		name    string
		proto   string
		qtype   uint16
		answers int
	}{
		{name: "a_udp", proto: "udp", qtype: dns.TypeA, answers: 1},
		{name: "a_tcp", proto: "tcp", qtype: dns.TypeA, answers: 1},
		{name: "aaaa_udp_nodata", proto: "udp", qtype: dns.TypeAAAA, answers: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := new(dns.Msg)
			m.SetQuestion("anything.const.test.", tt.qtype)
			c := &dns.Client{Net: tt.proto, Timeout: 2 * time.Second}
			resp, _, err := c.Exchange(m, addr)
			if err != nil {
				t.Fatalf("exchange: %v", err)
			}
			if resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != tt.answers {
				t.Fatalf("got rcode %s with %d answers, want NOERROR with %d", dns.RcodeToString[resp.Rcode], len(resp.Answer), tt.answers)
			}
			if tt.answers == 1 {
				a, ok := resp.Answer[0].(*dns.A)
				if !ok || !a.A.Equal(answerIP) || a.Hdr.Name != "anything.const.test." {
					t.Errorf("answer = %s, want anything.const.test. A 192.0.2.1", resp.Answer[0])
				}
			}
		})
	}
	if got, want := stop(), "constserver: answered 3 queries\n"; got != want {
		t.Errorf("stats = %q, want %q", got, want)
	}
}
