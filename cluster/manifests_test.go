package cluster

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func readString(t *testing.T, text string, opts ManifestOptions) *Manifests {
	t.Helper()
	m, err := ReadManifests([]string{"-"}, strings.NewReader(text), opts)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func podByName(inv *Inventory, ns, name string) *Pod {
	for i := range inv.Pods {
		if inv.Pods[i].Namespace == ns && inv.Pods[i].Name == name {
			return &inv.Pods[i]
		}
	}
	return nil
}

func serviceByName(inv *Inventory, ns, name string) *Service {
	for i := range inv.Services {
		if inv.Services[i].Namespace == ns && inv.Services[i].Name == name {
			return &inv.Services[i]
		}
	}
	return nil
}

const workloads = `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio-injection: enabled}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: db}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers:
      - {name: db, image: mariadb:11, ports: [{name: mysql, containerPort: 3306}]}
      - {name: istio-proxy, image: proxyv2}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: mail, namespace: shop}
spec:
  selector: {matchLabels: {app: mail}}
  template:
    metadata: {labels: {app: mail, sidecar.istio.io/inject: "false"}}
    spec: {containers: [{name: smtp, image: postfix, ports: [{containerPort: 25}]}]}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: legacy}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent, sidecar.istio.io/inject: "true"}}
    spec: {containers: [{name: a, image: agent}]}
---
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: rs, namespace: legacy}
spec:
  selector: {matchLabels: {app: rs}}
  template:
    metadata: {labels: {app: rs}, annotations: {sidecar.istio.io/inject: "true"}}
    spec: {containers: [{name: a, image: rs}]}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: report}
spec:
  schedule: "* * * * *"
  jobTemplate:
    spec:
      template:
        metadata: {labels: {job: report}}
        spec: {restartPolicy: Never, hostNetwork: true, containers: [{name: r, image: busybox}]}
---
apiVersion: batch/v1
kind: Job
metadata: {name: migrate}
spec:
  template:
    metadata: {labels: {job: migrate}}
    spec:
      restartPolicy: Never
      initContainers: [{name: native, image: vault, restartPolicy: Always, ports: [{containerPort: 8200}]}]
      containers: [{name: m, image: flyway}]
---
apiVersion: v1
kind: ReplicationController
metadata: {name: old}
spec:
  selector: {app: old}
  template:
    metadata: {labels: {app: old}}
    spec: {containers: [{name: o, image: old}]}
---
apiVersion: v1
kind: Pod
metadata: {name: new-pod}
spec: {containers: [{name: p, image: p}]}
---
apiVersion: v1
kind: Pod
metadata: {name: running, uid: 0b7c, labels: {app: running}}
spec: {containers: [{name: p, image: p}]}
status: {phase: Running, podIP: 10.1.2.3}
`

// TestManifestWorkloads: every workload kind becomes the pod its template
// would create, in its namespace (the default one when it names none),
// with a sidecar exactly when injection is meant, as the injector decides
// it; a Pod read from a cluster keeps the sidecar it has.
func TestManifestWorkloads(t *testing.T) {
	m := readString(t, workloads, ManifestOptions{DefaultNamespace: "shop"})
	if len(m.Warnings()) != 0 {
		t.Fatalf("warnings: %q", m.Warnings())
	}
	inv := m.Inventory(nil)
	cases := []struct {
		ns, name string
		sidecar  bool
		images   string
	}{
		{"shop", "Deployment/db", true, "mariadb:11"},  // the template's own istio-proxy, and the namespace label
		{"shop", "StatefulSet/mail", false, "postfix"}, // the pod label opts out
		{"legacy", "DaemonSet/agent", true, "agent"},   // the pod label opts in
		{"legacy", "ReplicaSet/rs", false, "rs"},       // the annotation alone never reaches the webhook
		{"shop", "CronJob/report", false, "busybox"},   // hostNetwork
		{"shop", "Job/migrate", true, "flyway,vault"},  // native sidecars serve like containers
		{"shop", "ReplicationController/old", true, "old"},
		{"shop", "new-pod", true, "p"},  // a Pod to create is injected
		{"shop", "running", false, "p"}, // a Pod read from a cluster is what it is
	}
	for _, c := range cases {
		p := podByName(inv, c.ns, c.name)
		if p == nil {
			t.Errorf("no pod %s/%s in %d pods", c.ns, c.name, len(inv.Pods))
			continue
		}
		if p.HasSidecar != c.sidecar || strings.Join(p.Images, ",") != c.images {
			t.Errorf("%s/%s: sidecar %v images %v, want %v %s", c.ns, c.name, p.HasSidecar, p.Images, c.sidecar, c.images)
		}
	}
	if p := podByName(inv, "shop", "Deployment/db"); p.ContainerPorts["mysql"] != 3306 || p.PortImages[3306] != "mariadb:11" {
		t.Errorf("Deployment/db ports: %v %v", p.ContainerPorts, p.PortImages)
	}
	if p := podByName(inv, "shop", "running"); len(p.IPs) != 1 || p.Phase != "Running" {
		t.Errorf("the running pod lost its status: %+v", p)
	}
	if m.Objects != 10 || m.Judged != 10 {
		t.Errorf("objects %d judged %d, want 10 and 10", m.Objects, m.Judged)
	}
	if !strings.Contains(strings.Join(inv.Warnings, "\n"), "no mesh config in the files") || inv.Mesh.Found || inv.Mesh.RootNamespace != DefaultIstioNamespace {
		t.Errorf("mesh %+v, warnings %q: want Istio's defaults, said", inv.Mesh, inv.Warnings)
	}
}

const services = `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata: {name: db, namespace: shop}
  spec:
    selector: {app: db}
    ports:
    - {name: web, port: 8080}
    - name: db
      port: 3307
      targetPort: mysql
- apiVersion: v1
  kind: Service
  metadata: {name: sliced, namespace: shop}
  spec:
    ports: [{port: 3306}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: sliced-1, namespace: shop, labels: {kubernetes.io/service-name: sliced}}
addressType: IPv4
endpoints: [{addresses: [10.0.0.1], targetRef: {kind: Pod, name: db-0}}]
---
apiVersion: networking.istio.io/v1alpha3
kind: ServiceEntry
metadata: {name: smtp, namespace: shop}
spec:
  hosts: [smtp.example.com]
  ports:
  - {number: 25, name: mail}
---
apiVersion: networking.istio.io/v1beta1
kind: ServiceEntry
metadata: {name: db, namespace: shop}
spec:
  hosts: [db.example.com]
  ports: [{number: 3306, name: tcp, protocol: TCP}]
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: db, namespace: shop, creationTimestamp: "2026-01-02T03:04:05Z"}
spec:
  selector: {matchLabels: {app: db}}
  mtls: {mode: STRICT}
  portLevelMtls: {3306: {mode: DISABLE}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: istio, namespace: istio-system}
data:
  mesh: |
    protocolDetectionTimeout: 5s
    rootNamespace: mesh-root
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: mysql, ports: [{name: mysql, containerPort: 3306}]}]}
---
apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata: {name: db, namespace: shop}
spec:
  host: db.shop.svc.cluster.local
  trafficPolicy: {tls: {mode: DISABLE}}
---
apiVersion: networking.istio.io/v1beta1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress: [{hosts: ["./*"]}]
`

// TestManifestObjects: Services (in a List), EndpointSlices, every
// ServiceEntry and PeerAuthentication version, DestinationRules, Sidecars
// and the istio ConfigMap are
// converted as Load converts them; a Service's backends come from its
// slices, else from its selector over the pods the workloads create; each
// port knows its line.
func TestManifestObjects(t *testing.T) {
	m := readString(t, services, ManifestOptions{})
	if len(m.Warnings()) != 0 {
		t.Fatalf("warnings: %q", m.Warnings())
	}
	inv := m.Inventory(nil)
	db := serviceByName(inv, "shop", "db")
	if db == nil || len(db.Backends) != 1 || db.Backends[0].Name != "StatefulSet/db" || db.Ports[1].Resolved.Protocol != ProtocolAuto {
		t.Fatalf("Service db: %+v", db)
	}
	if s := serviceByName(inv, "shop", "sliced"); s == nil || len(s.Backends) != 1 || s.Backends[0].Name != "db-0" {
		t.Errorf("Service sliced: backends from its EndpointSlice, got %+v", s)
	}
	if len(inv.ServiceEntries) != 2 || inv.ServiceEntries[1].Name != "smtp" || inv.ServiceEntries[1].Ports[0].Resolved.Protocol != ProtocolAuto || inv.ServiceEntries[0].Ports[0].Resolved.Protocol != ProtocolTCP {
		t.Errorf("ServiceEntries: %+v", inv.ServiceEntries)
	}
	if len(inv.PeerAuthentications) != 1 {
		t.Fatalf("PeerAuthentications: %+v", inv.PeerAuthentications)
	}
	if pa := inv.PeerAuthentications[0]; pa.Mode != MTLSStrict || pa.PortModes[3306] != MTLSDisable || pa.Selector["app"] != "db" || !pa.CreatedAt.Equal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) {
		t.Errorf("PeerAuthentication: %+v", pa)
	}
	if len(inv.DestinationRules) != 1 || inv.DestinationRules[0].Host != "db.shop.svc.cluster.local" || len(inv.Sidecars) != 1 || inv.Sidecars[0].Name != "default" {
		t.Errorf("DestinationRules %+v, Sidecars %+v", inv.DestinationRules, inv.Sidecars)
	}
	if inv.Mesh.ProtocolDetectionTimeout != 5*time.Second || inv.Mesh.RootNamespace != "mesh-root" || inv.Mesh.Source != "istio-system/istio (stdin#6)" {
		t.Errorf("mesh: %+v", inv.Mesh)
	}
	for _, c := range []struct {
		kind, name string
		port       int32
		source     string
		line       int
	}{
		{"Service", "db", 8080, "stdin#1", 10},
		{"Service", "db", 3307, "stdin#1", 11},
		{"Service", "sliced", 3306, "stdin#1", 18}, // in a flow sequence too
		{"ServiceEntry", "smtp", 25, "stdin#3", 32},
		{"ServiceEntry", "db", 3306, "stdin#4", 39},
	} {
		src, line, ok := m.Source(c.kind, "shop", c.name, c.port)
		if !ok || src != c.source || line != c.line {
			t.Errorf("%s %s:%d: source %q line %d, want %s line %d", c.kind, c.name, c.port, src, line, c.source, c.line)
		}
	}
	// A Pod finding of a workload's pod names the workload's document.
	if src, line, ok := m.Source("Pod", "shop", "StatefulSet/db", 3306); !ok || src != "stdin#7" || line != 57 {
		t.Errorf("Pod StatefulSet/db: source %q line %d, want stdin#7 line 57", src, line)
	}
	if _, _, ok := m.Source("Service", "shop", "elsewhere", 1); ok {
		t.Error("a Service not in the files has a source")
	}
}

// TestManifestWarnings: bad input is a warning naming the file and line,
// never a crash; the rest of the file is still read.
func TestManifestWarnings(t *testing.T) {
	svc := "apiVersion: v1\nkind: Service\nmetadata: {name: ok, namespace: x}\nspec: {ports: [{port: 25}]}\n"
	cases := []struct {
		name, doc, want string
		line            int
	}{
		{"unparseable", "apiVersion: v1\nkind: Service\nmetadata: {name: [\n", "document 1 does not parse", 3},
		{"unknown kind", "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n", "unknown kind Widget (example.com/v1): skipped", 1},
		{"unknown CRD version", "# a comment\napiVersion: networking.istio.io/v2\nkind: ServiceEntry\nmetadata: {name: s}\n", "networking.istio.io/v2 ServiceEntry: a version of ServiceEntry this tool does not know (it reads v1, v1beta1, v1alpha3)", 2},
		{"removed built-in version", "apiVersion: extensions/v1beta1\nkind: Deployment\nmetadata: {name: d}\n", "extensions/v1beta1 Deployment: a version of Deployment this tool does not know (it reads apps/v1): skipped", 1},
		{"no kind", "metadata: {name: x}\n", "document 1 has no apiVersion or kind", 1},
		{"not a map", "- a\n- b\n", "document 1 is not a Kubernetes object", 1},
		{"wrong type", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: mysql}]}\n", "Service:", 1},
		{"misspelt field", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {portz: []}\n", `unknown field "spec.portz" (the rest of the object is judged)`, 1},
		{"no name", "apiVersion: v1\nkind: Service\nspec: {ports: [{port: 1}]}\n", "Service without metadata.name: skipped", 1},
		{"bad selector", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec: {selector: {matchExpressions: [{key: a, operator: Sometimes}]}, template: {spec: {containers: [{name: c, image: i}]}}}\n", "Deployment d: spec.selector", 1},
		{"redefined", svc + "---\n" + svc, "Service x/ok is defined again (first in f.yaml#1)", 6},
		{"mesh ConfigMap elsewhere", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio}\ndata: {mesh: 'protocolDetectionTimeout: 1s'}\n", "ConfigMap default/istio holds a mesh config but is not in the Istio namespace istio-system (--istio-namespace): not used", 1},
		{"mesh ConfigMap that fails", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata: {mesh: 'protocolDetectionTimeout: soon'}\n", "ConfigMap istio-system/istio: parsing mesh config", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newManifests(ManifestOptions{DefaultNamespace: "default", IstioNamespace: DefaultIstioNamespace})
			// A good document after the bad one is still read.
			m.AddFile("f.yaml", []byte(c.doc+"---\n"+svc))
			inv := m.Inventory(nil)
			all := strings.Join(inv.Warnings, "\n")
			if !strings.Contains(all, c.want) {
				t.Fatalf("warnings %q, want one containing %q", inv.Warnings, c.want)
			}
			if c.line > 0 && !strings.Contains(all, "f.yaml:"+strconv.Itoa(c.line)+": ") {
				t.Errorf("warnings %q, want f.yaml:%d", inv.Warnings, c.line)
			}
			if serviceByName(inv, "x", "ok") == nil {
				t.Error("the good document after the bad one was not read")
			}
		})
	}
}

// TestManifestOverlay: over a live inventory, the files' objects replace
// their live versions, a workload's new pods replace the live pods its
// selector matches (in the live Services' backends too), and what the
// files do not touch stays as it was.
func TestManifestOverlay(t *testing.T) {
	live := &Inventory{
		IstioInstalled: true,
		Namespaces:     []Namespace{{Name: "shop", Labels: map[string]string{"istio-injection": "enabled"}, InjectionEnabled: true}},
		Pods: []Pod{
			{Namespace: "shop", Name: "db-7d9-abc", Labels: map[string]string{"app": "db"}, HasSidecar: true, InjectionIntended: true, Images: []string{"postgres"}},
			{Namespace: "shop", Name: "web-1", Labels: map[string]string{"app": "web"}, HasSidecar: true, InjectionIntended: true},
		},
		Services: []Service{
			{Namespace: "shop", Name: "db", Selector: map[string]string{"app": "db"}, Ports: []ServicePort{{Name: "db", Port: 5432}}, Backends: []PodRef{{Namespace: "shop", Name: "db-7d9-abc"}}},
			{Namespace: "shop", Name: "web", Selector: map[string]string{"app": "web"}, Ports: []ServicePort{{Name: "http", Port: 80}}, Backends: []PodRef{{Namespace: "shop", Name: "web-1"}}},
		},
		PeerAuthentications: []PeerAuthentication{{Namespace: "shop", Name: "default", Mode: MTLSStrict}},
		Mesh:                MeshConfig{Found: true, Source: "istio-system/istio", RootNamespace: "istio-system", ProtocolDetectionTimeout: time.Second},
		Warnings:            []string{"a live warning"},
	}
	files := `apiVersion: apps/v1
kind: Deployment
metadata: {name: db, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: mariadb, ports: [{containerPort: 3306}]}]}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: shop}
spec: {mtls: {mode: PERMISSIVE}}
`
	m := readString(t, files, ManifestOptions{DefaultNamespace: "shop"})
	inv := m.Inventory(live)
	if podByName(inv, "shop", "db-7d9-abc") != nil {
		t.Error("the Deployment's new pods did not replace its live pod")
	}
	newPod := podByName(inv, "shop", "Deployment/db")
	if newPod == nil || !newPod.HasSidecar {
		t.Fatalf("new pod: %+v (the live namespace label injects it)", newPod)
	}
	if web := podByName(inv, "shop", "web-1"); web == nil || !web.InjectionIntended {
		t.Errorf("untouched live pod: %+v", web)
	}
	if db := serviceByName(inv, "shop", "db"); db == nil || len(db.Backends) != 1 || db.Backends[0].Name != "Deployment/db" {
		t.Errorf("live Service db: backends %+v, want the new pod only", db)
	}
	if web := serviceByName(inv, "shop", "web"); web == nil || len(web.Backends) != 1 || web.Backends[0].Name != "web-1" {
		t.Errorf("live Service web: %+v", web)
	}
	if len(inv.PeerAuthentications) != 1 || inv.PeerAuthentications[0].Mode != MTLSPermissive {
		t.Errorf("PeerAuthentications: %+v", inv.PeerAuthentications)
	}
	if inv.Mesh.Source != "istio-system/istio" || inv.Mesh.ProtocolDetectionTimeout != time.Second {
		t.Errorf("mesh: %+v, want the live one", inv.Mesh)
	}
	all := strings.Join(inv.Warnings, "\n")
	if !strings.Contains(all, "a live warning") || !strings.Contains(all, "after applying 2 object(s) from the files") {
		t.Errorf("warnings: %q", inv.Warnings)
	}
}

// TestManifestInjectedNamespaces: a namespace not in the files has no
// labels unless --injected-namespaces names it; the report says so.
func TestManifestInjectedNamespaces(t *testing.T) {
	doc := "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: team}\nspec: {containers: [{name: c, image: i}]}\n"
	inv := readString(t, doc, ManifestOptions{}).Inventory(nil)
	if podByName(inv, "team", "p").HasSidecar || !strings.Contains(strings.Join(inv.Warnings, "\n"), "namespace(s) team are not in the files") {
		t.Errorf("unknown namespace: sidecar %v, warnings %q", podByName(inv, "team", "p").HasSidecar, inv.Warnings)
	}
	inv = readString(t, doc, ManifestOptions{InjectedNamespaces: []string{"team"}}).Inventory(nil)
	if !podByName(inv, "team", "p").HasSidecar || strings.Contains(strings.Join(inv.Warnings, "\n"), "not in the files") {
		t.Errorf("--injected-namespaces team: sidecar %v, warnings %q", podByName(inv, "team", "p").HasSidecar, inv.Warnings)
	}
}

// TestManifestMeshConfigFlag: --mesh-config wins over an istio ConfigMap
// in the files.
func TestManifestMeshConfigFlag(t *testing.T) {
	doc := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata: {mesh: 'protocolDetectionTimeout: 5s'}\n"
	inv := readString(t, doc, ManifestOptions{MeshConfig: "protocolDetectionTimeout: 2s\n", MeshConfigSource: "--mesh-config m.yaml"}).Inventory(nil)
	if inv.Mesh.ProtocolDetectionTimeout != 2*time.Second || inv.Mesh.Source != "--mesh-config m.yaml" {
		t.Errorf("mesh %+v", inv.Mesh)
	}
	// One that does not parse: the ConfigMap in the files is used, and a
	// warning says why the flag's was not.
	inv = readString(t, doc, ManifestOptions{MeshConfig: "protocolDetectionTimeout: soon\n", MeshConfigSource: "--mesh-config m.yaml"}).Inventory(nil)
	if inv.Mesh.ProtocolDetectionTimeout != 5*time.Second || !strings.Contains(strings.Join(inv.Warnings, "\n"), "--mesh-config m.yaml: parsing mesh config") {
		t.Errorf("mesh %+v, warnings %q", inv.Mesh, inv.Warnings)
	}
	if err := CheckMeshConfig("protocolDetectionTimeout: soon\n", "--mesh-config m.yaml"); err == nil || !strings.HasPrefix(err.Error(), "--mesh-config m.yaml: parsing mesh config") || strings.Contains(err.Error(), "trying the next") {
		t.Errorf("CheckMeshConfig: %v", err)
	}
	if err := CheckMeshConfig("protocolDetectionTimeout: 1s\n", "x"); err != nil {
		t.Errorf("CheckMeshConfig of a good config: %v", err)
	}
}

// TestReadManifestPaths: a directory is read recursively for YAML and
// JSON files only, in lexical order; a missing path is one error line.
func TestReadManifestPaths(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("a/svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nspec: {ports: [{port: 1}]}\n")
	write("b/c/svc.JSON", `{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"}, "spec": {"ports": [{"port": 2}]}}`)
	write("b/svc.yml", "apiVersion: v1\nkind: Service\nmetadata: {name: c}\nspec: {ports: [{port: 3}]}\n")
	write("README.md", "apiVersion: v1\nkind: Service\nmetadata: {name: readme}\n")
	m, err := ReadManifests([]string{dir}, nil, ManifestOptions{})
	if err != nil {
		t.Fatal(err)
	}
	inv := m.Inventory(nil)
	var names []string
	for _, s := range inv.Services {
		names = append(names, s.Name)
	}
	if strings.Join(names, ",") != "a,b,c" {
		t.Errorf("services %v, want a,b,c (README.md is not a manifest)", names)
	}
	if src, _, _ := m.Source("Service", "default", "b", 2); src != filepath.ToSlash(filepath.Join(dir, "b/c/svc.JSON"))+"#1" {
		t.Errorf("JSON source %q", src)
	}
	_, err = ReadManifests([]string{filepath.Join(dir, "nope")}, nil, ManifestOptions{})
	if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "nope: no such file or directory") {
		t.Errorf("missing path: %v", err)
	}
}

// TestManifestHelmSource: helm template's "# Source:" comment names the
// template each object was rendered from.
func TestManifestHelmSource(t *testing.T) {
	doc := "---\n# Source: db/templates/svc.yaml\napiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec: {ports: [{port: 3306}]}\n" +
		"---\napiVersion: v1\nkind: Service\nmetadata: {name: plain}\nspec: {ports: [{port: 25}]}\n# Source: not/a/header.yaml\n"
	m := readString(t, doc, ManifestOptions{})
	if got := m.Template("Service", "default", "db"); got != "db/templates/svc.yaml" {
		t.Errorf("db: template %q", got)
	}
	if got := m.Template("Service", "default", "plain"); got != "" {
		t.Errorf("plain: template %q, want none (a comment after the content is not helm's header)", got)
	}
}

var warningShape = regexp.MustCompile(`^f\.yaml:\d+: \S`)

// FuzzManifests: any bytes as a manifest file give an inventory and
// one-line warnings that name the file and a line, never a panic.
func FuzzManifests(f *testing.F) {
	for _, seed := range []string{workloads, services, "", "---\n---\n", "apiVersion: v1\nkind: List\nitems: [1, {kind: Pod}]\n",
		"apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec: {ports: [{port: 99999999999}]}\n",
		`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"c","ports":[{"containerPort":1}]}]}}`,
		"apiVersion: networking.istio.io/v1alpha3\nkind: ServiceEntry\nmetadata: {name: s}\nspec: {ports: [{number: 1}], resolution: 9}\n",
		"a: &a [*a, *a]\n", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: istio, namespace: istio-system}\ndata: {mesh: '{'}\n"} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m := newManifests(ManifestOptions{DefaultNamespace: "default", IstioNamespace: DefaultIstioNamespace})
		m.AddFile("f.yaml", data)
		inv := m.Inventory(nil)
		for _, w := range m.Warnings() {
			if strings.Contains(w, "\n") || !warningShape.MatchString(w) {
				t.Errorf("warning %q: want one line naming f.yaml:LINE", w)
			}
		}
		for _, s := range inv.Services {
			for _, p := range s.Ports {
				if _, line, ok := m.Source("Service", s.Namespace, s.Name, p.Port); !ok || line < 1 {
					t.Errorf("Service %s/%s:%d has no source line", s.Namespace, s.Name, p.Port)
				}
			}
		}
	})
}
