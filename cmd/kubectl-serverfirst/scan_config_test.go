package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	networkingapi "istio.io/api/networking/v1alpha3"
	securityapi "istio.io/api/security/v1beta1"
	typeapi "istio.io/api/type/v1beta1"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// TestScanConfigDecidedPaths reproduces the cases on the real test
// API server: declared-TCP MariaDB ports whose outcome DestinationRules,
// PeerAuthentications and interception annotations decide, judged by a
// plain `scan --static` as a new user runs it.
func TestScanConfigDecidedPaths(t *testing.T) {
	env := testenv.StartForTest(t, testenv.Options{})
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	for ns, labels := range map[string]map[string]string{"istio-system": nil, "shop": {"istio-injection": "enabled"}, "web": {"istio-injection": "enabled"}} {
		_, err := env.CreateNamespace(ctx, ns, labels)
		must(err)
	}
	ic, err := env.IstioClient()
	must(err)
	meshPod := func(ns, name, app string, annotations map[string]string, ports ...corev1.ContainerPort) {
		_, err := env.Client.CoreV1().Pods(ns).Create(ctx, &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": app, "security.istio.io/tlsMode": "istio"}, Annotations: annotations},
			Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: app, Image: "mariadb:11", Ports: ports},
				{Name: cluster.ProxyContainerName, Image: "istio/proxyv2"},
			}},
		}, metav1.CreateOptions{})
		must(err)
	}
	mysql := corev1.ContainerPort{Name: "mysql", ContainerPort: 3306}
	tcpService := func(name string) {
		_, err := env.Client.CoreV1().Services("shop").Create(ctx, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name},
				Ports: []corev1.ServicePort{{Name: "tcp-mysql", Port: 3306, TargetPort: intstr.FromString("mysql")}}},
		}, metav1.CreateOptions{})
		must(err)
	}
	destinationRule := func(host string, mode networkingapi.ClientTLSSettings_TLSmode) {
		_, err := ic.NetworkingV1().DestinationRules("shop").Create(ctx, &networkingv1.DestinationRule{
			ObjectMeta: metav1.ObjectMeta{Name: host},
			Spec:       networkingapi.DestinationRule{Host: host, TrafficPolicy: &networkingapi.TrafficPolicy{Tls: &networkingapi.ClientTLSSettings{Mode: mode}}},
		}, metav1.CreateOptions{})
		must(err)
	}
	peerAuth := func(app string, mode securityapi.PeerAuthentication_MutualTLS_Mode) {
		_, err := ic.SecurityV1().PeerAuthentications("shop").Create(ctx, &securityv1.PeerAuthentication{
			ObjectMeta: metav1.ObjectMeta{Name: app},
			Spec: securityapi.PeerAuthentication{Selector: &typeapi.WorkloadSelector{MatchLabels: map[string]string{"app": app}},
				Mtls: &securityapi.PeerAuthentication_MutualTLS{Mode: mode}},
		}, metav1.CreateOptions{})
		must(err)
	}
	// A mesh client in another namespace.
	_, err = env.Client.CoreV1().Pods("web").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Labels: map[string]string{"app": "web", "security.istio.io/tlsMode": "istio"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}, {Name: cluster.ProxyContainerName, Image: "istio/proxyv2"}}},
	}, metav1.CreateOptions{})
	must(err)

	// DR DISABLE into PERMISSIVE (the mesh default): Istio's own suite says it hangs.
	meshPod("shop", "plain-0", "plain", nil, mysql)
	tcpService("plain")
	destinationRule("plain", networkingapi.ClientTLSSettings_DISABLE)
	// DR DISABLE into STRICT: rejected.
	meshPod("shop", "strict-0", "strict", nil, mysql)
	tcpService("strict")
	destinationRule("strict", networkingapi.ClientTLSSettings_DISABLE)
	peerAuth("strict", securityapi.PeerAuthentication_MutualTLS_STRICT)
	// DR ISTIO_MUTUAL into PA DISABLE: broken.
	meshPod("shop", "mutual-0", "mutual", nil, mysql)
	tcpService("mutual")
	destinationRule("mutual.shop.svc.cluster.local", networkingapi.ClientTLSSettings_ISTIO_MUTUAL)
	peerAuth("mutual", securityapi.PeerAuthentication_MutualTLS_DISABLE)
	// DR DISABLE + PA DISABLE: the combination that works.
	meshPod("shop", "agree-0", "agree", nil, mysql)
	tcpService("agree")
	destinationRule("agree", networkingapi.ClientTLSSettings_DISABLE)
	peerAuth("agree", securityapi.PeerAuthentication_MutualTLS_DISABLE)
	// The server keeps the port from its sidecar; auto mTLS does not know.
	meshPod("shop", "excluded-0", "excluded", map[string]string{cluster.AnnotationExcludeInboundPorts: "3306"}, mysql)
	tcpService("excluded")
	// A peer port no Service declares (MariaDB's SST).
	meshPod("shop", "galera-0", "galera", nil, mysql, corev1.ContainerPort{Name: "sst", ContainerPort: 4444})
	tcpService("galera")

	out, errOut, err := run(t, "", "scan", "--static", "-A", "--kubeconfig", env.Kubeconfig, "-o", "json")
	if err != nil {
		t.Fatalf("%v\n%s", err, errOut)
	}
	var doc report.Report
	must(json.Unmarshal([]byte(out), &doc))
	find := func(kind, name string, port int32) report.Finding {
		t.Helper()
		for _, f := range doc.Findings {
			if f.Kind == kind && f.Namespace == "shop" && f.Name == name && f.Port == port {
				return f
			}
		}
		t.Fatalf("no finding %s shop/%s:%d in %s", kind, name, port, out)
		return report.Finding{}
	}
	for _, c := range []struct {
		kind, name string
		port       int32
		verdict    report.Verdict
		code       report.Code
		fix        string
	}{
		{target.KindService, "plain", 3306, report.AtRisk, "SF0601", report.FixDestinationRule},
		{target.KindService, "strict", 3306, report.MTLSRejected, "SF0602", report.FixDestinationRule},
		{target.KindService, "mutual", 3306, report.MTLSRejected, "SF0603", report.FixDestinationRule},
		{target.KindService, "agree", 3306, report.OK, "SF0109", ""},
		{target.KindService, "excluded", 3306, report.MTLSRejected, "SF0701", report.FixDestinationRule},
		{target.KindPod, "galera-0", 4444, report.AtRisk, "SF0901", report.FixDeclarePodPort},
	} {
		f := find(c.kind, c.name, c.port)
		if f.Verdict != c.verdict || f.Code != c.code {
			t.Errorf("%s %s:%d = %s %s (%s), want %s %s", c.kind, c.name, c.port, f.Verdict, f.Code, f.Reason, c.verdict, c.code)
		}
		if f.Verdict == report.Deadlock {
			t.Errorf("%s: DEADLOCK from static evidence", c.name)
		}
		if c.fix != "" && !strings.Contains(out, `"type": "`+c.fix+`"`) {
			t.Errorf("no %s fix in the report", c.fix)
		}
		if c.kind == target.KindService && c.verdict != report.OK && !strings.Contains(f.Paths[0].Clients, "web (1 pod)") {
			t.Errorf("%s: paths %+v do not say which clients", c.name, f.Paths)
		}
	}

	// explain CODE works for the new rules.
	for _, code := range []string{"SF0601", "SF0701", "SF0901"} {
		text, errOut, err := run(t, "", "explain", code)
		if err != nil || !strings.Contains(text, code) {
			t.Errorf("explain %s: %v %s\n%s", code, err, errOut, text)
		}
	}
}
