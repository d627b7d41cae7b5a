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
