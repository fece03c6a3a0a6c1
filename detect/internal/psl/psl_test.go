package psl

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"golang.org/x/net/publicsuffix"
)

func TestMatchesUpstream(t *testing.T) {
	names := []string{
		"com", "example.com", "www.example.co.uk", "foo.blogspot.com", "a.b.compute-1.amazonaws.com",
		"ip-10-0-0-1.ec2.internal", "svc.cluster.local", "x.y.kawasaki.jp", "city.kawasaki.jp",
		"a.b.c.d.e.s3.dualstack.us-east-1.amazonaws.com", "xn--p1ai", "foo.xn--p1ai", "localhost",
	}
	if f, err := os.Open("/work/shared/testdata/legit/umbrella-top-100k.txt"); err == nil {
		defer f.Close()
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			names = append(names, strings.ToLower(strings.TrimSpace(sc.Text())))
		}
	}
	for _, n := range names {
		got, gotICANN := PublicSuffix(n)
		want, wantICANN := publicsuffix.PublicSuffix(n)
		if got != want || gotICANN != wantICANN {
			t.Errorf("PublicSuffix(%q) = %q,%v; upstream %q,%v", n, got, gotICANN, want, wantICANN)
		}
	}
}

func BenchmarkPublicSuffix(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		PublicSuffix("abcdefgh.foo.example.co.uk")
	}
}
