package cluster

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	istioscheme "istio.io/client-go/pkg/clientset/versioned/scheme"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	kubescheme "k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"
)

// ManifestOrigin says where an object of a manifest came from.
type ManifestOrigin struct {
	// File is the path as given (or found under a given directory), with
	// forward slashes; "stdin" for -f -.
	File string
	// Document is the object's YAML document in the file, counting from 1
	// and only documents that hold something (helm template output starts
	// with an empty one).
	Document int
	// Line is the file line the object starts on (1-based).
	Line int
	// Template is the chart template a `helm template` document was
	// rendered from (its "# Source: CHART/templates/FILE" comment), or "".
	Template string
}

// String is the report's "source": FILE#DOCUMENT.
func (o ManifestOrigin) String() string { return o.File + "#" + strconv.Itoa(o.Document) }

// ManifestOptions say how to read objects that are not yet in a cluster.
type ManifestOptions struct {
	// DefaultNamespace is the namespace of namespaced objects that name
	// none, as kubectl apply would use it; "default" when empty.
	DefaultNamespace string
	// IstioNamespace holds the mesh config ConfigMap (DefaultIstioNamespace
	// when empty).
	IstioNamespace string
	// InjectedNamespaces are namespaces not in the files that have sidecar
	// injection enabled (istio-injection=enabled).
	InjectedNamespaces []string
	// MeshConfig is mesh config YAML given by the user (--mesh-config);
	// it wins over an istio ConfigMap among the files. MeshConfigSource
	// names it in the report.
	MeshConfig       string
	MeshConfigSource string
}

// Manifests are the objects read from files, converted the way Load
// converts what it lists, plus where each came from.
type Manifests struct {
	opts       ManifestOptions
	namespaces []corev1.Namespace
	services   []Service
	slices     []sliceBackends
	pods       []manifestPod
	entries    []ServiceEntry
	peerAuths  []PeerAuthentication
	// destinationRules and sidecars are the client-side config (TLS
	// origination, listener scope, declared protocols).
	destinationRules []DestinationRule
	sidecars         []SidecarResource
	meshMaps         []corev1.ConfigMap
	// replaces are the workloads' pod selectors: on a live cluster their
	// current pods are the old version of what the files create.
	replaces []workloadPods
	origins  map[string]ManifestOrigin
	// portLines maps "Kind/ns/name/port" to the line of that port's entry.
	portLines map[string]int
	// seen maps "Kind/ns/name" to where it was first defined, to warn when
	// a later document redefines it.
	seen     map[string]ManifestOrigin
	warnings []string
	// Objects counts the objects read (List items one by one); Judged
	// those that took part in the inventory.
	Objects, Judged int
}

// manifestPod is a pod read from a file: Created is true for pod
// templates and for Pod manifests that never were in a cluster (no uid,
// no status), which get a sidecar exactly when injection is intended.
type manifestPod struct {
	loadedPod
	created bool
}

type workloadPods struct {
	namespace string
	selector  labels.Selector
}

// ReadManifests reads every object in paths: files, directories (every
// *.yaml, *.yml and *.json below them, in lexical order) or "-" for stdin.
// Anything that is not a judgeable object becomes a warning naming the
// file and line; only a path that cannot be read at all is an error.
func ReadManifests(paths []string, stdin io.Reader, opts ManifestOptions) (*Manifests, error) {
	opts.DefaultNamespace = cmp.Or(opts.DefaultNamespace, metav1.NamespaceDefault)
	opts.IstioNamespace = cmp.Or(opts.IstioNamespace, DefaultIstioNamespace)
	m := newManifests(opts)
	for _, p := range paths {
		if p == "-" {
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("-f -: reading stdin: %w", err)
			}
			m.AddFile("stdin", data)
			continue
		}
		files, err := manifestFiles(p)
		if err != nil {
			return nil, err
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("-f %s: %w", p, unwrapPathError(err))
			}
			m.AddFile(filepath.ToSlash(f), data)
		}
	}
	return m, nil
}

func newManifests(opts ManifestOptions) *Manifests {
	return &Manifests{opts: opts, origins: map[string]ManifestOrigin{}, portLines: map[string]int{}, seen: map[string]ManifestOrigin{}}
}

// manifestFiles lists the files a -f PATH stands for.
func manifestFiles(p string) ([]string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("-f %s: %w", p, unwrapPathError(err))
	}
	if !st.IsDir() {
		return []string{p}, nil
	}
	var out []string
	err = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		switch strings.ToLower(filepath.Ext(path)) {
		case ".yaml", ".yml", ".json":
			out = append(out, path)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("-f %s: %w", p, unwrapPathError(err))
	}
	return out, nil
}

// unwrapPathError drops the *fs.PathError's repetition of the path.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Warnings are the problems met while reading, each naming file and line.
func (m *Manifests) Warnings() []string { return m.warnings }

func (m *Manifests) warn(file string, line int, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	// One line per warning, whatever a parser's message held.
	msg = strings.Join(strings.Fields(msg), " ")
	m.warnings = append(m.warnings, fmt.Sprintf("%s:%d: %s", file, line, msg))
}

// document is one YAML document of a file.
type document struct {
	index int // 1-based among non-empty documents
	line  int // first line of the document's text
	text  []byte
}

// splitDocuments splits a YAML stream where kubectl does: at lines that
// are "---" and nothing else but trailing space. Documents holding only
// comments and blank lines are dropped.
func splitDocuments(data []byte) []document {
	var out []document
	var cur bytes.Buffer
	start, lineNo := 1, 0
	flush := func() {
		if hasContent(cur.Bytes()) {
			out = append(out, document{index: len(out) + 1, line: start, text: bytes.Clone(cur.Bytes())})
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), len(data)+1)
	for sc.Scan() {
		lineNo++
		line := sc.Bytes()
		if bytes.HasPrefix(line, []byte("---")) && len(bytes.TrimRight(line[3:], " \t\r")) == 0 {
			flush()
			start = lineNo + 1
			continue
		}
		cur.Write(line)
		cur.WriteByte('\n')
	}
	flush()
	return out
}

// hasContent: anything but blank lines and comments.
func hasContent(text []byte) bool {
	for _, line := range bytes.Split(text, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			return true
		}
	}
	return false
}

var yamlErrorLine = regexp.MustCompile(`line (\d+):`)

// AddFile reads every object in one file's contents.
func (m *Manifests) AddFile(name string, data []byte) {
	for _, doc := range splitDocuments(data) {
		origin := ManifestOrigin{File: name, Document: doc.index, Line: firstContentLine(doc), Template: helmSource(doc)}
		js, err := documentJSON(doc.text)
		if err != nil {
			line := doc.line
			if sub := yamlErrorLine.FindStringSubmatch(err.Error()); sub != nil {
				n, _ := strconv.Atoi(sub[1])
				line = doc.line + n - 1
			}
			m.warn(name, line, "document %d does not parse: %v", doc.index, err)
			continue
		}
		if string(js) == "null" {
			continue
		}
		lines := newLineIndex(doc.text, doc.line)
		m.addObject(js, origin, lines)
	}
}

// firstContentLine is the line of the document's first non-blank,
// non-comment line: where the object starts for an editor.
func firstContentLine(doc document) int {
	for i, line := range bytes.Split(doc.text, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			return doc.line + i
		}
	}
	return doc.line
}

// helmSource is the template named by the "# Source: PATH" comment that
// helm template writes before each document's content.
func helmSource(doc document) string {
	for _, line := range bytes.Split(doc.text, []byte("\n")) {
		t := bytes.TrimSpace(line)
		if len(t) > 0 && t[0] != '#' {
			break
		}
		if src, ok := bytes.CutPrefix(t, []byte("# Source: ")); ok {
			return string(bytes.TrimSpace(src))
		}
	}
	return ""
}

// documentJSON converts one document as kubectl does: JSON as it is, YAML
// through sigs.k8s.io/yaml (YAML 1.1 scalars, as kubectl reads them).
func documentJSON(text []byte) ([]byte, error) {
	if t := bytes.TrimSpace(text); len(t) > 0 && t[0] == '{' && json.Valid(t) {
		return t, nil
	}
	return sigsyaml.YAMLToJSON(text)
}

// The decoders of the typed clients, strict so that a misspelt field is
// reported (the object is still decoded, as the API server would with
// field validation at Warn).
var (
	kubeStrict  = serializer.NewCodecFactory(kubescheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	istioStrict = serializer.NewCodecFactory(istioscheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
)

// judgedVersions are the versions of each kind that take part in the
// verdicts; another version of one of these kinds is a warning, never a
// guess.
var judgedVersions = map[schema.GroupKind][]string{
	{Group: "", Kind: "Namespace"}:                                    {"v1"},
	{Group: "", Kind: "Service"}:                                      {"v1"},
	{Group: "", Kind: "Pod"}:                                          {"v1"},
	{Group: "", Kind: "ConfigMap"}:                                    {"v1"},
	{Group: "", Kind: "ReplicationController"}:                        {"v1"},
	{Group: "discovery.k8s.io", Kind: "EndpointSlice"}:                {"v1"},
	{Group: "apps", Kind: "Deployment"}:                               {"v1"},
	{Group: "apps", Kind: "StatefulSet"}:                              {"v1"},
	{Group: "apps", Kind: "DaemonSet"}:                                {"v1"},
	{Group: "apps", Kind: "ReplicaSet"}:                               {"v1"},
	{Group: "batch", Kind: "Job"}:                                     {"v1"},
	{Group: "batch", Kind: "CronJob"}:                                 {"v1"},
	{Group: "networking.istio.io", Kind: "ServiceEntry"}:              {"v1", "v1beta1", "v1alpha3"},
	{Group: "networking.istio.io", Kind: "DestinationRule"}:           {"v1", "v1beta1", "v1alpha3"},
	{Group: "networking.istio.io", Kind: "Sidecar"}:                   {"v1", "v1beta1", "v1alpha3"},
	{Group: "security.istio.io", Kind: "PeerAuthentication"}:          {"v1", "v1beta1"},
	{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}: {"v1"},
}

// judgedKinds maps a judged kind's name to the group/versions read.
var judgedKinds = func() map[string]string {
	out := map[string]string{}
	for gk, versions := range judgedVersions {
		var gvs []string
		for _, v := range versions {
			gvs = append(gvs, schema.GroupVersion{Group: gk.Group, Version: v}.String())
		}
		out[gk.Kind] = strings.Join(gvs, ", ")
	}
	return out
}()

// typeMeta is what every object starts with.
type typeMeta struct {
	APIVersion string          `json:"apiVersion"`
	Kind       string          `json:"kind"`
	Items      json.RawMessage `json:"items"`
}

func (m *Manifests) addObject(js []byte, origin ManifestOrigin, lines lineIndex) {
	var tm typeMeta
	if err := json.Unmarshal(js, &tm); err != nil {
		m.warn(origin.File, origin.Line, "document %d is not a Kubernetes object (a YAML map with apiVersion and kind)", origin.Document)
		return
	}
	if tm.Kind == "" || tm.APIVersion == "" {
		m.warn(origin.File, origin.Line, "document %d has no apiVersion or kind: not a Kubernetes object, skipped", origin.Document)
		return
	}
	gv, err := schema.ParseGroupVersion(tm.APIVersion)
	if err != nil {
		m.warn(origin.File, origin.Line, "apiVersion %q: %v", tm.APIVersion, err)
		return
	}
	gvk := gv.WithKind(tm.Kind)
	if gvk.Group == "" && gvk.Version == "v1" && strings.HasSuffix(tm.Kind, "List") && tm.Items != nil {
		m.addList(tm, origin, lines)
		return
	}
	m.Objects++
	versions, judged := judgedVersions[gvk.GroupKind()]
	switch {
	case judged && !slices.Contains(versions, gvk.Version):
		m.warn(origin.File, origin.Line, "%s %s: a version of %s this tool does not know (it reads %s): skipped", tm.APIVersion, tm.Kind, tm.Kind, strings.Join(versions, ", "))
		return
	case !judged && judgedKinds[tm.Kind] != "" && (kubescheme.Scheme.Recognizes(gvk) || istioscheme.Scheme.Recognizes(gvk)):
		// An old group of a kind we judge (extensions/v1beta1 Deployment):
		// the cluster would refuse it, and its fields may differ.
		m.warn(origin.File, origin.Line, "%s %s: a version of %s this tool does not know (it reads %s): skipped", tm.APIVersion, tm.Kind, tm.Kind, judgedKinds[tm.Kind])
		return
	case !judged && (kubescheme.Scheme.Recognizes(gvk) || istioscheme.Scheme.Recognizes(gvk)):
		// A kind that has no say in sniffing (a Secret, a VirtualService).
		return
	case !judged:
		m.warn(origin.File, origin.Line, "unknown kind %s (%s): skipped", tm.Kind, tm.APIVersion)
		return
	}
	decoder := kubeStrict
	if strings.HasSuffix(gvk.Group, ".istio.io") {
		decoder = istioStrict
	}
	if gvk.Group == "apiextensions.k8s.io" {
		return // a CRD definition: nothing to judge
	}
	obj, _, err := decoder.Decode(js, &gvk, nil)
	if err != nil && !runtime.IsStrictDecodingError(err) {
		m.warn(origin.File, origin.Line, "%s: %v", tm.Kind, err)
		return
	}
	if err != nil {
		m.warn(origin.File, origin.Line, "%s: %v (the rest of the object is judged)", tm.Kind, err)
	}
	m.add(obj, origin, lines)
}

// addList reads the items of a List (kubectl get -o yaml), each with the
// List's document and its own line.
func (m *Manifests) addList(tm typeMeta, origin ManifestOrigin, lines lineIndex) {
	var items []json.RawMessage
	if err := json.Unmarshal(tm.Items, &items); err != nil {
		m.warn(origin.File, origin.Line, "%s: items is not a list", tm.Kind)
		return
	}
	for i, item := range items {
		o := origin
		sub := lines.sub("items", i)
		if l := sub.line(); l > 0 {
			o.Line = l
		}
		m.addObject(item, o, sub)
	}
}

// namespaced defaults an object's namespace as kubectl apply does.
func (m *Manifests) namespaced(meta *metav1.ObjectMeta) {
	meta.Namespace = cmp.Or(meta.Namespace, m.opts.DefaultNamespace)
}

// record defaults a namespaced object's namespace, notes where the object
// came from and warns when a later document defines it again (the later
// one wins, as a second apply would).
func (m *Manifests) record(kind string, meta *metav1.ObjectMeta, origin ManifestOrigin) bool {
	ns, name := "", meta.Name
	if kind != "Namespace" {
		m.namespaced(meta)
		ns = meta.Namespace
	}
	key := kind + "/" + ns + "/" + name
	if name == "" {
		m.warn(origin.File, origin.Line, "%s without metadata.name: skipped", kind)
		return false
	}
	if first, ok := m.seen[key]; ok {
		m.warn(origin.File, origin.Line, "%s %s/%s is defined again (first in %s): the later one is judged", kind, ns, name, first)
	}
	m.seen[key] = origin
	m.origins[key] = origin
	m.Judged++
	return true
}

func (m *Manifests) add(obj runtime.Object, origin ManifestOrigin, lines lineIndex) {
	switch o := obj.(type) {
	case *corev1.Namespace:
		if m.record("Namespace", &o.ObjectMeta, origin) {
			m.namespaces = replaceBy(m.namespaces, *o, func(n corev1.Namespace) string { return n.Name })
		}
	case *corev1.Service:
		if !m.record("Service", &o.ObjectMeta, origin) {
			return
		}
		svc := ConvertService(o)
		for i, p := range svc.Ports {
			m.portLine("Service", o.Namespace, o.Name, p.Port, lines.sub("spec", "ports", i))
		}
		m.services = replaceBy(m.services, svc, func(s Service) string { return s.Namespace + "/" + s.Name })
	case *discoveryv1.EndpointSlice:
		if !m.record("EndpointSlice", &o.ObjectMeta, origin) {
			return
		}
		if b, ok := newSliceBackends(o); ok {
			m.slices = append(m.slices, b)
		} else {
			m.warn(origin.File, origin.Line, "EndpointSlice %s/%s has no %s label: it backs no Service", o.Namespace, o.Name, discoveryv1.LabelServiceName)
		}
	case *corev1.Pod:
		if !m.record("Pod", &o.ObjectMeta, origin) {
			return
		}
		// A Pod with a uid or a status was read from a cluster: its
		// containers are what runs. Any other is a pod to create, which
		// the injector will give a sidecar if it is meant to have one.
		created := o.UID == "" && o.Status.Phase == "" && o.CreationTimestamp.IsZero()
		m.addPod(*o, created, nil)
	case *corev1.ConfigMap:
		m.namespaced(&o.ObjectMeta)
		_, hasMesh := o.Data["mesh"]
		meshName := o.Name == "istio" || strings.HasPrefix(o.Name, "istio-")
		if hasMesh && meshName && o.Namespace != m.opts.IstioNamespace {
			m.warn(origin.File, origin.Line, "ConfigMap %s/%s holds a mesh config but is not in the Istio namespace %s (--istio-namespace): not used", o.Namespace, o.Name, m.opts.IstioNamespace)
		}
		if hasMesh && meshName && o.Namespace == m.opts.IstioNamespace {
			if m.record("ConfigMap", &o.ObjectMeta, origin) {
				cm := corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace}, Data: map[string]string{"mesh": o.Data["mesh"]}}
				// Name it with its origin: that is what the report's mesh source shows.
				cm.Annotations = map[string]string{"origin": origin.String()}
				m.meshMaps = replaceBy(m.meshMaps, cm, func(c corev1.ConfigMap) string { return c.Name })
			}
		}
	case *appsv1.Deployment:
		m.addWorkload("Deployment", &o.ObjectMeta, o.Spec.Selector, &o.Spec.Template, origin)
	case *appsv1.StatefulSet:
		m.addWorkload("StatefulSet", &o.ObjectMeta, o.Spec.Selector, &o.Spec.Template, origin)
	case *appsv1.DaemonSet:
		m.addWorkload("DaemonSet", &o.ObjectMeta, o.Spec.Selector, &o.Spec.Template, origin)
	case *appsv1.ReplicaSet:
		m.addWorkload("ReplicaSet", &o.ObjectMeta, o.Spec.Selector, &o.Spec.Template, origin)
	case *corev1.ReplicationController:
		var sel *metav1.LabelSelector
		if len(o.Spec.Selector) > 0 {
			sel = &metav1.LabelSelector{MatchLabels: o.Spec.Selector}
		}
		if o.Spec.Template == nil {
			m.warn(origin.File, origin.Line, "ReplicationController %s has no pod template: skipped", o.Name)
			return
		}
		m.addWorkload("ReplicationController", &o.ObjectMeta, sel, o.Spec.Template, origin)
	case *batchv1.Job:
		m.addWorkload("Job", &o.ObjectMeta, o.Spec.Selector, &o.Spec.Template, origin)
	case *batchv1.CronJob:
		m.addWorkload("CronJob", &o.ObjectMeta, o.Spec.JobTemplate.Spec.Selector, &o.Spec.JobTemplate.Spec.Template, origin)
	case *networkingv1.ServiceEntry:
		if !m.record("ServiceEntry", &o.ObjectMeta, origin) {
			return
		}
		se := ConvertServiceEntry(o)
		for i, p := range se.Ports {
			m.portLine("ServiceEntry", o.Namespace, o.Name, int32(p.Number), lines.sub("spec", "ports", i))
		}
		m.entries = replaceBy(m.entries, se, func(s ServiceEntry) string { return s.Namespace + "/" + s.Name })
	case *securityv1.PeerAuthentication:
		if m.record("PeerAuthentication", &o.ObjectMeta, origin) {
			m.peerAuths = replaceBy(m.peerAuths, convertPeerAuthentication(o), func(p PeerAuthentication) string { return p.Namespace + "/" + p.Name })
		}
	case *networkingv1.DestinationRule:
		if m.record("DestinationRule", &o.ObjectMeta, origin) {
			m.destinationRules = replaceBy(m.destinationRules, ConvertDestinationRule(o), func(d DestinationRule) string { return d.Namespace + "/" + d.Name })
		}
	case *networkingv1.Sidecar:
		if m.record("Sidecar", &o.ObjectMeta, origin) {
			m.sidecars = replaceBy(m.sidecars, ConvertSidecar(o), func(sc SidecarResource) string { return sc.Namespace + "/" + sc.Name })
		}
	default:
		// The scheme decoded an older version into its own type (say
		// networking v1alpha3): read it as the v1 type, which shares
		// the spec.
		m.addOtherVersion(obj, origin, lines)
	}
}

// portLine notes the line of a port's entry, when yaml.v3 found it.
func (m *Manifests) portLine(kind, ns, name string, port int32, entry lineIndex) {
	if l := entry.line(); l > 0 {
		m.portLines[kind+"/"+ns+"/"+name+"/"+strconv.Itoa(int(port))] = l
	}
}

// addOtherVersion reads an Istio object of an older, known version
// through the v1 type: every version of these kinds has the same spec.
func (m *Manifests) addOtherVersion(obj runtime.Object, origin ManifestOrigin, lines lineIndex) {
	gvk := obj.GetObjectKind().GroupVersionKind()
	js, err := json.Marshal(obj)
	if err != nil {
		m.warn(origin.File, origin.Line, "%s: %v", gvk.Kind, err)
		return
	}
	var v1obj runtime.Object
	switch gvk.Kind {
	case "ServiceEntry":
		v1obj = &networkingv1.ServiceEntry{}
	case "DestinationRule":
		v1obj = &networkingv1.DestinationRule{}
	case "Sidecar":
		v1obj = &networkingv1.Sidecar{}
	case "PeerAuthentication":
		v1obj = &securityv1.PeerAuthentication{}
	default:
		m.warn(origin.File, origin.Line, "%s %s: not judged", gvk.GroupVersion(), gvk.Kind)
		return
	}
	if err := json.Unmarshal(js, v1obj); err != nil {
		m.warn(origin.File, origin.Line, "%s: %v", gvk.Kind, err)
		return
	}
	m.add(v1obj, origin, lines)
}

// addWorkload adds the pod a workload would create from its template.
func (m *Manifests) addWorkload(kind string, meta *metav1.ObjectMeta, selector *metav1.LabelSelector, tmpl *corev1.PodTemplateSpec, origin ManifestOrigin) {
	if !m.record(kind, meta, origin) {
		return
	}
	pod := corev1.Pod{ObjectMeta: *tmpl.ObjectMeta.DeepCopy(), Spec: *tmpl.Spec.DeepCopy()}
	pod.Namespace = meta.Namespace
	// A name no real pod can have ("/" is not allowed), so an overlay on
	// a live cluster never mistakes it for one.
	pod.Name = kind + "/" + meta.Name
	var sel labels.Selector
	if selector != nil {
		s, err := metav1.LabelSelectorAsSelector(selector)
		if err != nil {
			m.warn(origin.File, origin.Line, "%s %s: spec.selector: %v", kind, meta.Name, err)
		} else {
			sel = s
		}
	}
	if sel == nil && len(pod.Labels) > 0 {
		// Jobs usually leave the selector to the controller: their
		// pods carry the template's labels.
		sel = labels.SelectorFromSet(pod.Labels)
	}
	m.addPod(pod, true, sel)
}

func (m *Manifests) addPod(pod corev1.Pod, created bool, replaces labels.Selector) {
	p := manifestPod{loadedPod: newLoadedPod(&pod), created: created}
	m.pods = replaceBy(m.pods, p, func(p manifestPod) string { return p.Namespace + "/" + p.Name })
	if replaces != nil {
		m.replaces = append(m.replaces, workloadPods{namespace: pod.Namespace, selector: replaces})
	}
}

// replaceBy appends v, or replaces the element with the same key.
func replaceBy[T any](list []T, v T, key func(T) string) []T {
	k := key(v)
	for i := range list {
		if key(list[i]) == k {
			list[i] = v
			return list
		}
	}
	return append(list, v)
}

// Template is the chart template the object was rendered from (helm
// template output), or "".
func (m *Manifests) Template(kind, namespace, name string) string {
	return m.origins[originKey(kind, namespace, name)].Template
}

// originKey is "Kind/ns/name" of the object in the files: for a pod made
// from a workload's template ("Deployment/db"), the workload.
func originKey(kind, namespace, name string) string {
	if workload, pod, ok := strings.Cut(name, "/"); kind == "Pod" && ok {
		return workload + "/" + namespace + "/" + pod
	}
	return kind + "/" + namespace + "/" + name
}

// Source is where the object behind a finding came from: "FILE#DOC" and
// the line of the port's entry (or of the object); ok is false for
// objects that are not in the files.
func (m *Manifests) Source(kind, namespace, name string, port int32) (source string, line int, ok bool) {
	o, ok := m.origins[originKey(kind, namespace, name)]
	if !ok {
		return "", 0, false
	}
	line = o.Line
	if l, ok := m.portLines[kind+"/"+namespace+"/"+name+"/"+strconv.Itoa(int(port))]; ok {
		line = l
	}
	return o.String(), line, true
}

// lineIndex finds the lines of nodes inside a document, for the report
// to point at the port a finding is about. It is best effort: a document
// that yaml.v3 cannot read has no lines, and the object's line is used.
type lineIndex struct {
	node   *yamlv3.Node
	offset int
}

func newLineIndex(text []byte, firstLine int) lineIndex {
	var n yamlv3.Node
	if err := yamlv3.Unmarshal(text, &n); err != nil || len(n.Content) == 0 {
		return lineIndex{}
	}
	return lineIndex{node: n.Content[0], offset: firstLine - 1}
}

// sub walks map keys (string) and sequence indexes (int).
func (l lineIndex) sub(path ...any) lineIndex {
	n := l.node
	for _, step := range path {
		if n == nil {
			return lineIndex{}
		}
		switch s := step.(type) {
		case string:
			var next *yamlv3.Node
			if n.Kind == yamlv3.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == s {
						next = n.Content[i+1]
						break
					}
				}
			}
			n = next
		case int:
			if n.Kind != yamlv3.SequenceNode || s >= len(n.Content) {
				return lineIndex{}
			}
			n = n.Content[s]
		}
	}
	return lineIndex{node: n, offset: l.offset}
}

func (l lineIndex) line() int {
	if l.node == nil || l.node.Line == 0 {
		return 0
	}
	return l.node.Line + l.offset
}

// Inventory is what the files describe, through the same build as a live
// scan. With base nil, the files are the whole cluster; with a live
// inventory as base, it is that cluster as it would be after applying
// them: each object in the files replaces its live version, and a
// workload's new pods replace the live pods its selector matches.
func (m *Manifests) Inventory(base *Inventory) *Inventory {
	offline := base == nil
	if offline {
		base = &Inventory{IstioInstalled: true}
	}
	inv := &Inventory{IstioInstalled: base.IstioInstalled}

	// Namespaces: the files' win; those the files only refer to are
	// taken from the live cluster, from --injected-namespaces, or are
	// unlabelled.
	namespaces := map[string]corev1.Namespace{}
	for _, ns := range base.Namespaces {
		namespaces[ns.Name] = corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns.Name, Labels: ns.Labels}}
	}
	for _, ns := range m.namespaces {
		namespaces[ns.Name] = ns
	}
	// unlabelled are the namespaces made up here without labels: a new
	// pod there gets a sidecar only by its own label.
	unlabelled := map[string]bool{}
	for _, p := range m.pods {
		if _, ok := namespaces[p.Namespace]; ok {
			continue
		}
		ns := corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: p.Namespace}}
		if slices.Contains(m.opts.InjectedNamespaces, p.Namespace) {
			ns.Labels = map[string]string{labelInjection: "enabled"}
		} else {
			unlabelled[p.Namespace] = true
		}
		namespaces[p.Namespace] = ns
	}
	for _, ns := range m.opts.InjectedNamespaces {
		if _, ok := namespaces[ns]; !ok {
			namespaces[ns] = corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{labelInjection: "enabled"}}}
		}
	}
	nsList := slices.Collect(maps.Values(namespaces))

	// Pods: the live ones the files do not replace, then the files'.
	filePods := map[string]bool{}
	for _, p := range m.pods {
		filePods[p.Namespace+"/"+p.Name] = true
	}
	removed := map[string]bool{}
	liveIntent := map[string]bool{}
	var pods []loadedPod
	for _, p := range base.Pods {
		key := p.Namespace + "/" + p.Name
		if filePods[key] || m.replacedByWorkload(p) {
			removed[key] = true
			continue
		}
		liveIntent[key] = p.InjectionIntended
		pods = append(pods, loadedPod{Pod: p})
	}
	created := map[string]bool{}
	for _, p := range m.pods {
		pods = append(pods, p.loadedPod)
		if p.created {
			created[p.Namespace+"/"+p.Name] = true
		}
	}

	// Services: the files' replace the live ones. A live Service keeps
	// its backends (as an EndpointSlice would), less the pods replaced,
	// plus the new pods its selector matches.
	fileServices := map[string]bool{}
	for _, s := range m.services {
		fileServices[s.Namespace+"/"+s.Name] = true
	}
	fileSlices := map[string]bool{}
	for _, s := range m.slices {
		fileSlices[s.key] = true
	}
	services := append([]Service{}, m.services...)
	backends := append([]sliceBackends{}, m.slices...)
	for _, s := range base.Services {
		key := s.Namespace + "/" + s.Name
		if fileServices[key] {
			continue
		}
		services = append(services, s)
		if fileSlices[key] {
			continue
		}
		b := sliceBackends{key: key}
		for _, ref := range s.Backends {
			if !removed[ref.Namespace+"/"+ref.Name] {
				b.pods = append(b.pods, ref)
			}
		}
		if len(s.Selector) > 0 {
			selector := labels.ValidatedSetSelector(s.Selector)
			for _, p := range m.pods {
				if p.Namespace == s.Namespace && selector.Matches(labels.Set(p.Labels)) {
					b.pods = append(b.pods, PodRef{Namespace: p.Namespace, Name: p.Name})
				}
			}
		}
		backends = append(backends, b)
	}

	entries := mergeBy(base.ServiceEntries, m.entries, func(s ServiceEntry) string { return s.Namespace + "/" + s.Name })
	peerAuths := mergeBy(base.PeerAuthentications, m.peerAuths, func(p PeerAuthentication) string { return p.Namespace + "/" + p.Name })

	var unknown []string
	inv.Mesh, inv.Warnings = m.meshConfig(base, offline)
	build(inv, nsList, services, backends, pods, entries, peerAuths)
	// As Load does after build: the namespaced client config, sorted.
	inv.DestinationRules = mergeBy(base.DestinationRules, m.destinationRules, func(d DestinationRule) string { return d.Namespace + "/" + d.Name })
	sortByName(inv.DestinationRules, func(d *DestinationRule) (string, string) { return d.Namespace, d.Name })
	inv.Sidecars = mergeBy(base.Sidecars, m.sidecars, func(sc SidecarResource) string { return sc.Namespace + "/" + sc.Name })
	sortSidecars(inv.Sidecars)
	for i := range inv.Pods {
		p := &inv.Pods[i]
		key := p.Namespace + "/" + p.Name
		if intent, ok := liveIntent[key]; ok {
			// A live pod's intent was read with its full spec.
			p.InjectionIntended = intent
		}
		if created[key] {
			p.HasSidecar = p.HasSidecar || p.InjectionIntended
			if !p.HasSidecar && unlabelled[p.Namespace] {
				unknown = append(unknown, p.Namespace)
			}
		}
		if filePods[key] && p.HasSidecar && len(p.Interception.Invalid) > 0 {
			inv.Warnings = append(inv.Warnings, fmt.Sprintf("pod %s/%s: the injector would refuse %s; judged as if the annotation were absent", p.Namespace, p.Name, strings.Join(p.Interception.Invalid, "; ")))
		}
	}
	warnings := append(append([]string{}, base.Warnings...), inv.Warnings...)
	warnings = append(warnings, m.warnings...)
	if len(unknown) > 0 {
		sort.Strings(unknown)
		warnings = append(warnings, fmt.Sprintf("namespace(s) %s are not in the files: their new pods without a sidecar.istio.io/inject label are taken as having no sidecar (--injected-namespaces names the namespaces with injection enabled)", strings.Join(slices.Compact(unknown), ", ")))
	}
	if !offline {
		warnings = append(warnings, fmt.Sprintf("judging the cluster as it would be after applying %d object(s) from the files", m.Judged))
	}
	inv.Warnings = dedupe(warnings)
	return inv
}

func (m *Manifests) replacedByWorkload(p Pod) bool {
	return slices.ContainsFunc(m.replaces, func(w workloadPods) bool {
		return w.namespace == p.Namespace && !w.selector.Empty() && w.selector.Matches(labels.Set(p.Labels))
	})
}

// mergeBy is base with the files' objects in place of those of the same key.
func mergeBy[T any](base, files []T, key func(T) string) []T {
	inFiles := map[string]bool{}
	for _, v := range files {
		inFiles[key(v)] = true
	}
	// nil when empty, as Load leaves a list it found nothing for.
	out := append([]T(nil), files...)
	for _, v := range base {
		if !inFiles[key(v)] {
			out = append(out, v)
		}
	}
	return out
}

// meshConfig: --mesh-config, else an istio ConfigMap in the files, else
// the live one (overlay), else Istio's defaults, said in a warning.
func (m *Manifests) meshConfig(base *Inventory, offline bool) (MeshConfig, []string) {
	istioNS := m.opts.IstioNamespace
	var warnings []string
	if m.opts.MeshConfig != "" {
		mc, w, ok := meshConfigText(m.opts.MeshConfig, m.opts.MeshConfigSource, istioNS)
		if ok {
			return mc, w
		}
		warnings = append(warnings, w...)
	}
	if len(m.meshMaps) > 0 {
		mc, w := meshConfigFrom(m.meshMaps, istioNS, nil)
		if mc.Found {
			for _, cm := range m.meshMaps {
				if cm.Namespace+"/"+cm.Name == mc.Source {
					mc.Source += " (" + cm.Annotations["origin"] + ")"
				}
			}
			return mc, append(warnings, w...)
		}
		// Every ConfigMap failed to parse: the warnings say why.
		warnings = append(warnings, w[:len(w)-1]...)
	}
	if !offline {
		return base.Mesh, warnings
	}
	mc := DefaultMeshConfig(istioNS)
	mc.Source = "Istio defaults (no mesh config in the files)"
	warnings = append(warnings, fmt.Sprintf("no mesh config in the files (--mesh-config FILE, or ConfigMap istio in %s): assuming Istio's defaults, protocolDetectionTimeout 0s (wait forever) and mesh-wide PERMISSIVE mTLS", istioNS))
	return mc, warnings
}

// meshConfigText reads mesh config YAML the user gave (--mesh-config)
// through meshConfigFrom, the path every mesh config ConfigMap takes, so
// it is parsed and warned about exactly as the cluster's would be; the
// warnings name source. ok is false when it does not parse.
func meshConfigText(text, source, istioNS string) (mc MeshConfig, warnings []string, ok bool) {
	const name = "istio"
	cm := corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: istioNS}, Data: map[string]string{"mesh": text}}
	mc, w := meshConfigFrom([]corev1.ConfigMap{cm}, istioNS, nil)
	for _, s := range w {
		warnings = append(warnings, strings.Replace(s, "ConfigMap "+istioNS+"/"+name, source, 1))
	}
	if !mc.Found {
		// The last warning is meshConfigFrom's "no mesh config": the
		// one before says why this one failed.
		return mc, warnings[:len(warnings)-1], false
	}
	mc.Source = source
	return mc, warnings, true
}

// CheckMeshConfig says, in one line, why mesh config YAML would not be
// used (source names it, "--mesh-config FILE"); nil when it would.
func CheckMeshConfig(text, source string) error {
	_, w, ok := meshConfigText(text, source, DefaultIstioNamespace)
	if ok {
		return nil
	}
	if len(w) == 0 {
		return fmt.Errorf("%s: not a mesh config", source)
	}
	return errors.New(strings.TrimSuffix(w[0], "; trying the next one"))
}
