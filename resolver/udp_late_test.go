package resolver

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestLateBatchHoldBound: a reply added to a late batch that has waited
// over udpMaxHold for its flusher (busy readers ahead of it) sends the
// batch itself, with the accounting of every reply in it; the flusher,
// when it runs, finds nothing left to send. (TestLateRepliesAfterUpstreamWait
// covers the batch through a running server.)
func TestLateBatchHoldBound(t *testing.T) {
	if !batchedSends {
		t.Skip("no sendmmsg here: replies are never batched late")
	}
	srvConn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer srvConn.Close()
	cli, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	to := cli.LocalAddr().(*net.UDPAddr).AddrPort()
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())

	s := NewServer(ServerConfig{}, nil, nil, NewMetrics(prometheus.NewRegistry()), nil, nil)
	l := newUDPLoop(s, srvConn)
	s.udpPending.Add(2) // the two packets whose replies follow

	// A batch whose flusher yielded 2 ms ago and has not run since.
	lb, err := newMmsgBatch(srvConn, udpBatch, udpReplySlot, 0)
	if err != nil {
		t.Fatal(err)
	}
	lb.add([]byte("first"), to, nil)
	l.late.batch, l.late.held, l.late.since = lb, 1, time.Now().Add(-2*time.Millisecond).UnixNano()

	if !l.sendLate([]byte("second"), to, nil) {
		t.Fatal("the reply was not taken by the late batch")
	}
	_ = cli.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	for _, want := range []string{"first", "second"} {
		n, err := cli.Read(buf)
		if err != nil {
			t.Fatalf("waiting for %q: %v", want, err)
		}
		if got := string(buf[:n]); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if n := s.udpPending.Load(); n != 0 {
		t.Errorf("%d packets still pending after the batch was sent", n)
	}
	if l.late.batch != nil || l.late.held != 0 {
		t.Errorf("the late batch was not emptied: %d replies held", l.late.held)
	}
}
