package query

import (
	"context"
	"testing"
)

// TestBeforeWait: the hook runs where it was set, not once it was
// stripped (as the cache does for work it runs on another goroutine), and
// stripping a context that has none changes nothing.
func TestBeforeWait(t *testing.T) {
	calls := 0
	hooked := WithBeforeWait(context.Background(), func() { calls++ })
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want int
	}{
		{"hook_set", hooked, 1},
		{"hook_stripped", WithoutBeforeWait(hooked), 0},
		{"stripped_then_child", context.WithoutCancel(WithoutBeforeWait(hooked)), 0},
		{"no_hook", context.Background(), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls = 0
			BeforeWait(tc.ctx)
			if calls != tc.want {
				t.Errorf("hook ran %d times, want %d", calls, tc.want)
			}
		})
	}
	if bg := context.Background(); WithoutBeforeWait(bg) != bg {
		t.Error("WithoutBeforeWait of a context without a hook returned a new context")
	}
}
