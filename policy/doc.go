// Package policy is dnsvalve's policy engine. It compiles the clients and
// policies sections of the configuration, together with the loaded domain
// lists, into an immutable [Snapshot] that answers, per query:
//
//   - who is asking: [Snapshot.Identify] maps a client address to its
//     group (CIDRs, first match wins), its policy and its workload name;
//   - what to do: [Snapshot.Decide] returns allow, block or alert for a
//     name under a policy (allow beats block beats alert; a policy in
//     allowlist mode blocks everything its allow lists don't cover);
//   - how to say no: [Snapshot.BlockReply] synthesizes the configured block
//     answer (NXDOMAIN, NODATA, REFUSED or sinkhole) with an RFC 8914
//     Extended DNS Error and a SOA so clients cache the denial;
//   - whether the upstream answer is acceptable: [Snapshot.InspectResponse]
//     checks CNAME/DNAME targets (CNAME cloaking) and private addresses for
//     public names (DNS rebinding);
//   - why: [Snapshot.Explain] for `dnsvalve check` and the HTTP API.
//
// A Snapshot is never modified after [Compile] returns, so it is safe for
// concurrent use without locks; [Store] swaps snapshots atomically on
// reload while queries in flight finish on the snapshot they loaded.
package policy
