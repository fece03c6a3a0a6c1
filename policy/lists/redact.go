package lists

import (
	"net/url"
	"strings"
)

// redactSource returns a list source as it may be shown (logs, the query
// log's matched-rule source, dnsvalve check): a URL's user information and
// query values, where feeds put their access keys, are replaced by
// REDACTED. File paths and URLs without them are returned as they are.
func redactSource(src string) string {
	if !strings.Contains(src, "://") {
		return src
	}
	u, err := url.Parse(src)
	if err != nil || (u.User == nil && u.RawQuery == "") {
		return src
	}
	if u.User != nil {
		u.User = url.User("REDACTED")
	}
	if u.RawQuery != "" {
		q := u.Query()
		for k := range q {
			q[k] = []string{"REDACTED"}
		}
		u.RawQuery = q.Encode()
	}
	return u.String()
}
