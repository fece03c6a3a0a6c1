package cache

import (
	"net"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// TestReply_shapes checks replies built from inline storage and from the
// dns.Copy fallback alike: same records, decremented TTLs, owned by the
// caller (scribbling on them leaves the entry intact).
func TestReply_shapes(t *testing.T) {
	tests := []struct {
		name   string
		qtype  uint16
		answer []string
		extra  func([]dns.RR) // tweak the upstream records
	}{
		{"two_a", dns.TypeA, []string{"q.example. 300 IN A 192.0.2.1", "q.example. 300 IN A 192.0.2.2"}, nil},
		{"a_overflows_inline", dns.TypeA, []string{"q.example. 300 IN CNAME x.example.", "x.example. 300 IN A 192.0.2.1", "x.example. 300 IN A 192.0.2.2", "x.example. 300 IN A 192.0.2.3", "x.example. 300 IN A 192.0.2.4", "x.example. 300 IN A 192.0.2.5", "x.example. 300 IN A 192.0.2.6"}, nil},
		{"a_in_16_byte_form", dns.TypeA, []string{"q.example. 300 IN A 192.0.2.1"}, func(rrs []dns.RR) { rrs[0].(*dns.A).A = net.ParseIP("192.0.2.1") }},
		{"three_aaaa", dns.TypeAAAA, []string{"q.example. 300 IN AAAA 2001:db8::1", "q.example. 300 IN AAAA 2001:db8::2", "q.example. 300 IN AAAA 2001:db8::3"}, nil},
		{"txt", dns.TypeTXT, []string{`q.example. 300 IN TXT "v=spf1 -all"`}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := new(dns.Msg)
			resp.SetQuestion("q.example.", tt.qtype)
			resp.Response = true
			resp.Answer = mustRRs(t, tt.answer...)
			if tt.extra != nil {
				tt.extra(resp.Answer)
			}
			c, err := New(DefaultConfig(), &fakeUpstream{}, nil, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			e, reason := c.newEntry(key{name: "q.example.", qtype: tt.qtype, qclass: dns.ClassINET}, resp, time.Time{})
			if e == nil {
				t.Fatalf("not cached: %s", reason)
			}
			for _, edns := range []bool{false, true} {
				req := newQuery("Q.example.", tt.qtype, edns, false)
				got := reply(req, e, 10*time.Second, false, nil)
				if len(got.Answer) != len(tt.answer) {
					t.Fatalf("answer %v", got.Answer)
				}
				for i, rr := range got.Answer {
					want := dns.Copy(e.msg.Answer[i])
					want.Header().Ttl -= 10
					if want.Header().Name == "q.example." {
						want.Header().Name = "Q.example."
					}
					if !dns.IsDuplicate(rr, want) || rr.Header().Ttl != want.Header().Ttl || rr.Header().Name != want.Header().Name {
						t.Errorf("record %d: %v, want %v", i, rr, want)
					}
					switch v := rr.(type) { // scribble
					case *dns.A:
						v.A[len(v.A)-1] = 0
					case *dns.AAAA:
						v.AAAA[15] = 0
					case *dns.TXT:
						v.Txt[0] = "x"
					}
					rr.Header().Ttl = 7
				}
				got.Answer = append(got.Answer, got.Answer[0])
				if _, err := got.Pack(); err != nil {
					t.Errorf("pack: %v", err)
				}
				if (got.IsEdns0() != nil) != edns {
					t.Errorf("edns %v, OPT %v", edns, got.IsEdns0())
				}
			}
			for i, rr := range e.msg.Answer {
				orig := mustRRs(t, tt.answer[i])[0]
				if !dns.IsDuplicate(rr, orig) || rr.Header().Ttl != 300 {
					t.Errorf("entry record %d corrupted: %v", i, rr)
				}
			}
		})
	}
}

func TestReply_allocs(t *testing.T) {
	resp := new(dns.Msg)
	resp.SetQuestion("q.example.", dns.TypeA)
	resp.Answer = mustRRs(t, "q.example. 300 IN A 192.0.2.1", "q.example. 300 IN A 192.0.2.2")
	c, err := New(DefaultConfig(), &fakeUpstream{}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	e, _ := c.newEntry(key{name: "q.example.", qtype: dns.TypeA, qclass: dns.ClassINET}, resp, time.Time{})
	req := newQuery("q.example.", dns.TypeA, true, true)
	if n := testing.AllocsPerRun(100, func() { _ = reply(req, e, time.Second, false, nil) }); n != 1 {
		t.Errorf("reply allocates %v times, want 1", n)
	}
}

func TestResolve_hit_allocs(t *testing.T) {
	up := &fakeUpstream{reply: answerWith(t, dns.RcodeSuccess, []string{"q.example. 300 IN A 192.0.2.1", "q.example. 300 IN A 192.0.2.2"}, nil)}
	c := newTestCache(t, DefaultConfig(), up)
	req := newQuery("q.example.", dns.TypeA, true, false)
	mustResolve(t, c.Cache, req)
	ctx := t.Context()
	if n := testing.AllocsPerRun(100, func() { _, _, _, _ = c.Resolve(ctx, req) }); n != 1 {
		t.Errorf("a hit allocates %v times, want 1 (the reply)", n)
	}
}

// TestReply_arena: a reply built in an Arena is the one allocated, byte for
// byte, costs no allocation, and a second reply in the same Arena (the
// server reusing it) leaves no trace of the first.
func TestReply_arena(t *testing.T) {
	c, err := New(DefaultConfig(), &fakeUpstream{}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	entryFor := func(qtype uint16, answer ...string) *entry {
		resp := new(dns.Msg)
		resp.SetQuestion("q.example.", qtype)
		resp.Response = true
		resp.Answer = mustRRs(t, answer...)
		e, reason := c.newEntry(key{name: "q.example.", qtype: qtype, qclass: dns.ClassINET}, resp, time.Time{})
		if e == nil {
			t.Fatalf("not cached: %s", reason)
		}
		return e
	}
	tests := []struct {
		name  string
		qtype uint16
		e     *entry
	}{
		{"three_a", dns.TypeA, entryFor(dns.TypeA, "q.example. 300 IN A 192.0.2.1", "q.example. 300 IN A 192.0.2.2", "q.example. 300 IN A 192.0.2.3")},
		{"one_a", dns.TypeA, entryFor(dns.TypeA, "q.example. 300 IN A 192.0.2.9")},
		{"cname_and_aaaa", dns.TypeAAAA, entryFor(dns.TypeAAAA, "q.example. 300 IN CNAME x.example.", "x.example. 300 IN AAAA 2001:db8::1", "x.example. 300 IN AAAA 2001:db8::2")},
		{"a_overflows_inline", dns.TypeA, entryFor(dns.TypeA, "q.example. 300 IN A 192.0.2.1", "q.example. 300 IN A 192.0.2.2", "q.example. 300 IN A 192.0.2.3", "q.example. 300 IN A 192.0.2.4")},
		{"txt", dns.TypeTXT, entryFor(dns.TypeTXT, `q.example. 300 IN TXT "v=spf1 -all"`)},
	}
	var ar Arena
	// The same Arena through every case, in both orders: each reply must
	// be exactly what a fresh allocation gives, whatever the Arena held.
	for _, order := range [][]int{{0, 1, 2, 3, 4}, {4, 3, 2, 1, 0}} {
		for _, i := range order {
			tt := tests[i]
			for _, edns := range []bool{true, false} {
				req := newQuery("Q.example.", tt.qtype, edns, edns)
				want, err := reply(req, tt.e, 5*time.Second, false, nil).Pack()
				if err != nil {
					t.Fatal(err)
				}
				got, err := reply(req, tt.e, 5*time.Second, false, &ar).Pack()
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != string(want) {
					t.Errorf("%s edns=%v: arena reply\n%x\nwant\n%x", tt.name, edns, got, want)
				}
			}
		}
	}
	req := newQuery("q.example.", dns.TypeA, true, true)
	e := tests[0].e
	if n := testing.AllocsPerRun(100, func() { _ = reply(req, e, time.Second, false, &ar) }); n != 0 {
		t.Errorf("reply in an arena allocates %v times, want 0", n)
	}
}

// TestResolve_arenaSlot: a hit takes the slot's Arena (no allocation, the
// reply lives in it) and empties the slot, so a second lookup for the same
// query gets an allocated reply instead of overwriting the first; a
// context without a slot, or an empty slot, allocates as before; and the
// detached context of an upstream exchange carries no slot.
func TestResolve_arenaSlot(t *testing.T) {
	up := &fakeUpstream{reply: answerWith(t, dns.RcodeSuccess, []string{"q.example. 300 IN A 192.0.2.1", "q.example. 300 IN A 192.0.2.2"}, nil)}
	c := newTestCache(t, DefaultConfig(), up)
	req := newQuery("q.example.", dns.TypeA, true, false)
	mustResolve(t, c.Cache, req)

	var slot ArenaSlot
	var ar Arena
	ctx := WithArenaSlot(t.Context(), &slot)
	slot.Set(&ar)
	first, _, _, err := c.Resolve(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if first != &ar.a.msg {
		t.Errorf("the hit did not build its reply in the slot's arena")
	}
	if slot.arena != nil {
		t.Errorf("the slot still holds the arena after a reply was built in it")
	}
	second, _, _, err := c.Resolve(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatalf("a second lookup reused the arena the first reply lives in")
	}
	if n := testing.AllocsPerRun(100, func() {
		slot.Set(&ar)
		_, _, _, _ = c.Resolve(ctx, req)
	}); n != 0 {
		t.Errorf("a hit with an arena allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _, _, _ = c.Resolve(ctx, req) }); n != 1 {
		t.Errorf("a hit with an empty slot allocates %v times, want 1", n)
	}
	if arenaSlot(withoutArenaSlot(ctx)) != nil {
		t.Errorf("withoutArenaSlot kept the slot")
	}
	if plain := t.Context(); withoutArenaSlot(plain) != plain {
		t.Errorf("withoutArenaSlot wrapped a context that has no slot")
	}
}
