// Package redact keeps secrets that URLs carry (passwords, tokens in a
// path or query) out of errors that get logged.
package redact

import (
	"errors"
	"net/url"
)

// URLError returns err without the URL a *url.Error in it names (the
// error it wraps), and err itself when it holds none.
func URLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
