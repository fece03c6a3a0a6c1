# Shared helpers of bench/chaos/run.sh and scenario.sh (sourced).
R=${R:-$SOAK/run}
DNS=127.0.0.1:5353
HTTP=127.0.0.1:9153
UP=127.0.0.1:5399
WWW=127.0.0.1:8000
TOOL=$SOAK/chaostool
ts() { date +%H:%M:%S.%3N; }
clog() { echo "$(ts) $*" >>"$R/chaos.log"; }

# msum NAME [REGEX]: sum of a metric's samples (optionally only lines matching REGEX)
msum() {
	curl -s --max-time 20 "http://$HTTP/metrics" | awk -v n="$1" -v re="${2:-}" '
		$1 ~ "^"n"({|$)" && (re == "" || $0 ~ re) { s += $NF } END { printf "%.0f\n", s }'
}

# atomic WRITE: content on stdin to $1 via rename; inplace: truncate+write
write_atomic() { cat >"$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"; }
write_inplace() { local t; t=$(cat); printf '%s\n' "$t" >"$1"; }

gen_local_list() { # G
	{
		echo "# local hosts list, generation $1"
		for i in $(seq 0 499); do echo "0.0.0.0 stable-$i.lblock.test"; done
		for i in $(seq 0 99); do echo "0.0.0.0 g$1-$i.lrot.test"; done
	}
}
gen_url_list() { # G
	{
		echo "# url list, generation $1"
		for i in $(seq 0 499); do echo "stable-$i.ublock.test"; done
		for i in $(seq 0 99); do echo "g$1-$i.urot.test"; done
	}
}
gen_names() { # G
	{
		echo "# names generation $1"
		echo "127.0.0.1 load-gen$1"
		echo "127.0.0.2 sens-gen$1"
		for i in $(seq 1 250); do echo "10.1.$((i / 250)).$((i % 250)) host-$i-gen$1"; done
		echo "this line is not an entry"
	}
}

# write_cfg VARIANT(A|B) > file
gen_cfg() {
	local extra_list="" extra_block="" ups='["udp://127.0.0.1:5399"]'
	if [[ $1 == B ]]; then
		extra_list="
  - name: extra-list
    category: ads
    sources: [\"$R/lists/extra.txt\"]"
		extra_block=", ads"
		ups='["udp://127.0.0.1:5399", "tcp://127.0.0.1:5399"]'
	fi
	cat <<YAML
# variant $1
server:
  listen: ["$DNS"]
http:
  listen: "$HTTP"
  pprof: true
upstream:
  servers: $ups
  timeout: 2s
cache:
  size: 100000
state_dir: "$R/state"
lists:
  - name: local-block
    category: malware
    sources: ["$R/lists/local-hosts.txt"]
  - name: url-block
    category: phishing
    sources: ["http://$WWW/url-list.txt"]
    refresh: 10s
  - name: alert-list
    category: file-sharing
    sources: ["$R/lists/alert.txt"]
  - name: corp-allow
    category: corp-allow
    sources: ["$R/lists/corp-allow.txt"]$extra_list
clients:
  groups:
    - name: sensitive-grp
      cidrs: ["127.0.0.2/32"]
      policy: sensitive
  names_files: ["$R/names.txt"]
policies:
  default:
    mode: open
    block: [malware, phishing$extra_block]
    alert: [file-sharing]
    block_response: nxdomain
    block_qtypes: ["NULL"]
    detect: observe
  sensitive:
    mode: allowlist
    allow: [corp-allow]
    block_response: refused
    block_qtypes: ["NULL"]
    detect: enforce
detect:
  newly_seen:
    store: "file:$R/state/seen.db"
alerts:
  policy: [alert, block]
querylog:
  sinks: ["file:$SOAK/q.log?max_size_mb=200&max_backups=0"]
log:
  level: info
YAML
}

# gen_invalid K: an invalid config of kind K (0..3)
gen_invalid() {
	case $(($1 % 4)) in
	0) gen_cfg A | sed 's/^lists:/lists: [oops/' ;;             # YAML syntax error
	1) gen_cfg A | sed 's/^  timeout: 2s/  timeout: 2s\n  bogus_key: 1/' ;;  # unknown key
	2) gen_cfg A | sed 's/block: \[malware, phishing\]/block: [malware, phishing, no-such-list]/' ;;
	3) gen_cfg A | sed 's#"udp://127.0.0.1:5399"#"bogus://127.0.0.1:5399"#' ;;
	esac
}
