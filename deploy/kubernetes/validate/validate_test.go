package validate

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

const (
	namespace  = "dnsvalve"
	appName    = "dnsvalve"
	configFile = "/etc/dnsvalve/dnsvalve.yaml"
	stateDir   = "/var/lib/dnsvalve"
)

func TestBuild(t *testing.T) {
	core := map[string]int{
		"v1/Namespace": 1, "v1/ServiceAccount": 1, "v1/ConfigMap": 1, "v1/Service": 1,
		"networking.k8s.io/v1/NetworkPolicy": 1,
	}
	with := func(extra map[string]int) map[string]int {
		m := map[string]int{}
		for k, v := range core {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name  string
		dir   string
		kinds map[string]int
	}{
		{name: "base", dir: "base", kinds: with(map[string]int{
			"apps/v1/Deployment": 1, "policy/v1/PodDisruptionBudget": 1, "autoscaling/v2/HorizontalPodAutoscaler": 1})},
		{name: "prometheus_operator", dir: "overlays/prometheus-operator", kinds: with(map[string]int{
			"apps/v1/Deployment": 1, "policy/v1/PodDisruptionBudget": 1, "autoscaling/v2/HorizontalPodAutoscaler": 1,
			"monitoring.coreos.com/v1/ServiceMonitor": 1})},
		{name: "daemonset", dir: "overlays/daemonset", kinds: with(map[string]int{"apps/v1/DaemonSet": 1})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := build(t, tc.dir)
			if !reflect.DeepEqual(m.kinds, tc.kinds) {
				t.Errorf("objects = %v, want %v", m.kinds, tc.kinds)
			}
			ns := one(t, "Namespace", m.namespaces)
			if ns.Name != namespace {
				t.Errorf("Namespace %q, want %q", ns.Name, namespace)
			}
			if got := ns.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
				t.Errorf("Namespace pod-security enforce = %q, want restricted", got)
			}
			sa := one(t, "ServiceAccount", m.serviceAccounts)
			if sa.AutomountServiceAccountToken == nil || *sa.AutomountServiceAccountToken {
				t.Errorf("ServiceAccount automountServiceAccountToken = %v, want false", sa.AutomountServiceAccountToken)
			}
			// Every namespaced object lands in the dnsvalve namespace with a valid name.
			names := map[string]string{sa.Name: sa.Namespace}
			for _, cm := range m.configMaps {
				names["ConfigMap "+cm.Name] = cm.Namespace
			}
			for _, s := range m.services {
				names["Service "+s.Name] = s.Namespace
			}
			for _, d := range m.deployments {
				names["Deployment "+d.Name] = d.Namespace
			}
			for _, d := range m.daemonSets {
				names["DaemonSet "+d.Name] = d.Namespace
			}
			for _, p := range m.pdbs {
				names["PodDisruptionBudget "+p.Name] = p.Namespace
			}
			for _, h := range m.hpas {
				names["HorizontalPodAutoscaler "+h.Name] = h.Namespace
			}
			for _, np := range m.netpols {
				names["NetworkPolicy "+np.Name] = np.Namespace
			}
			for _, sm := range m.serviceMonitors {
				md, _ := sm["metadata"].(map[string]any)
				n, _ := md["name"].(string)
				nsName, _ := md["namespace"].(string)
				names["ServiceMonitor "+n] = nsName
			}
			for obj, ns := range names {
				if ns != namespace {
					t.Errorf("%s: namespace %q, want %q", obj, ns, namespace)
				}
				name := obj[strings.LastIndex(obj, " ")+1:]
				if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
					t.Errorf("%s: invalid name: %v", obj, errs)
				}
			}
		})
	}
}

// podTemplates returns the pod template of every workload in every build.
func podTemplates(t *testing.T) map[string]*corev1.PodTemplateSpec {
	t.Helper()
	base := one(t, "Deployment in base", build(t, "base").deployments)
	ds := one(t, "DaemonSet in overlays/daemonset", build(t, "overlays/daemonset").daemonSets)
	return map[string]*corev1.PodTemplateSpec{"deployment": &base.Spec.Template, "daemonset": &ds.Spec.Template}
}

func TestPodTemplate(t *testing.T) {
	for name, tmpl := range podTemplates(t) {
		t.Run(name, func(t *testing.T) {
			checkPodTemplate(t, tmpl)
		})
	}
}

func checkPodTemplate(t *testing.T, tmpl *corev1.PodTemplateSpec) {
	t.Helper()
	spec := &tmpl.Spec
	if tmpl.Labels["app.kubernetes.io/name"] != appName {
		t.Errorf("pod labels %v lack app.kubernetes.io/name=%s", tmpl.Labels, appName)
	}
	if spec.ServiceAccountName != appName {
		t.Errorf("serviceAccountName = %q, want %q", spec.ServiceAccountName, appName)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Errorf("pod automountServiceAccountToken = %v, want false", spec.AutomountServiceAccountToken)
	}
	if spec.EnableServiceLinks == nil || *spec.EnableServiceLinks {
		t.Errorf("enableServiceLinks = %v, want false (service env vars share dnsvalve's DNSVALVE_ prefix)", spec.EnableServiceLinks)
	}
	if spec.TerminationGracePeriodSeconds == nil || *spec.TerminationGracePeriodSeconds != 30 {
		t.Errorf("terminationGracePeriodSeconds = %v, want 30", spec.TerminationGracePeriodSeconds)
	}
	psc := spec.SecurityContext
	if psc == nil {
		t.Fatal("pod securityContext missing")
	}
	if psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser != 65532 {
		t.Errorf("pod securityContext runAsNonRoot=%v runAsUser=%v, want true, 65532", psc.RunAsNonRoot, psc.RunAsUser)
	}
	if psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod seccompProfile = %v, want RuntimeDefault", psc.SeccompProfile)
	}
	if len(spec.Containers) != 1 || len(spec.InitContainers) != 0 {
		t.Fatalf("containers = %d, init containers = %d, want 1 and 0", len(spec.Containers), len(spec.InitContainers))
	}
	c := &spec.Containers[0]
	if !strings.HasPrefix(c.Image, "ghcr.io/dnsvalve/dnsvalve:") && !strings.HasPrefix(c.Image, "ghcr.io/dnsvalve/dnsvalve@") {
		t.Errorf("image = %q", c.Image)
	}
	if want := []string{"serve", "--config", configFile}; !slices.Equal(c.Args, want) || len(c.Command) != 0 {
		t.Errorf("command %q args %q, want the image's entrypoint with args %q", c.Command, c.Args, want)
	}

	sc := c.SecurityContext
	if sc == nil {
		t.Fatal("container securityContext missing")
	}
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		t.Error("container runAsNonRoot is not true")
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("container readOnlyRootFilesystem is not true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("container allowPrivilegeEscalation is not false")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("container is privileged")
	}
	if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) ||
		!slices.Equal(sc.Capabilities.Add, []corev1.Capability{"NET_BIND_SERVICE"}) {
		t.Errorf("capabilities = %+v, want drop [ALL] add [NET_BIND_SERVICE]", sc.Capabilities)
	}
	if sc.SeccompProfile != nil && sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("container seccompProfile = %v", sc.SeccompProfile)
	}
	// The only sysctl is the namespaced, "safe" one that lets 65532 bind :53.
	for _, s := range psc.Sysctls {
		if s.Name != "net.ipv4.ip_unprivileged_port_start" || s.Value != "53" {
			t.Errorf("sysctl %s=%s: only net.ipv4.ip_unprivileged_port_start=53 is expected", s.Name, s.Value)
		}
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		t.Error("pod uses host namespaces")
	}

	ports := map[string]corev1.ContainerPort{}
	for _, p := range c.Ports {
		ports[p.Name] = p
	}
	wantPorts := map[string]corev1.ContainerPort{
		"dns":     {Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
		"dns-tcp": {Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
		"metrics": {Name: "metrics", ContainerPort: 9153, Protocol: corev1.ProtocolTCP},
	}
	if !reflect.DeepEqual(ports, wantPorts) {
		t.Errorf("container ports = %v, want %v", ports, wantPorts)
	}

	probes := []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{
		{name: "readiness", probe: c.ReadinessProbe, path: "/readyz"},
		{name: "liveness", probe: c.LivenessProbe, path: "/healthz"},
		{name: "startup", probe: c.StartupProbe, path: "/healthz"},
	}
	for _, p := range probes {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s probe: want httpGet %s", p.name, p.path)
			continue
		}
		g := p.probe.HTTPGet
		if g.Path != p.path {
			t.Errorf("%s probe path = %q, want %q", p.name, g.Path, p.path)
		}
		if g.Port != intstr.FromString("metrics") && g.Port != intstr.FromInt32(9153) {
			t.Errorf("%s probe port = %v, want metrics (9153)", p.name, g.Port.String())
		}
	}
	if p := c.StartupProbe; p != nil && p.PeriodSeconds*p.FailureThreshold < 60 {
		t.Errorf("startup probe allows %ds, want at least a minute for list loading", p.PeriodSeconds*p.FailureThreshold)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil ||
		c.Lifecycle.PreStop.Sleep.Seconds <= 0 || c.Lifecycle.PreStop.Sleep.Seconds >= *spec.TerminationGracePeriodSeconds {
		t.Errorf("preStop = %+v, want a sleep shorter than the grace period (the distroless image has no sleep binary)", c.Lifecycle)
	}

	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[r]
		lim, hasLim := c.Resources.Limits[r]
		if !hasReq || !hasLim || req.IsZero() || req.Cmp(lim) > 0 {
			t.Errorf("resources %s: request %v limit %v, want both set, request <= limit", r, req.String(), lim.String())
		}
	}

	vols := map[string]corev1.Volume{}
	for _, v := range spec.Volumes {
		vols[v.Name] = v
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, vm := range c.VolumeMounts {
		if _, ok := vols[vm.Name]; !ok {
			t.Errorf("volumeMount %q: no such volume", vm.Name)
		}
		mounts[vm.MountPath] = vm
	}
	cfg, ok := mounts[path.Dir(configFile)]
	switch {
	case !ok:
		t.Errorf("no volume mounted at %s", path.Dir(configFile))
	case cfg.SubPath != "" || cfg.SubPathExpr != "":
		t.Errorf("config mounted with subPath %q: ConfigMap updates would never reach the pod", cfg.SubPath)
	case vols[cfg.Name].ConfigMap == nil || vols[cfg.Name].ConfigMap.Name != "dnsvalve-config":
		t.Errorf("volume at %s is %+v, want ConfigMap dnsvalve-config", cfg.MountPath, vols[cfg.Name].VolumeSource)
	case vols[cfg.Name].ConfigMap.Items != nil:
		t.Errorf("config volume selects items %v: list files next to dnsvalve.yaml would be missing", vols[cfg.Name].ConfigMap.Items)
	}
	state, ok := mounts[stateDir]
	if !ok || vols[state.Name].EmptyDir == nil || state.ReadOnly {
		t.Errorf("state dir %s: want a writable emptyDir mount, got %+v", stateDir, state)
	}
}

func TestDeployment(t *testing.T) {
	m := build(t, "base")
	d := one(t, "Deployment", m.deployments)
	if d.Name != appName {
		t.Errorf("Deployment name %q", d.Name)
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas = %v, want 2", d.Spec.Replicas)
	}
	mustSelect(t, "Deployment", d.Spec.Selector, d.Spec.Template.Labels)
	if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rollingUpdate = %+v, want maxUnavailable 0", ru)
	}
	keys := map[string]bool{}
	for _, c := range d.Spec.Template.Spec.TopologySpreadConstraints {
		keys[c.TopologyKey] = true
		mustSelect(t, "topologySpreadConstraint "+c.TopologyKey, c.LabelSelector, d.Spec.Template.Labels)
		if c.MaxSkew != 1 {
			t.Errorf("topologySpreadConstraint %s maxSkew = %d, want 1", c.TopologyKey, c.MaxSkew)
		}
	}
	for _, k := range []string{"topology.kubernetes.io/zone", "kubernetes.io/hostname"} {
		if !keys[k] {
			t.Errorf("no topologySpreadConstraint on %s", k)
		}
	}
	if one(t, "ServiceAccount", m.serviceAccounts).Name != d.Spec.Template.Spec.ServiceAccountName {
		t.Error("the pods' ServiceAccount is not in the build")
	}
}

func TestService(t *testing.T) {
	for _, dir := range []string{"base", "overlays/daemonset"} {
		t.Run(strings.ReplaceAll(dir, "/", "_"), func(t *testing.T) {
			m := build(t, dir)
			svc := one(t, "Service", m.services)
			var tmpl *corev1.PodTemplateSpec
			if dir == "base" {
				tmpl = &one(t, "Deployment", m.deployments).Spec.Template
				if svc.Spec.InternalTrafficPolicy != nil && *svc.Spec.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyCluster {
					t.Errorf("base internalTrafficPolicy = %v, want Cluster", *svc.Spec.InternalTrafficPolicy)
				}
			} else {
				tmpl = &one(t, "DaemonSet", m.daemonSets).Spec.Template
				if svc.Spec.InternalTrafficPolicy == nil || *svc.Spec.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyLocal {
					t.Errorf("daemonset internalTrafficPolicy = %v, want Local (node-local resolver)", svc.Spec.InternalTrafficPolicy)
				}
			}
			if svc.Name != appName {
				t.Errorf("Service name %q, want %q (the Prometheus job name)", svc.Name, appName)
			}
			if svc.Spec.Type != "" && svc.Spec.Type != corev1.ServiceTypeClusterIP {
				t.Errorf("type = %s, want ClusterIP", svc.Spec.Type)
			}
			ip, err := netip.ParseAddr(svc.Spec.ClusterIP)
			if err != nil {
				t.Errorf("clusterIP %q: want a fixed address: %v", svc.Spec.ClusterIP, err)
			} else if ip.IsLoopback() || ip.IsUnspecified() {
				t.Errorf("clusterIP %s is not a service address", ip)
			}
			if svc.Spec.Selector["app.kubernetes.io/name"] != appName || !selects(svc.Spec.Selector, tmpl.Labels) {
				t.Errorf("selector %v does not select the pods %v", svc.Spec.Selector, tmpl.Labels)
			}
			got := map[string]corev1.ServicePort{}
			for _, p := range svc.Spec.Ports {
				got[p.Name] = p
			}
			want := map[string]corev1.ServicePort{
				"dns":     {Name: "dns", Port: 53, TargetPort: intstr.FromString("dns"), Protocol: corev1.ProtocolUDP},
				"dns-tcp": {Name: "dns-tcp", Port: 53, TargetPort: intstr.FromString("dns-tcp"), Protocol: corev1.ProtocolTCP},
				"metrics": {Name: "metrics", Port: 9153, TargetPort: intstr.FromString("metrics"), Protocol: corev1.ProtocolTCP},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ports = %+v, want %+v", got, want)
			}
		})
	}
}

// selects reports whether the map selector sel matches labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestPodDisruptionBudgetAndAutoscaler(t *testing.T) {
	m := build(t, "base")
	d := one(t, "Deployment", m.deployments)
	pdb := one(t, "PodDisruptionBudget", m.pdbs)
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 1 || pdb.Spec.MaxUnavailable != nil {
		t.Errorf("PDB minAvailable = %v maxUnavailable = %v, want 1 and unset", pdb.Spec.MinAvailable, pdb.Spec.MaxUnavailable)
	}
	mustSelect(t, "PodDisruptionBudget", pdb.Spec.Selector, d.Spec.Template.Labels)

	hpa := one(t, "HorizontalPodAutoscaler", m.hpas)
	ref := hpa.Spec.ScaleTargetRef
	if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || ref.Name != d.Name {
		t.Errorf("HPA scaleTargetRef = %+v, want apps/v1 Deployment %s", ref, d.Name)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != 2 || hpa.Spec.MaxReplicas != 10 {
		t.Errorf("HPA replicas %v..%d, want 2..10", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	if hpa.Spec.MinReplicas != nil && pdb.Spec.MinAvailable != nil && int(*hpa.Spec.MinReplicas) <= pdb.Spec.MinAvailable.IntValue() {
		t.Error("HPA minReplicas <= PDB minAvailable: no pod could ever be evicted")
	}
	if len(hpa.Spec.Metrics) != 1 {
		t.Fatalf("HPA metrics = %+v, want one CPU metric", hpa.Spec.Metrics)
	}
	r := hpa.Spec.Metrics[0].Resource
	if r == nil || r.Name != corev1.ResourceCPU || r.Target.AverageUtilization == nil || *r.Target.AverageUtilization != 70 {
		t.Errorf("HPA metric = %+v, want CPU 70%% utilization", hpa.Spec.Metrics[0])
	}
	if _, ok := d.Spec.Template.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]; !ok {
		t.Error("HPA CPU utilization needs a CPU request")
	}
}

// portKey is "port/protocol".
func portKey(p networkingv1.NetworkPolicyPort) string {
	proto := corev1.ProtocolTCP
	if p.Protocol != nil {
		proto = *p.Protocol
	}
	port := "any"
	if p.Port != nil {
		port = p.Port.String()
	}
	if p.EndPort != nil {
		port += fmt.Sprintf("-%d", *p.EndPort)
	}
	return port + "/" + string(proto)
}

func portKeys(ps []networkingv1.NetworkPolicyPort) []string {
	var ks []string
	for _, p := range ps {
		ks = append(ks, portKey(p))
	}
	slices.Sort(ks)
	return ks
}

func TestNetworkPolicy(t *testing.T) {
	m := build(t, "base")
	np := one(t, "NetworkPolicy", m.netpols)
	d := one(t, "Deployment", m.deployments)
	mustSelect(t, "NetworkPolicy", &np.Spec.PodSelector, d.Spec.Template.Labels)
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress}) {
		t.Errorf("policyTypes = %v, want [Ingress Egress]", np.Spec.PolicyTypes)
	}

	// Ingress: DNS from every namespace, metrics from monitoring only.
	ingress := map[string]string{}
	for _, r := range np.Spec.Ingress {
		if len(r.From) != 1 || r.From[0].NamespaceSelector == nil || r.From[0].IPBlock != nil || r.From[0].PodSelector != nil {
			t.Errorf("ingress rule from %+v: want one namespaceSelector", r.From)
			continue
		}
		from := "all-namespaces"
		if sel := r.From[0].NamespaceSelector; len(sel.MatchLabels) > 0 || len(sel.MatchExpressions) > 0 {
			from = sel.MatchLabels["kubernetes.io/metadata.name"]
		}
		ingress[strings.Join(portKeys(r.Ports), ",")] = from
	}
	wantIngress := map[string]string{"53/TCP,53/UDP": "all-namespaces", "9153/TCP": "monitoring"}
	if !reflect.DeepEqual(ingress, wantIngress) {
		t.Errorf("ingress = %v, want %v", ingress, wantIngress)
	}

	// Egress: only the upstream resolvers (53, 853, 443) and Redis (6379),
	// every rule with a destination: an empty "to" would allow anywhere.
	var resolverBlocks []netip.Prefix
	egress := map[string]string{}
	for _, r := range np.Spec.Egress {
		if len(r.To) == 0 || len(r.Ports) == 0 {
			t.Errorf("egress rule %+v: want both destinations and ports", r)
			continue
		}
		ports := strings.Join(portKeys(r.Ports), ",")
		for _, to := range r.To {
			switch {
			case to.IPBlock != nil && to.PodSelector == nil && to.NamespaceSelector == nil:
				p, err := netip.ParsePrefix(to.IPBlock.CIDR)
				if err != nil {
					t.Errorf("egress ipBlock %q: %v", to.IPBlock.CIDR, err)
					continue
				}
				if p.Bits() < 24 {
					t.Errorf("egress ipBlock %s: want the resolvers' addresses, not a network", p)
				}
				resolverBlocks = append(resolverBlocks, p)
				egress["ipBlock "+p.String()] = ports
			case to.PodSelector != nil && to.IPBlock == nil && to.NamespaceSelector == nil:
				egress["pods app="+to.PodSelector.MatchLabels["app"]] = ports
			default:
				t.Errorf("egress destination %+v: want an ipBlock or a podSelector", to)
			}
		}
	}
	if len(resolverBlocks) == 0 {
		t.Error("no egress ipBlock for the upstream resolvers")
	}
	for dst, ports := range egress {
		want := "443/TCP,53/TCP,53/UDP,853/TCP"
		if dst == "pods app=redis" {
			want = "6379/TCP"
		} else if !strings.HasPrefix(dst, "ipBlock ") {
			t.Errorf("egress to %s: only resolvers and Redis are allowed", dst)
		}
		if ports != want {
			t.Errorf("egress to %s on %s, want %s", dst, ports, want)
		}
	}
	if _, ok := egress["pods app=redis"]; !ok {
		t.Errorf("egress = %v: no rule for Redis (app=redis:6379)", egress)
	}

	// Every configured upstream is reachable through the policy.
	cfg := dnsvalveConfig(t, one(t, "ConfigMap", m.configMaps))
	for _, u := range cfg.Upstream.Servers {
		addr := upstreamAddr(t, u)
		ok := false
		for _, p := range resolverBlocks {
			ok = ok || p.Contains(addr.Addr())
		}
		if !ok {
			t.Errorf("upstream %s is outside the egress ipBlocks %v", u, resolverBlocks)
		}
		if p := addr.Port(); p != 53 && p != 853 && p != 443 {
			t.Errorf("upstream %s: port %d is not allowed by the NetworkPolicy", u, p)
		}
	}
}

// upstreamAddr parses an upstream.servers entry that must be an IP literal
// (the pods can't resolve names: their egress is the resolvers only).
func upstreamAddr(tb testing.TB, s string) netip.AddrPort {
	tb.Helper()
	if ip, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(ip, 53)
	}
	u, err := url.Parse(strings.SplitN(s, "#", 2)[0])
	if err != nil {
		tb.Fatalf("upstream %q: %v", s, err)
	}
	def := map[string]string{"udp": "53", "tcp": "53", "tls": "853", "https": "443"}[u.Scheme]
	if def == "" {
		tb.Fatalf("upstream %q: unknown scheme", s)
	}
	hostport := u.Host
	if u.Port() == "" {
		hostport = u.Host + ":" + def
	}
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		tb.Fatalf("upstream %q: not an IP literal (the pods can't resolve names): %v", s, err)
	}
	return ap
}

// dnsvalveConfig is the part of dnsvalve.yaml the manifests depend on.
type dnsvalveConfigFile struct {
	Server struct {
		Listen []string `json:"listen"`
	} `json:"server"`
	HTTP struct {
		Listen string `json:"listen"`
	} `json:"http"`
	Upstream struct {
		Servers []string `json:"servers"`
	} `json:"upstream"`
	StateDir string `json:"state_dir"`
	Lists    []struct {
		Name    string   `json:"name"`
		Sources []string `json:"sources"`
	} `json:"lists"`
	Detect struct {
		NewlySeen struct {
			Store string `json:"store"`
		} `json:"newly_seen"`
	} `json:"detect"`
	Querylog struct {
		Sinks []string `json:"sinks"`
	} `json:"querylog"`
	Log struct {
		Format string `json:"format"`
	} `json:"log"`
}

func dnsvalveConfig(tb testing.TB, cm *corev1.ConfigMap) *dnsvalveConfigFile {
	tb.Helper()
	raw, ok := cm.Data[path.Base(configFile)]
	if !ok {
		tb.Fatalf("ConfigMap %s has no key %s (keys: %v)", cm.Name, path.Base(configFile), mapKeys(cm.Data))
	}
	var c dnsvalveConfigFile
	if err := yaml.Unmarshal([]byte(raw), &c); err != nil {
		tb.Fatalf("ConfigMap %s: dnsvalve.yaml is not valid YAML: %v", cm.Name, err)
	}
	return &c
}

func mapKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestConfigMap(t *testing.T) {
	m := build(t, "base")
	cm := one(t, "ConfigMap", m.configMaps)
	if cm.Name != "dnsvalve-config" {
		t.Errorf("ConfigMap name %q, want dnsvalve-config (no hash suffix: updates reload in place)", cm.Name)
	}
	c := dnsvalveConfig(t, cm)
	if !slices.Contains(c.Server.Listen, ":53") {
		t.Errorf("server.listen = %v, want :53 (the Service's targetPort)", c.Server.Listen)
	}
	if c.HTTP.Listen != ":9153" {
		t.Errorf("http.listen = %q, want :9153 (probes and metrics)", c.HTTP.Listen)
	}
	if c.StateDir != stateDir {
		t.Errorf("state_dir = %q, want the emptyDir %s", c.StateDir, stateDir)
	}
	if want := "file:" + stateDir + "/seen.db"; c.Detect.NewlySeen.Store != want {
		t.Errorf("detect.newly_seen.store = %q, want %q", c.Detect.NewlySeen.Store, want)
	}
	if !strings.Contains(cm.Data["dnsvalve.yaml"], `#   store: "redis://redis:6379/0"`) {
		t.Error("dnsvalve.yaml lacks the commented Redis store example")
	}
	if !slices.Equal(c.Querylog.Sinks, []string{"stdout"}) || c.Log.Format != "json" {
		t.Errorf("querylog.sinks = %v, log.format = %q, want [stdout] and json", c.Querylog.Sinks, c.Log.Format)
	}
	// List files named relative to the config live in the same ConfigMap.
	for _, l := range c.Lists {
		for _, src := range l.Sources {
			if strings.Contains(src, "://") || filepath.IsAbs(src) {
				continue
			}
			if _, ok := cm.Data[src]; !ok {
				t.Errorf("list %s: source %s is not a key of the ConfigMap %v", l.Name, src, mapKeys(cm.Data))
			}
		}
	}
	for k := range cm.Data {
		if errs := validation.IsConfigMapKey(k); len(errs) > 0 {
			t.Errorf("ConfigMap key %q: %v", k, errs)
		}
	}
}

// TestConfigMapPassesDnsvalveCheck builds dnsvalve from this repository and
// runs "dnsvalve check" on the ConfigMap's files, laid out as the pod sees
// them, so the shipped config is one dnsvalve itself accepts.
func TestConfigMapPassesDnsvalveCheck(t *testing.T) {
	root := repoRoot(t)
	bin := filepath.Join(t.TempDir(), "dnsvalve")
	buildCmd := exec.Command("go", "build", "-o", bin, "./cmd/dnsvalve")
	buildCmd.Dir = root
	buildCmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := buildCmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/dnsvalve in %s: %v\n%s", root, err, out)
	}
	cm := one(t, "ConfigMap", build(t, "base").configMaps)
	if len(cm.BinaryData) != 0 {
		t.Fatalf("ConfigMap has binaryData %v", cm.BinaryData)
	}

	// layout writes the ConfigMap's files, with edits applied, into a fresh
	// directory and returns the config file's path there.
	layout := func(t *testing.T, edit map[string]string) string {
		t.Helper()
		dir := t.TempDir()
		for k, v := range cm.Data {
			if e, ok := edit[k]; ok {
				v = e
			}
			if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return filepath.Join(dir, path.Base(configFile))
	}
	cfg := cm.Data[path.Base(configFile)]
	tests := []struct {
		name     string
		edit     map[string]string
		names    []string
		wantExit int
		wantOut  string
	}{
		{name: "shipped_config_allows", names: []string{"example.com", "s3.amazonaws.com"}, wantExit: 0, wantOut: "default  open  none"},
		// Controls: the same files prove that check reads this config and
		// its list, so exit status 0 above means something.
		{name: "list_from_configmap_blocks", edit: map[string]string{"local-block.txt": cm.Data["local-block.txt"] + "blocked.example\n"},
			names: []string{"www.blocked.example"}, wantExit: 1, wantOut: "local-block"},
		{name: "unknown_key_rejected", edit: map[string]string{"dnsvalve.yaml": cfg + "not_a_key: 1\n"},
			names: []string{"example.com"}, wantExit: 2, wantOut: "not_a_key"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := layout(t, tc.edit)
			cmd := exec.Command(bin, append([]string{"check", "--config", file}, tc.names...)...)
			// Outside a pod /var/lib/dnsvalve does not exist: point state_dir
			// at a temp dir through dnsvalve's documented env override.
			cmd.Env = []string{"DNSVALVE_STATE_DIR=" + t.TempDir(), "HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
			out, err := cmd.CombinedOutput()
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatalf("run %s: %v", bin, err)
			}
			if code != tc.wantExit {
				t.Errorf("dnsvalve check %v: exit %d, want %d\n%s", tc.names, code, tc.wantExit, out)
			}
			if !strings.Contains(string(out), tc.wantOut) {
				t.Errorf("dnsvalve check output lacks %q:\n%s", tc.wantOut, out)
			}
		})
	}
}

func TestServiceMonitor(t *testing.T) {
	m := build(t, "overlays/prometheus-operator")
	sm := m.serviceMonitors[0]
	svc := one(t, "Service", m.services)
	if sm["apiVersion"] != "monitoring.coreos.com/v1" || sm["kind"] != "ServiceMonitor" {
		t.Errorf("apiVersion/kind = %v/%v", sm["apiVersion"], sm["kind"])
	}
	spec, _ := sm["spec"].(map[string]any)
	eps, _ := spec["endpoints"].([]any)
	if len(eps) != 1 {
		t.Fatalf("spec.endpoints = %v, want one", spec["endpoints"])
	}
	ep, _ := eps[0].(map[string]any)
	if ep["port"] != "metrics" || ep["path"] != "/metrics" {
		t.Errorf("endpoint = %v, want port metrics path /metrics", ep)
	}
	hasPort := false
	for _, p := range svc.Spec.Ports {
		hasPort = hasPort || p.Name == ep["port"]
	}
	if !hasPort {
		t.Errorf("Service has no port named %v", ep["port"])
	}
	sel, _ := spec["selector"].(map[string]any)
	ml, _ := sel["matchLabels"].(map[string]any)
	want := map[string]string{}
	for k, v := range ml {
		s, _ := v.(string)
		want[k] = s
	}
	if !selects(want, svc.Labels) {
		t.Errorf("selector %v does not select the Service (labels %v)", ml, svc.Labels)
	}
	// The rest of the build is the base, unchanged.
	base := build(t, "base")
	if !reflect.DeepEqual(base.deployments, m.deployments) || !reflect.DeepEqual(base.services, m.services) {
		t.Error("the prometheus-operator overlay changes more than adding the ServiceMonitor")
	}
}

func TestDaemonSetOverlay(t *testing.T) {
	base := one(t, "Deployment in base", build(t, "base").deployments)
	m := build(t, "overlays/daemonset")
	ds := one(t, "DaemonSet", m.daemonSets)
	if ds.Name != appName {
		t.Errorf("DaemonSet name %q", ds.Name)
	}
	mustSelect(t, "DaemonSet", ds.Spec.Selector, ds.Spec.Template.Labels)
	u := ds.Spec.UpdateStrategy
	if u.Type != appsv1.RollingUpdateDaemonSetStrategyType || u.RollingUpdate == nil ||
		u.RollingUpdate.MaxSurge == nil || u.RollingUpdate.MaxSurge.IntValue() != 1 ||
		u.RollingUpdate.MaxUnavailable == nil || u.RollingUpdate.MaxUnavailable.IntValue() != 0 {
		t.Errorf("updateStrategy = %+v, want RollingUpdate maxSurge 1 maxUnavailable 0 (a node is never without its resolver)", u)
	}
	if len(ds.Spec.Template.Spec.TopologySpreadConstraints) != 0 {
		t.Error("DaemonSet keeps topologySpreadConstraints")
	}
	// Same pod as the Deployment's, apart from scheduling.
	want := base.Spec.Template.DeepCopy()
	want.Spec.TopologySpreadConstraints = nil
	got := ds.Spec.Template.DeepCopy()
	got.Spec.Tolerations = nil
	if !reflect.DeepEqual(got, want) {
		t.Errorf("DaemonSet pod template differs from the Deployment's:\n got %+v\nwant %+v", got.Spec, want.Spec)
	}
}
