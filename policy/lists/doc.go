// Package lists reads domain block and allow lists (hosts, plain domains,
// wildcard, adblock DNS syntax, RPZ zones and regexes), compiles them into
// compact immutable matchers (List) and keeps them fresh (Manager): local
// files and http(s) URLs, refreshed on timers with conditional GETs, each
// source's last good copy kept on disk so a failing or unreachable source
// never empties its list.
package lists
