package query

import "testing"

func TestLease(t *testing.T) {
	freed := 0
	var l Lease
	for round := 1; round <= 2; round++ { // lent again after it came back
		l.Lend(func() { freed++ })
		l.Retain()
		l.Retain()
		l.Release()
		l.Release()
		if freed != round-1 {
			t.Fatalf("round %d: freed %d times with the lender's reference still held", round, freed)
		}
		l.Release()
		if freed != round {
			t.Fatalf("round %d: freed %d times after the last release", round, freed)
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Errorf("releasing more often than retained did not panic")
			}
		}()
		l.Release()
	}()
	var none *Lease
	none.Retain()
	none.Release() // a nil Lease does nothing
}
