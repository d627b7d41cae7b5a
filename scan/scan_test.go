package scan

import (
	"testing"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

func TestSelfInMesh(t *testing.T) {
	inv := &cluster.Inventory{Pods: []cluster.Pod{
		{Namespace: "shop", Name: "scanner", HasSidecar: true},
		{Namespace: "ops", Name: "scanner"},
		{Namespace: "ops", Name: "plain"},
	}}
	yes, no := true, false
	for _, tc := range []struct {
		name string
		cfg  Config
		want bool
	}{
		{"given true", Config{SelfInMesh: &yes}, true},
		{"given false wins over the pod", Config{SelfInMesh: &no, Self: PodRef{Namespace: "shop", Name: "scanner"}}, false},
		{"auto: the pod by namespace and name", Config{Self: PodRef{Namespace: "shop", Name: "scanner"}}, true},
		{"auto: same name, other namespace", Config{Self: PodRef{Namespace: "ops", Name: "scanner"}}, false},
		{"auto: no namespace, first pod by name", Config{Self: PodRef{Name: "scanner"}}, true},
		{"auto: not a pod of the inventory", Config{Self: PodRef{Name: "laptop"}}, false},
	} {
		if got := selfInMesh(tc.cfg, inv); got != tc.want {
			t.Errorf("%s: selfInMesh = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestStatic(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want bool
	}{
		{Config{From: FromNone}, true},
		{Config{From: FromNone, FromPods: []PodRef{{Namespace: "shop", Name: "web-0"}}}, false},
		{Config{From: FromSelf}, false},
		{Config{From: FromPods}, false},
	} {
		if got := tc.cfg.Static(); got != tc.want {
			t.Errorf("%+v.Static() = %v, want %v", tc.cfg, got, tc.want)
		}
	}
}
