package validate

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kubeDir is deploy/kubernetes, relative to this package.
const kubeDir = ".."

// manifests is one kustomization's output, each object decoded strictly
// into its typed struct.
type manifests struct {
	kinds           map[string]int // "apiVersion/Kind" -> count
	namespaces      []*corev1.Namespace
	serviceAccounts []*corev1.ServiceAccount
	configMaps      []*corev1.ConfigMap
	services        []*corev1.Service
	deployments     []*appsv1.Deployment
	daemonSets      []*appsv1.DaemonSet
	pdbs            []*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	netpols         []*networkingv1.NetworkPolicy
	serviceMonitors []map[string]any
}

// build runs kustomize on deploy/kubernetes/<rel> and decodes every object
// with unknown fields rejected. An object of a kind it has no struct for
// fails the test: nothing goes unchecked.
func build(tb testing.TB, rel string) *manifests {
	tb.Helper()
	dir := filepath.Join(kubeDir, rel)
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		tb.Fatalf("kustomize build %s: %v", dir, err)
	}
	m := &manifests{kinds: map[string]int{}}
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			tb.Fatalf("%s: %s/%s as YAML: %v", rel, r.GetKind(), r.GetName(), err)
		}
		gvk := r.GetApiVersion() + "/" + r.GetKind()
		m.kinds[gvk]++
		where := fmt.Sprintf("%s: %s %s", rel, gvk, r.GetName())
		switch gvk {
		case "v1/Namespace":
			m.namespaces = append(m.namespaces, decode[corev1.Namespace](tb, where, y))
		case "v1/ServiceAccount":
			m.serviceAccounts = append(m.serviceAccounts, decode[corev1.ServiceAccount](tb, where, y))
		case "v1/ConfigMap":
			m.configMaps = append(m.configMaps, decode[corev1.ConfigMap](tb, where, y))
		case "v1/Service":
			m.services = append(m.services, decode[corev1.Service](tb, where, y))
		case "apps/v1/Deployment":
			m.deployments = append(m.deployments, decode[appsv1.Deployment](tb, where, y))
		case "apps/v1/DaemonSet":
			m.daemonSets = append(m.daemonSets, decode[appsv1.DaemonSet](tb, where, y))
		case "policy/v1/PodDisruptionBudget":
			m.pdbs = append(m.pdbs, decode[policyv1.PodDisruptionBudget](tb, where, y))
		case "autoscaling/v2/HorizontalPodAutoscaler":
			m.hpas = append(m.hpas, decode[autoscalingv2.HorizontalPodAutoscaler](tb, where, y))
		case "networking.k8s.io/v1/NetworkPolicy":
			m.netpols = append(m.netpols, decode[networkingv1.NetworkPolicy](tb, where, y))
		case "monitoring.coreos.com/v1/ServiceMonitor":
			var u map[string]any
			if err := yaml.Unmarshal(y, &u); err != nil {
				tb.Fatalf("%s: %v", where, err)
			}
			m.serviceMonitors = append(m.serviceMonitors, u)
		default:
			tb.Fatalf("%s: no typed check for this kind; add one to build()", where)
		}
	}
	return m
}

// decode unmarshals y into a T, rejecting unknown and duplicate fields.
func decode[T any](tb testing.TB, where string, y []byte) *T {
	tb.Helper()
	v := new(T)
	if err := yaml.UnmarshalStrict(y, v); err != nil {
		tb.Fatalf("%s: strict decode: %v\n%s", where, err, y)
	}
	return v
}

// one returns the single element of s, failing unless there is exactly one.
func one[T any](tb testing.TB, what string, s []*T) *T {
	tb.Helper()
	if len(s) != 1 {
		tb.Fatalf("%s: got %d, want exactly 1", what, len(s))
	}
	return s[0]
}

// mustSelect fails unless sel is non-empty and selects podLabels.
func mustSelect(tb testing.TB, what string, sel *metav1.LabelSelector, podLabels map[string]string) {
	tb.Helper()
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		tb.Errorf("%s: empty selector would select every pod", what)
		return
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		tb.Errorf("%s: selector: %v", what, err)
		return
	}
	if !s.Matches(labels.Set(podLabels)) {
		tb.Errorf("%s: selector %s does not match the pod labels %v", what, s, podLabels)
	}
}

// repoRoot is the dnsvalve root module's directory.
func repoRoot(tb testing.TB) string {
	tb.Helper()
	root, err := filepath.Abs(filepath.Join(kubeDir, "..", ".."))
	if err != nil {
		tb.Fatalf("repo root: %v", err)
	}
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		tb.Fatalf("repo root: %v", err)
	}
	if first, _, _ := bytes.Cut(gomod, []byte("\n")); strings.TrimSpace(string(first)) != "module github.com/dnsvalve/dnsvalve" {
		tb.Fatalf("repo root %s: go.mod starts with %q, want the dnsvalve module", root, first)
	}
	return root
}
