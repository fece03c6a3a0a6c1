package redact

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

func TestURLError(t *testing.T) {
	inner := errors.New("connection refused")
	for _, tc := range []struct {
		name string
		err  error
		want error
	}{
		{"url error", &url.Error{Op: "Post", URL: "https://hooks.example/T000/SECRET", Err: inner}, inner},
		{"wrapped url error", fmt.Errorf("send: %w", &url.Error{Op: "Get", URL: "https://u:pw@feed.example/", Err: inner}), inner},
		{"other error", inner, inner},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := URLError(tc.err)
			if got != tc.want || strings.Contains(got.Error(), "SECRET") || strings.Contains(got.Error(), "pw@") {
				t.Errorf("URLError(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}
