package lists

// Action is what a list entry asks for when it matches.
type Action uint8

// Entry actions. Block is the default for hosts, plain, wildcard, regex and
// adblock entries; RPZ entries say NXDOMAIN or NODATA explicitly; Allow comes
// from adblock "@@" exceptions and RPZ "rpz-passthru.".
const (
	Block Action = iota
	BlockNXDomain
	BlockNoData
	Allow
)

// Match describes the entry that matched a name: enough to answer
// "why was this blocked?" down to the file and line.
type Match struct {
	Rule      string // the entry as written in the source (normalised)
	Source    string // file path or URL the entry came from
	Line      int    // 1-based line number in Source
	Action    Action
	Important bool // adblock $important: beats exceptions
}

// Rank orders matches for conflict resolution, the order in which a List
// resolves its own entries: an important exception beats an important
// block beats an exception beats a block.
func (m Match) Rank() int { return rank(m.Action, m.Important) }
