//go:build unix

package resolver

import (
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkServePacket is a cache hit as a UDP listener serves it: from the
// query's bytes (servePacket: header checks, unpacking into lent messages,
// the production-like chain over a real cache, the reply built in the lent
// arena and packed) to the reply's sendto on loopback. The client's read
// of the reply (a plain read: it allocates nothing) is in the loop too.
// Allocations: the question's name only; the query and the reply come
// from the server's pool.
func BenchmarkServePacket(b *testing.B) {
	fx := newFuzzServer(b)
	data := wireQuery(b, "www.example.com.", dns.TypeA, func(m *dns.Msg) { m.SetEdns0(1232, false) })
	fx.srv.servePacket(fx.w, data) // the miss that fills the cache
	if fx.recvWait(b) == nil {
		b.Fatal("no reply")
	}
	_ = fx.cliConn.SetReadDeadline(time.Now().Add(time.Minute)) // the reply is queued before servePacket returns
	var last []byte
	b.ReportAllocs()
	for b.Loop() {
		fx.srv.servePacket(fx.w, data)
		n, err := fx.cliConn.Read(fx.buf)
		if err != nil {
			b.Fatalf("no reply: %v", err)
		}
		last = fx.buf[:n]
	}
	r := new(dns.Msg)
	if err := r.Unpack(last); err != nil || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		b.Fatalf("reply %v %v", r, err)
	}
}
