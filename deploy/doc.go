// Package deploy holds deployment artifacts; its tests check them.
//
// The artifacts are the Prometheus rules (prometheus/alerts.yml, unit-tested
// by prometheus/alerts_test.yml with promtool) and the Grafana dashboard
// (grafana/dnsvalve.json). The tests here make sure both only use metrics
// and labels that dnsvalve actually exports: they read every
// prometheus.*Opts declaration in the module's Go sources, so renaming a
// metric without updating the rules and the dashboard fails the build.
package deploy
