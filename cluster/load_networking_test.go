package cluster_test

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	networkingapi "istio.io/api/networking/v1alpha3"
	typeapi "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// seedNetworking creates DestinationRules, Sidecars and a pod with
// interception annotations.
func seedNetworking(t *testing.T, env *testenv.Env) {
	t.Helper()
	ctx := testCtx(t)
	for _, ns := range []string{"istio-system", "shop", "web"} {
		_, err := env.CreateNamespace(ctx, ns, nil)
		must(t, err)
	}
	ic, err := env.IstioClient()
	must(t, err)
	for _, d := range []*networkingv1.DestinationRule{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db"}, Spec: networkingapi.DestinationRule{
			Host: "db", ExportTo: []string{"."},
			TrafficPolicy: &networkingapi.TrafficPolicy{
				Tls: &networkingapi.ClientTLSSettings{Mode: networkingapi.ClientTLSSettings_DISABLE},
				PortLevelSettings: []*networkingapi.TrafficPolicy_PortTrafficPolicy{
					{Port: &networkingapi.PortSelector{Number: 3306}, Tls: &networkingapi.ClientTLSSettings{Mode: networkingapi.ClientTLSSettings_ISTIO_MUTUAL}},
					{Port: &networkingapi.PortSelector{Number: 9104}},
				},
			},
			Subsets: []*networkingapi.Subset{{Name: "v2", Labels: map[string]string{"v": "2"}, TrafficPolicy: &networkingapi.TrafficPolicy{Tls: &networkingapi.ClientTLSSettings{Mode: networkingapi.ClientTLSSettings_SIMPLE}}}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "legacy"}, Spec: networkingapi.DestinationRule{
			Host: "db.shop.svc.cluster.local", WorkloadSelector: &typeapi.WorkloadSelector{MatchLabels: map[string]string{"app": "legacy"}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "mesh"}, Spec: networkingapi.DestinationRule{
			Host: "*.local", TrafficPolicy: &networkingapi.TrafficPolicy{Tls: &networkingapi.ClientTLSSettings{Mode: networkingapi.ClientTLSSettings_ISTIO_MUTUAL}},
		}},
	} {
		_, err := ic.NetworkingV1().DestinationRules(d.Namespace).Create(ctx, d, metav1.CreateOptions{})
		must(t, err)
	}
	for _, s := range []*networkingv1.Sidecar{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default"}, Spec: networkingapi.Sidecar{
			Ingress: []*networkingapi.IstioIngressListener{{Port: &networkingapi.SidecarPort{Number: 3306, Protocol: "TCP", Name: "mysql"}, DefaultEndpoint: "127.0.0.1:3306"}},
			Egress:  []*networkingapi.IstioEgressListener{{Hosts: []string{"./*", "istio-system/*"}}},
		}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "legacy"}, Spec: networkingapi.Sidecar{
			WorkloadSelector:      &networkingapi.WorkloadSelector{Labels: map[string]string{"app": "legacy"}},
			OutboundTrafficPolicy: &networkingapi.OutboundTrafficPolicy{Mode: networkingapi.OutboundTrafficPolicy_REGISTRY_ONLY},
			Egress:                []*networkingapi.IstioEgressListener{{Port: &networkingapi.SidecarPort{Number: 3306, Protocol: "TCP", Name: "tcp"}, Hosts: []string{"shop/db.shop.svc.cluster.local"}}},
		}},
	} {
		_, err := ic.NetworkingV1().Sidecars(s.Namespace).Create(ctx, s, metav1.CreateOptions{})
		must(t, err)
	}
	_, err = env.Client.CoreV1().Pods("shop").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db-0", Labels: map[string]string{"app": "db"}, Annotations: map[string]string{
			cluster.AnnotationIncludeInboundPorts:     "3306, 8080",
			cluster.AnnotationExcludeInboundPorts:     "*", // the injector refuses "*" here
			cluster.AnnotationExcludeOutboundPorts:    "3306",
			cluster.AnnotationIncludeOutboundIPRanges: "10.0.0.0/8,fd00::/8",
		}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{
			{Name: "db", Image: "mariadb:11", Ports: []corev1.ContainerPort{{ContainerPort: 3306, Name: "mysql"}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP}}},
			{Name: cluster.ProxyContainerName, Image: "istio/proxyv2"},
		}},
	}, metav1.CreateOptions{})
	must(t, err)
}

func wantNetworking() ([]cluster.DestinationRule, []cluster.SidecarResource) {
	drs := []cluster.DestinationRule{
		{Namespace: "istio-system", Name: "mesh", Host: "*.local", Policy: cluster.TLSPolicy{Present: true, TLS: cluster.TLSIstioMutual}},
		{Namespace: "shop", Name: "db", Host: "db", ExportTo: []string{"."},
			Policy:  cluster.TLSPolicy{Present: true, TLS: cluster.TLSDisable, PortLevel: map[uint32]cluster.ClientTLSMode{3306: cluster.TLSIstioMutual, 9104: cluster.TLSUnset}},
			Subsets: []cluster.DestinationRuleSubset{{Name: "v2", Policy: cluster.TLSPolicy{Present: true, TLS: cluster.TLSSimple}}}},
		{Namespace: "web", Name: "legacy", Host: "db.shop.svc.cluster.local", Selector: map[string]string{"app": "legacy"}},
	}
	tcp := cluster.ServiceEntryPortProtocol("TCP")
	scs := []cluster.SidecarResource{
		{Namespace: "shop", Name: "default",
			Ingress: []cluster.SidecarIngress{{Port: 3306, Name: "mysql", Protocol: "TCP", Resolved: tcp}},
			Egress:  []cluster.SidecarEgress{{Hosts: []string{"./*", "istio-system/*"}}}},
		{Namespace: "web", Name: "legacy", Selector: map[string]string{"app": "legacy"}, OutboundTrafficPolicy: "REGISTRY_ONLY",
			Egress: []cluster.SidecarEgress{{Port: 3306, Name: "tcp", Protocol: "TCP", Resolved: tcp, Hosts: []string{"shop/db.shop.svc.cluster.local"}}}},
	}
	return drs, scs
}

// withoutTimes zeroes what the API server stamps.
func withoutTimes(inv *cluster.Inventory) ([]cluster.DestinationRule, []cluster.SidecarResource) {
	drs := slices.Clone(inv.DestinationRules)
	for i := range drs {
		drs[i].CreatedAt = time.Time{}
	}
	scs := slices.Clone(inv.Sidecars)
	for i := range scs {
		scs[i].CreatedAt = time.Time{}
	}
	return drs, scs
}

func TestLoadDestinationRulesSidecarsAnnotations(t *testing.T) {
	t.Parallel()
	env := testenv.StartForTest(t, testenv.Options{})
	seedNetworking(t, env)
	wantDRs, wantSCs := wantNetworking()

	t.Run("all namespaces", func(t *testing.T) {
		inv, err := cluster.Load(testCtx(t), clientsFor(t, env.Config), cluster.LoadOptions{})
		must(t, err)
		drs, scs := withoutTimes(inv)
		if !reflect.DeepEqual(drs, wantDRs) {
			t.Errorf("DestinationRules =\n%+v\nwant\n%+v", drs, wantDRs)
		}
		if !reflect.DeepEqual(scs, wantSCs) {
			t.Errorf("Sidecars =\n%+v\nwant\n%+v", scs, wantSCs)
		}
		for _, d := range inv.DestinationRules {
			if d.CreatedAt.IsZero() {
				t.Errorf("%s/%s: no creation time (it decides merging)", d.Namespace, d.Name)
			}
		}
		if len(inv.Pods) != 1 {
			t.Fatalf("pods = %+v", inv.Pods)
		}
		p := inv.Pods[0]
		want := cluster.Interception{
			InboundListed: true, InboundPorts: []uint32{3306, 8080},
			OutboundExcludedPorts: []uint32{3306},
			OutboundIPsListed:     true, OutboundIPRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("fd00::/8")},
			Invalid: []string{`traffic.sidecar.istio.io/excludeInboundPorts "*": "*" is not a port`},
		}
		if !reflect.DeepEqual(p.Interception, want) {
			t.Errorf("Interception =\n%+v\nwant\n%+v", p.Interception, want)
		}
		wantPorts := []cluster.ContainerPort{{Name: "mysql", Number: 3306, Protocol: "TCP", Image: "mariadb:11"}, {Number: 53, Protocol: "UDP", Image: "mariadb:11"}}
		if !reflect.DeepEqual(p.Ports, wantPorts) {
			t.Errorf("Ports = %+v, want %+v", p.Ports, wantPorts)
		}
		found := false
		for _, w := range inv.Warnings {
			found = found || strings.Contains(w, "pod shop/db-0: the injector would refuse traffic.sidecar.istio.io/excludeInboundPorts")
		}
		if !found {
			t.Errorf("no warning about the invalid annotation in %q", inv.Warnings)
		}
	})

	t.Run("one namespace reads the root namespace too", func(t *testing.T) {
		inv, err := cluster.Load(testCtx(t), clientsFor(t, env.Config), cluster.LoadOptions{Namespaces: []string{"shop"}})
		must(t, err)
		drs, scs := withoutTimes(inv)
		if want := wantDRs[:2]; !reflect.DeepEqual(drs, want) {
			t.Errorf("DestinationRules = %+v, want %+v", drs, want)
		}
		if want := wantSCs[:1]; !reflect.DeepEqual(scs, want) {
			t.Errorf("Sidecars = %+v, want %+v", scs, want)
		}
	})

	t.Run("forbidden is a warning", func(t *testing.T) {
		ctx := testCtx(t)
		_, err := env.Client.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{
			ObjectMeta: metav1.ObjectMeta{Name: "no-destinationrules"},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"namespaces", "services", "pods", "configmaps"}, Verbs: []string{"get", "list"}},
				{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list"}},
				{APIGroups: []string{"networking.istio.io"}, Resources: []string{"serviceentries", "sidecars"}, Verbs: []string{"list"}},
				{APIGroups: []string{"security.istio.io"}, Resources: []string{"peerauthentications"}, Verbs: []string{"list"}},
			},
		}, metav1.CreateOptions{})
		must(t, err)
		_, err = env.Client.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{
			ObjectMeta: metav1.ObjectMeta{Name: "no-destinationrules"},
			RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "no-destinationrules"},
			Subjects:   []rbacv1.Subject{{Kind: "User", Name: "no-dr", APIGroup: "rbac.authorization.k8s.io"}},
		}, metav1.CreateOptions{})
		must(t, err)
		cfg, err := env.ConfigForUser("no-dr")
		must(t, err)
		inv, err := cluster.Load(ctx, clientsFor(t, cfg), cluster.LoadOptions{})
		must(t, err)
		if len(inv.DestinationRules) != 0 || len(inv.Sidecars) != 2 || !inv.IstioInstalled {
			t.Errorf("DestinationRules %v, Sidecars %d, IstioInstalled %v", inv.DestinationRules, len(inv.Sidecars), inv.IstioInstalled)
		}
		want := "cannot list destinationrules.networking.istio.io in all namespaces (forbidden): client TLS is judged from auto mTLS alone"
		if !slices.ContainsFunc(inv.Warnings, func(w string) bool { return strings.HasPrefix(w, want) }) {
			t.Errorf("warnings %q lack %q", inv.Warnings, want)
		}
	})
}

// TestLoadWithoutNetworkingCRDs: an install with ServiceEntries and
// PeerAuthentications but no DestinationRule or Sidecar CRD is still Istio.
func TestLoadWithoutNetworkingCRDs(t *testing.T) {
	t.Parallel()
	env := testenv.StartForTest(t, testenv.Options{NoIstioCRDs: true})
	all, err := testenv.IstioCRDFile()
	must(t, err)
	text, err := os.ReadFile(all)
	must(t, err)
	var keep []string
	for _, doc := range strings.Split(string(text), "\n---") {
		if strings.Contains(doc, "name: serviceentries.networking.istio.io") || strings.Contains(doc, "name: peerauthentications.security.istio.io") {
			keep = append(keep, doc)
		}
	}
	if len(keep) != 2 {
		t.Fatalf("found %d of the 2 CRDs in %s", len(keep), all)
	}
	file := filepath.Join(t.TempDir(), "crds.yaml")
	must(t, os.WriteFile(file, []byte(strings.Join(keep, "\n---")), 0o600))
	must(t, env.InstallCRDs(testCtx(t), file))
	inv, err := cluster.Load(testCtx(t), clientsFor(t, env.Config), cluster.LoadOptions{})
	must(t, err)
	if !inv.IstioInstalled {
		t.Error("IstioInstalled = false with the ServiceEntry and PeerAuthentication CRDs present")
	}
	for _, crd := range []string{"destinationrules.networking.istio.io", "sidecars.networking.istio.io"} {
		if !slices.ContainsFunc(inv.Warnings, func(w string) bool { return strings.HasPrefix(w, "the "+crd+" CRD is not installed") }) {
			t.Errorf("warnings %q say nothing about %s", inv.Warnings, crd)
		}
	}
}
