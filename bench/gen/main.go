// Command gen writes dnsperf query files ("name TYPE" per line) for the
// dnsvalve benchmarks. Every set is deterministic for a given -seed, and every
// name lies under -zone (default "bench.test.", a reserved TLD that the fake
// upstream answers and nothing else ever sees).
//
// Sets:
//
//	hits     -n distinct names; dnsperf loops over them, so after one warm-up
//	         pass every query is a cache hit.
//	misses   -n unique random names: every query is a cache miss (as long as
//	         the run does not wrap around the file).
//	mix      -n queries: a fraction -unique of unique random names, the rest
//	         drawn from -popular names with a Zipf(-zipf) distribution (rank 0
//	         most popular), like real client traffic.
//	popular  the -popular names of the mix set, each once (a warm-up file).
//	tunnel   -n queries shaped like DNS tunnelling: long random base32 labels
//	         under a handful of tunnel domains, mostly TXT.
//	list     -n distinct domain names, one per line, no type and no trailing
//	         dot: a plain-domains block list for the policy benchmarks
//	         (bench/lists.sh). Names are "<6 random chars><i in base 36>" under
//	         one of 16 second-level labels of -zone, so they share a zone but
//	         not a registered-domain label; -set list -n N -seed S is a prefix
//	         of the same with a larger N.
//
// Query types: hits and popular names use A, AAAA and TXT in a fixed 7:2:1
// pattern by index; unique names are A or AAAA at random.
//
// Usage:
//
//	gen -set hits -n 1000 -o hits.txt
//	gen -set misses -n 2000000 -seed 2 -o misses.txt
//	gen -set mix -n 1000000 -popular 10000 -unique 0.2 -zipf 1.1 -o mix.txt
//	gen -set list -n 2000000 -zone list.test. -o list-2m.txt
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
)

// errUsage marks bad options.
var errUsage = errors.New("usage")

// options are the generator's parameters; see the package comment.
type options struct {
	set     string
	n       int
	seed    uint64
	zone    string
	popular int
	zipf    float64
	unique  float64
}

const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// base32 is the RFC 4648 lower-case alphabet tunnelling tools encode with.
const base32 = "abcdefghijklmnopqrstuvwxyz234567"

// gen holds the state of one generation run.
type gen struct {
	o   options
	rng *rand.Rand
	w   *bufio.Writer
	buf []byte
}

// generate writes the set o.set to w.
func generate(w io.Writer, o options) error {
	if o.n < 0 || o.popular <= 0 {
		return fmt.Errorf("generate: -n must be >= 0 and -popular > 0: %w", errUsage)
	}
	if o.unique < 0 || o.unique > 1 {
		return fmt.Errorf("generate: -unique %v not in [0,1]: %w", o.unique, errUsage)
	}
	if o.zipf <= 1 {
		return fmt.Errorf("generate: -zipf %v must be > 1: %w", o.zipf, errUsage)
	}
	o.zone = strings.TrimSuffix(strings.ToLower(o.zone), ".") + "."
	if o.zone == "." {
		return fmt.Errorf("generate: -zone must not be the root: %w", errUsage)
	}
	g := &gen{
		o:   o,
		rng: rand.New(rand.NewPCG(o.seed, o.seed^0x9e3779b97f4a7c15)),
		w:   bufio.NewWriterSize(w, 64<<10),
	}
	switch o.set {
	case "hits":
		for i := range o.n {
			g.indexed("h", "hits", i)
		}
	case "popular":
		for i := range o.popular {
			g.indexed("p", "pop", i)
		}
	case "misses":
		for i := range o.n {
			g.unique("miss", i)
		}
	case "mix":
		z := rand.NewZipf(g.rng, o.zipf, 1, uint64(o.popular-1))
		for i := range o.n {
			if g.rng.Float64() < o.unique {
				g.unique("u.mix", i)
			} else {
				g.indexed("p", "pop", int(z.Uint64()))
			}
		}
	case "tunnel":
		for range o.n {
			g.tunnel()
		}
	case "list":
		for i := range o.n {
			g.listName(i)
		}
	default:
		return fmt.Errorf("generate: unknown set %q (hits, misses, mix, popular, tunnel, list): %w", o.set, errUsage)
	}
	if err := g.w.Flush(); err != nil {
		return fmt.Errorf("generate: write: %w", err)
	}
	return nil
}

// indexed writes "<prefix><i>.<sub>.<zone> TYPE" with the 7:2:1 type pattern.
func (g *gen) indexed(prefix, sub string, i int) {
	b := append(g.buf[:0], prefix...)
	b = strconv.AppendInt(b, int64(i), 10)
	b = append(b, '.')
	b = append(b, sub...)
	b = append(b, '.')
	b = append(b, g.o.zone...)
	switch i % 10 {
	case 7, 8:
		b = append(b, " AAAA\n"...)
	case 9:
		b = append(b, " TXT\n"...)
	default:
		b = append(b, " A\n"...)
	}
	g.buf = b
	_, _ = g.w.Write(b) // bufio keeps the first error for Flush
}

// unique writes "<8 random chars>-<i in base 36>.<sub>.<zone> A|AAAA". The
// index makes names unique within one file, the random part across seeds.
func (g *gen) unique(sub string, i int) {
	b := g.buf[:0]
	for range 8 {
		b = append(b, alphabet[g.rng.IntN(len(alphabet))])
	}
	b = append(b, '-')
	b = strconv.AppendInt(b, int64(i), 36)
	b = append(b, '.')
	b = append(b, sub...)
	b = append(b, '.')
	b = append(b, g.o.zone...)
	if g.rng.IntN(4) == 0 {
		b = append(b, " AAAA\n"...)
	} else {
		b = append(b, " A\n"...)
	}
	g.buf = b
	_, _ = g.w.Write(b)
}

// tunnel writes a tunnel-shaped query: two or three base32 labels of 40-63
// characters under one of eight tunnel domains; 60% TXT, 20% A, 20% AAAA.
func (g *gen) tunnel() {
	b := g.buf[:0]
	for range 2 + g.rng.IntN(2) {
		for range 40 + g.rng.IntN(24) {
			b = append(b, base32[g.rng.IntN(len(base32))])
		}
		b = append(b, '.')
	}
	b = append(b, 't')
	b = strconv.AppendInt(b, int64(g.rng.IntN(8)), 10)
	b = append(b, ".tunnel."...)
	b = append(b, g.o.zone...)
	switch r := g.rng.IntN(10); {
	case r < 6:
		b = append(b, " TXT\n"...)
	case r < 8:
		b = append(b, " A\n"...)
	default:
		b = append(b, " AAAA\n"...)
	}
	g.buf = b
	_, _ = g.w.Write(b)
}

// listName writes "<6 random chars><i in base 36>.s<i%16>.<zone without dot>"
// and a newline: a block-list line. The index makes names distinct.
func (g *gen) listName(i int) {
	b := g.buf[:0]
	for range 6 {
		b = append(b, alphabet[g.rng.IntN(26)])
	}
	b = strconv.AppendInt(b, int64(i), 36)
	b = append(b, ".s"...)
	b = strconv.AppendInt(b, int64(i%16), 10)
	b = append(b, '.')
	b = append(b, g.o.zone[:len(g.o.zone)-1]...)
	b = append(b, '\n')
	g.buf = b
	_, _ = g.w.Write(b)
}

func main() {
	var o options
	var out string
	flag.StringVar(&o.set, "set", "hits", "query set: hits, misses, mix, popular, tunnel, list")
	flag.IntVar(&o.n, "n", 1000, "number of lines (not used by -set popular)")
	flag.Uint64Var(&o.seed, "seed", 1, "random seed; the same seed gives the same file")
	flag.StringVar(&o.zone, "zone", "bench.test.", "zone every name lies under")
	flag.IntVar(&o.popular, "popular", 10000, "size of the popular set (mix, popular)")
	flag.Float64Var(&o.zipf, "zipf", 1.1, "Zipf exponent s (> 1) of the popular set (mix)")
	flag.Float64Var(&o.unique, "unique", 0.2, "fraction of unique names (mix)")
	flag.StringVar(&out, "o", "-", "output file, - for stdout")
	flag.Parse()

	if err := writeTo(out, o); err != nil {
		fmt.Fprintln(os.Stderr, "gen:", err)
		if errors.Is(err, errUsage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// writeTo generates o into the file out, or stdout for "-".
func writeTo(out string, o options) error {
	if out == "-" {
		return generate(os.Stdout, o)
	}
	f, err := os.Create(out)
	if err != nil {
		return fmt.Errorf("create output: %w", err)
	}
	if err := generate(f, o); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close output: %w", err)
	}
	return nil
}
