package cluster_test

import (
	"slices"
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ServiceVisible against PushContext.initServiceRegistry (the index
// servicesExportedToNamespace reads) and initDefaultExportMaps.
func TestServiceVisible(t *testing.T) {
	cases := []struct {
		name     string
		exportTo []string
		def      cluster.ExportToList
		clientNS string
		want     bool
	}{
		{"nothing set: public", nil, "", "web", true},
		{"*", []string{"*"}, "", "web", true},
		{".: own namespace", []string{"."}, "", "shop", true},
		{".: not elsewhere", []string{"."}, "", "web", false},
		{"own namespace by name is private", []string{"shop"}, "", "web", false},
		{"own namespace by name", []string{"shop"}, "", "shop", true},
		{"named namespace", []string{"web"}, "", "web", true},
		{"named namespace, not the service's own", []string{"web"}, "", "shop", false},
		{"several", []string{".", "web"}, "", "web", true},
		{"~: nobody", []string{"~"}, "", "shop", false},
		{"~ beside a name: nobody (the index drops it)", []string{"~", "web"}, "", "web", false},
		{"* beside ~: public", []string{"~", "*"}, "", "web", true},
		{"mesh default .", nil, ".", "web", false},
		{"mesh default . in its namespace", nil, ".", "shop", true},
		{"mesh default names", nil, "web,other", "web", true},
		{"the object's exportTo wins over the mesh default", []string{"*"}, ".", "web", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := cluster.ServiceVisible(c.exportTo, c.def, "shop", c.clientNS); got != c.want {
				t.Errorf("ServiceVisible(%v, default %q, shop -> %s) = %v, want %v", c.exportTo, c.def, c.clientNS, got, c.want)
			}
		})
	}
}

// ConvertService reads the annotation as pilot's kube ConvertService:
// split on ",", entries trimmed.
func TestConvertServiceExportTo(t *testing.T) {
	for _, c := range []struct {
		value string
		want  []string
	}{
		{"", nil},
		{".", []string{"."}},
		{" web , . ", []string{"web", "."}},
	} {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db"}}
		if c.value != "" {
			svc.Annotations = map[string]string{cluster.AnnotationExportTo: c.value}
		}
		if got := cluster.ConvertService(svc).ExportTo; !slices.Equal(got, c.want) {
			t.Errorf("annotation %q: ExportTo %q, want %q", c.value, got, c.want)
		}
	}
}

// A wildcard listener exists only in the clients that see its object.
func TestWildcardListenerPortsExportTo(t *testing.T) {
	http := cluster.ConvertProtocol(8080, "http", "TCP", nil)
	admin := func(ns string, exportTo ...string) cluster.Service {
		return cluster.Service{Namespace: ns, Name: "admin", Type: "ClusterIP", ExportTo: exportTo,
			Ports: []cluster.ServicePort{{Name: "http", Port: 8080, Protocol: "TCP", Resolved: http}}}
	}
	client := cluster.Pod{Namespace: "web", Name: "c", HasSidecar: true}
	for _, c := range []struct {
		name string
		svc  cluster.Service
		def  cluster.ExportToList
		want bool
	}{
		{"public", admin("ops"), "", true},
		{"private to a namespace without clients", admin("ops", "."), "", false},
		{"private to the clients' namespace", admin("web", "."), "", true},
		{"exported to the clients", admin("ops", "web"), "", true},
		{"hidden", admin("ops", "~"), "", false},
		{"mesh default private", admin("ops"), ".", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			inv := &cluster.Inventory{Services: []cluster.Service{c.svc}, Pods: []cluster.Pod{client}, Mesh: cluster.MeshConfig{DefaultServiceExportTo: c.def}}
			if _, got := cluster.WildcardListenerPorts(inv)[8080]; got != c.want {
				t.Errorf("0.0.0.0:8080 listener %v, want %v", got, c.want)
			}
		})
	}
}
