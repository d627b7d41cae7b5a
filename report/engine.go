package report

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/probe"
)

// Input is everything the verdict engine judges.
type Input struct {
	Inventory    *cluster.Inventory
	Observations []target.Observation
	External     []target.ExternalTarget
	// Static is true when no probing was attempted (scan --static); the
	// report then says how to get proof.
	Static bool
	// BannerWait is how long the probes waited for a banner, and
	// BannerWaitWhy why (BannerWait gives both). Silence through the mesh
	// proves a hang only when the wait outlasted the mesh's own timeouts;
	// zero means unknown, which proves nothing where the mesh has one.
	BannerWait    time.Duration
	BannerWaitWhy string
	// Warnings are the scan's own (a vantage that failed, a wait the mesh
	// lengthened); the report lists them after the inventory's.
	Warnings []string
	// ConfigPaths are what the sidecars' own config says about client
	// paths (proxyconfig.go).
	ConfigPaths []target.ConfigPath
}

// delayedFraction: a banner that arrives through the mesh after this share
// of the detection timeout is the fallback to TCP at work, not the server.
const delayedFraction = 0.8

// Build joins static and active evidence into the report. It is pure:
// same input, same report.
func Build(in Input) Report {
	inv := in.Inventory
	if inv == nil {
		inv = &cluster.Inventory{}
	}
	j := newJudge(inv, in.Observations)
	j.wait = in.BannerWait
	for _, cp := range in.ConfigPaths {
		j.cfg[cp.Target] = append(j.cfg[cp.Target], cp)
	}
	findings := j.judgeAll(in.External)
	SortFindings(findings)
	r := Report{
		Findings: findings,
		Warnings: append(append([]string{}, inv.Warnings...), in.Warnings...),
		Mesh: MeshSummary{
			IstioInstalled:             inv.IstioInstalled,
			Source:                     inv.Mesh.Source,
			RootNamespace:              inv.Mesh.RootNamespace,
			ProtocolDetectionTimeoutMs: inv.Mesh.ProtocolDetectionTimeout.Milliseconds(),
			OutboundTrafficPolicy:      inv.Mesh.OutboundTrafficPolicy,
		},
		Summary:       map[Verdict]int{},
		Static:        in.Static || len(in.Observations) == 0 && len(in.ConfigPaths) == 0,
		SchemaVersion: SchemaVersion,
	}
	for _, ns := range inv.Namespaces {
		if ns.Ambient {
			r.Warnings = append(r.Warnings, fmt.Sprintf("namespace %s uses ambient mode: ztunnel does not sniff but a waypoint may; its ports are judged as if sidecars were absent", ns.Name))
		}
	}
	if !r.Static && in.BannerWait > 0 {
		r.Mesh.BannerWaitMs, r.Mesh.BannerWait = in.BannerWait.Milliseconds(), in.BannerWaitWhy
	}
	for _, f := range findings {
		r.Summary[f.Verdict]++
	}
	return r
}

// judgeAll judges every Service port, ServiceEntry port and external
// target, in that order (the order SortFindings keeps for equal keys).
// The judge only reads, so the Services and ServiceEntries are judged in
// blocks on every CPU, each finding into its own slot: on a big cluster
// the fix manifests make this the costliest step after reading the
// inventory.
func (j *judge) judgeAll(external []target.ExternalTarget) []Finding {
	inv := j.inv
	n := len(inv.Services) + len(inv.ServiceEntries)
	// first[i] is the slot of object i's first port: Services, then
	// ServiceEntries.
	first := make([]int, n+1)
	for i, svc := range inv.Services {
		first[i+1] = first[i] + len(svc.Ports)
	}
	for i, se := range inv.ServiceEntries {
		k := len(inv.Services) + i
		first[k+1] = first[k] + len(se.Ports)
	}
	findings := make([]Finding, first[n], first[n]+len(external))
	judgeObjects := func(lo, hi int) {
		for i := lo; i < hi; i++ {
			out := findings[first[i]:first[i+1]]
			if i < len(inv.Services) {
				svc := inv.Services[i]
				for k, p := range svc.Ports {
					out[k] = j.servicePort(svc, p)
				}
				continue
			}
			se := inv.ServiceEntries[i-len(inv.Services)]
			for k, p := range se.Ports {
				out[k] = j.serviceEntryPort(se, p)
			}
		}
	}
	const block = 64 // objects per turn: a millisecond or two of work
	workers := min(runtime.GOMAXPROCS(0), (n+block-1)/block)
	if workers <= 1 {
		judgeObjects(0, n)
	} else {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range workers {
			wg.Go(func() {
				for {
					lo := int(next.Add(block)) - block
					if lo >= n {
						return
					}
					judgeObjects(lo, min(lo+block, n))
				}
			})
		}
		wg.Wait()
	}
	for _, t := range external {
		findings = append(findings, j.external(t))
	}
	findings = append(findings, j.podPortFindings()...)
	if len(findings) == 0 {
		return nil // as before: no targets, no findings slice
	}
	return findings
}

// SortFindings orders worst first, then by namespace, name, port.
func SortFindings(fs []Finding) {
	sort.SliceStable(fs, func(a, b int) bool {
		x, y := fs[a], fs[b]
		if x.Verdict.Severity() != y.Verdict.Severity() {
			return x.Verdict.Severity() < y.Verdict.Severity()
		}
		if x.Namespace != y.Namespace {
			return x.Namespace < y.Namespace
		}
		if x.Kind != y.Kind {
			return x.Kind < y.Kind
		}
		if x.Name != y.Name {
			return x.Name < y.Name
		}
		return x.Port < y.Port
	})
}

type judge struct {
	inv       *cluster.Inventory
	pods      map[string]*cluster.Pod
	listeners map[uint32][]string
	// clients are the mesh's client profiles and drIndex its
	// DestinationRules, for the config-decided paths (configpaths.go).
	clients   []clientProfile
	profileOf map[*cluster.Pod]int
	drIndex   *cluster.DestinationRuleIndex
	obs       map[target.TargetKey][]target.Observation
	cfg       map[target.TargetKey][]target.ConfigPath
	anyMesh   bool
	// wait is the probes' banner wait (0: unknown).
	wait time.Duration
	// unmeshed counts the running pods without a sidecar (outside ambient
	// namespaces), the clients of the external-to-mesh path; unmeshedWho
	// says how many and where, once for every finding that cites them.
	unmeshed    int
	unmeshedWho string
	// owners indexes Services by namespace and selector (selectorOwner);
	// built on first use, from any judging goroutine.
	ownersOnce sync.Once
	owners     map[string]string
}

func newJudge(inv *cluster.Inventory, observations []target.Observation) *judge {
	j := &judge{inv: inv, pods: map[string]*cluster.Pod{}, listeners: cluster.WildcardListenerPorts(inv), obs: map[target.TargetKey][]target.Observation{}, cfg: map[target.TargetKey][]target.ConfigPath{}}
	ambient := map[string]bool{}
	for _, ns := range inv.Namespaces {
		ambient[ns.Name] = ns.Ambient
	}
	unmeshedIn := map[string]bool{}
	for i := range inv.Pods {
		p := &inv.Pods[i]
		j.pods[p.Namespace+"/"+p.Name] = p
		j.anyMesh = j.anyMesh || p.HasSidecar
		// A finished pod is nobody's client; ztunnel's HBONE does not
		// meet the sidecar's plaintext inspector.
		if !p.HasSidecar && !ambient[p.Namespace] && p.Phase != "Succeeded" && p.Phase != "Failed" {
			j.unmeshed++
			unmeshedIn[p.Namespace] = true
		}
	}
	// A -n scan's inventory lists only its own pods; the loader counted
	// the others from their metadata (cluster.Inventory.UnmeshedElsewhere).
	for ns, n := range inv.UnmeshedElsewhere {
		if n > 0 && !ambient[ns] {
			j.unmeshed += n
			unmeshedIn[ns] = true
		}
	}
	j.unmeshedWho = unmeshedWho(j.unmeshed, slices.Sorted(maps.Keys(unmeshedIn)))
	for _, o := range observations {
		j.obs[o.Target] = append(j.obs[o.Target], o)
	}
	j.clients, j.profileOf = clientProfiles(inv)
	j.drIndex = cluster.NewDestinationRuleIndexFor(inv.DestinationRules, inv.Mesh)
	return j
}

// meshAbsent: Istio is not installed and no pod has a sidecar, so nothing
// sniffs.
func (j *judge) meshAbsent() bool { return !j.inv.IstioInstalled && !j.anyMesh }

func (j *judge) servicePort(svc cluster.Service, p cluster.ServicePort) Finding {
	f := Finding{
		Kind: target.KindService, Namespace: svc.Namespace, Name: svc.Name, Port: p.Port, PortName: p.Name,
		TargetPort: p.TargetPort, Protocol: string(p.Resolved.Protocol), ProtocolSource: string(p.Resolved.Source),
		AppProtocol: p.AppProtocol, AppProtocolTrap: p.Resolved.AppProtocolTrap,
	}
	hints := hintSet{}
	hints.port(p.Port)
	hints.name("name", p.Name)
	hints.name("service", svc.Name)
	var meshPod *cluster.Pod
	targetPort, targetPortKnown := target.ParsePort(p.TargetPort)
	var backends []*cluster.Pod
	for _, ref := range svc.Backends {
		pod := j.pods[ref.Namespace+"/"+ref.Name]
		if pod == nil {
			continue
		}
		backends = append(backends, pod)
		if !targetPortKnown {
			if n, ok := pod.ContainerPorts[p.TargetPort]; ok {
				targetPort, targetPortKnown = n, true
			}
		}
		if pod.HasSidecar && meshPod == nil {
			meshPod = pod
		}
	}
	if targetPortKnown {
		hints.port(targetPort)
		f.TargetPort = strconv.Itoa(int(targetPort))
	}
	// Image hints come from the container that declares the target port;
	// only when none does, from every container.
	imageHints := hintSet{}
	for _, pod := range backends {
		if img, ok := pod.PortImages[targetPort]; ok && targetPortKnown {
			imageHints.image(img)
			continue
		}
		for _, img := range pod.Images {
			imageHints.image(img)
		}
	}
	f.Hints = hints.list()
	strongHints := len(f.Hints) > 0
	for h := range imageHints {
		hints[h] = true
	}
	f.ServerInMesh = meshPod != nil
	if f.ServerInMesh && targetPortKnown {
		f.MTLSMode = string(cluster.EffectiveMTLSMode(j.inv.PeerAuthentications, j.inv.Mesh.RootNamespace, svc.Namespace, meshPod.Labels, uint32(targetPort)))
	} else if f.ServerInMesh {
		f.MTLSMode = string(cluster.EffectiveMTLSMode(j.inv.PeerAuthentications, j.inv.Mesh.RootNamespace, svc.Namespace, meshPod.Labels, 0))
		f.Notes = append(f.Notes, fmt.Sprintf("targetPort %q is not a container port of any backing pod: port-level mTLS could not be checked", p.TargetPort))
	}
	if len(svc.Backends) == 0 {
		f.Notes = append(f.Notes, "no backing pods: nothing to probe, and mesh membership is unknown")
	}
	f.Hints = hints.list()

	switch {
	case p.Protocol != "TCP":
		f.set(ruleNotTCP.with(p.Protocol))
	case j.meshAbsent():
		f.set(ruleMeshAbsent.with())
	default:
		j.staticVerdict(&f, p.Resolved, strongHints)
	}
	f.Scenario = MeshToMesh
	if !f.ServerInMesh {
		f.Scenario = MeshToExternal
	}
	static := judgement{rule: mustRule(f.Code), reason: f.Reason}
	j.activeVerdict(&f)
	j.proxyConfigVerdict(&f)
	j.staticPaths(&f, static, j.externalToMeshRisk(f, p, strongHints, meshPod, targetPort, targetPortKnown))
	if j.inv.UnmeshedElsewhereUnknown && (j.externalToMeshCandidate(f, p, strongHints) || j.strictCandidate(f, p, strongHints)) {
		f.Notes = append(f.Notes, "clients without a sidecar outside the scanned namespaces were not counted (pods in all namespaces could not be listed): the external-to-mesh path may have more clients than this finding names, or have clients where it lists none")
	}
	j.configPaths(&f, svc, p, backends, meshPod, targetPort, targetPortKnown)
	f.Fixes = j.configFixes(f, svc, p, meshPod, j.fixesFor(f, svc, p, meshPod))
	return f
}

// externalToMeshRisk judges, from the inventory, the path of clients
// without a sidecar into a Service port: under PERMISSIVE the server's
// sidecar runs the TLS inspector on every port (declared or not), which
// waits for a server-first client, so the path is at risk wherever such
// clients exist. Nil when it is not. As for mesh clients, a port declared
// HTTP is only suspect on a hint other than an image (strongHints): a
// database's metrics port is HTTP.
func (j *judge) externalToMeshRisk(f Finding, p cluster.ServicePort, strongHints bool, meshPod *cluster.Pod, targetPort int32, targetKnown bool) *judgement {
	// Both candidates below need hints on a TCP port; a port the server
	// does not capture is fine for them whatever its mTLS mode.
	if meshPod != nil && targetKnown && j.unmeshed > 0 && len(f.Hints) > 0 && p.Protocol == "TCP" {
		if captured, why := cluster.InboundCaptured(meshPod, uint32(targetPort)); !captured {
			jd := ruleUnmeshedUncaptured.with(j.unmeshedWho, "the server pod "+meshPod.Namespace+"/"+meshPod.Name, targetPort, why)
			return &jd
		}
	}
	if j.strictCandidate(f, p, strongHints) && j.unmeshed > 0 {
		jd := ruleStrictUnmeshed.with(j.unmeshedWho, strings.Join(f.Hints, ", "))
		return &jd
	}
	if !j.externalToMeshCandidate(f, p, strongHints) || j.unmeshed == 0 {
		return nil
	}
	who := j.unmeshedWho
	hints := strings.Join(f.Hints, ", ")
	if d := j.inv.Mesh.ProtocolDetectionTimeout; d > 0 {
		jd := rulePermissiveUnmeshedTimeout.with(who, hints, d)
		return &jd
	}
	jd := rulePermissiveUnmeshed.with(who, hints)
	return &jd
}

// externalToMeshCandidate: the port would be at risk from clients
// without a sidecar, whether or not any are known.
func (j *judge) externalToMeshCandidate(f Finding, p cluster.ServicePort, strongHints bool) bool {
	if !f.ServerInMesh || f.MTLSMode != string(cluster.MTLSPermissive) || p.Protocol != "TCP" || len(f.Hints) == 0 || j.meshAbsent() {
		return false
	}
	return !p.Resolved.Protocol.HTTPFamily() || strongHints
}

// strictCandidate: a server-first candidate port under STRICT, whose
// clients without a sidecar are rejected (SF0205).
func (j *judge) strictCandidate(f Finding, p cluster.ServicePort, strongHints bool) bool {
	if !f.ServerInMesh || f.MTLSMode != string(cluster.MTLSStrict) || p.Protocol != "TCP" || len(f.Hints) == 0 || j.meshAbsent() {
		return false
	}
	return !p.Resolved.Protocol.HTTPFamily() || strongHints
}

// maxNamedNamespaces caps the namespaces a reason names: on a big cluster
// every PERMISSIVE server-first port cites the same clients.
const maxNamedNamespaces = 5

func unmeshedWho(pods int, namespaces []string) string {
	named := strings.Join(namespaces[:min(len(namespaces), maxNamedNamespaces)], ", ")
	if more := len(namespaces) - maxNamedNamespaces; more > 0 {
		named += fmt.Sprintf(" and %d more", more)
	}
	return fmt.Sprintf("%d pod(s) without a sidecar in %d namespace(s): %s", pods, len(namespaces), named)
}

// staticPaths lists the client paths no probe covered, judged from the
// inventory, beside the probed ones, so a static finding lists its paths
// like an active one: the mesh client's path (the finding's own static
// verdict, refined by a direct probe if one ran) and, for a Service port,
// the external-to-mesh path when extern is set. The finding takes the
// worst path's verdict.
func (j *judge) staticPaths(f *Finding, static judgement, extern *judgement) {
	probed := map[Scenario]bool{}
	for _, p := range f.Paths {
		probed[p.Scenario] = true
	}
	meshScenario := MeshToMesh
	if !f.ServerInMesh {
		meshScenario = MeshToExternal
	}
	switch {
	case len(f.Paths) == 0:
		f.Paths = append(f.Paths, PathVerdict{Scenario: f.Scenario, Verdict: f.Verdict, Code: f.Code, Reason: f.Reason})
	case !probed[meshScenario] && f.Kind == target.KindService:
		f.Paths = append(f.Paths, PathVerdict{Scenario: meshScenario, Verdict: static.rule.Verdict, Code: static.rule.Code, Reason: static.reason})
	}
	if extern != nil && !probed[ExternalToMesh] {
		f.Paths = append(f.Paths, PathVerdict{Scenario: ExternalToMesh, Verdict: extern.rule.Verdict, Code: extern.rule.Code, Reason: extern.reason})
	}
	sort.SliceStable(f.Paths, func(a, b int) bool { return f.Paths[a].Verdict.Severity() < f.Paths[b].Verdict.Severity() })
	worst := f.Paths[0]
	f.Verdict, f.Code, f.Reason, f.Scenario = worst.Verdict, worst.Code, worst.Reason, worst.Scenario
}

// mustRule finds a registered rule by code; every code the engine sets
// is registered (TestRulesRegistry), so nil means a bug in this file.
func mustRule(c Code) *Rule {
	for _, r := range registry {
		if r.Code == c {
			return r
		}
	}
	return nil
}

// staticVerdict judges from the inventory alone.
//
// strongHints says whether a hint other than a container image exists: a
// port declared HTTP is only suspect on such a hint, since databases and
// mail servers often carry an HTTP metrics port beside the real one.
func (j *judge) staticVerdict(f *Finding, r cluster.ResolvedProtocol, strongHints bool) {
	hinted := len(f.Hints) > 0
	hints := strings.Join(f.Hints, ", ")
	delay := j.inv.Mesh.ProtocolDetectionTimeout
	switch {
	case r.Sniffed() && hinted && r.AppProtocolTrap && delay > 0:
		f.set(ruleTrapHintedTimeout.with(f.AppProtocol, f.PortName, hints, delay))
	case r.Sniffed() && hinted && r.AppProtocolTrap:
		f.set(ruleTrapHinted.with(f.AppProtocol, f.PortName, hints))
	case r.Sniffed() && hinted && delay > 0:
		f.set(ruleSniffedHintedTimeout.with(hints, delay))
	case r.Sniffed() && hinted:
		f.set(ruleSniffedHinted.with(hints))
	case r.Sniffed() && r.AppProtocolTrap:
		f.set(ruleTrap.with(f.AppProtocol, f.PortName))
	case r.Sniffed():
		f.set(ruleSniffedNoHints.with())
	case r.Protocol.HTTPFamily() && strongHints:
		f.set(ruleHTTPHinted.with(r.Protocol, r.Source, hints))
	default:
		f.set(ruleDeclared.with(r.Protocol, describeSource(r.Source)))
	}
}

func describeSource(s cluster.ProtocolSource) string {
	switch s {
	case cluster.SourceName:
		return "the port name"
	case cluster.SourceAppProtocol:
		return "appProtocol"
	case cluster.SourceWellKnownPort:
		return "its well-known port number"
	case cluster.SourceProtocol:
		return "its protocol field"
	}
	return string(s)
}

func (j *judge) serviceEntryPort(se cluster.ServiceEntry, p cluster.ServiceEntryPort) Finding {
	f := Finding{
		Kind: target.KindServiceEntry, Namespace: se.Namespace, Name: se.Name, Port: int32(p.Number), PortName: p.Name,
		Protocol: string(p.Resolved.Protocol), ProtocolSource: string(p.Resolved.Source), Hosts: se.Hosts,
		Scenario: MeshToExternal,
	}
	if p.TargetPort != 0 {
		f.TargetPort = strconv.Itoa(int(p.TargetPort))
	}
	hints := hintSet{}
	hints.port(int32(p.Number))
	hints.name("name", p.Name)
	for _, h := range se.Hosts {
		hints.name("host", h)
	}
	f.Hints = hints.list()
	if c, ok := cluster.OutboundCollision(j.listeners, p.Number); ok {
		f.setCollisions(c.Services, cluster.ServiceEntryListenerName(se, p))
	}
	switch {
	case j.meshAbsent():
		f.set(ruleMeshAbsent.with())
	case !p.Resolved.Sniffed() && len(f.CollidesWith) > 0 && len(se.Addresses) == 0 && !j.addressAllocated() && len(f.Hints) > 0:
		f.set(ruleSENoAddressCollision.with(p.Resolved.Protocol, p.Number, f.collisionText()))
	default:
		j.staticVerdict(&f, p.Resolved, len(f.Hints) > 0)
	}
	j.activeVerdict(&f)
	j.proxyConfigVerdict(&f)
	j.staticPaths(&f, judgement{}, nil)
	j.externalBypassPaths(&f, se.Addresses)
	j.serviceEntryExportPaths(&f, se)
	f.Fixes = withScenario(append(j.serviceEntryFixes(f, se, p), outboundExclusionAlternative(f)...), MeshToExternal)
	j.dynamicDNSServiceEntryPath(&f, se)
	return f
}

func (j *judge) addressAllocated() bool { return j.inv.Mesh.DNSCapture && j.inv.Mesh.DNSAutoAllocate }

func (j *judge) external(t target.ExternalTarget) Finding {
	f := Finding{
		Kind: target.KindExternal, Name: t.Host, Port: t.Port, Protocol: string(cluster.ProtocolAuto),
		ProtocolSource: string(cluster.SourceNone), Scenario: MeshToExternal,
	}
	hints := hintSet{}
	hints.port(t.Port)
	hints.name("host", t.Host)
	f.Hints = hints.list()
	c, collides := cluster.OutboundCollision(j.listeners, uint32(t.Port))
	if collides {
		f.setCollisions(c.Services, "")
	}
	switch {
	case j.meshAbsent():
		f.set(ruleMeshAbsent.with())
	case collides:
		f.set(ruleExternalCollision.with(f.collisionText(), t.Port))
	case j.inv.Mesh.OutboundTrafficPolicy == cluster.OutboundRegistryOnly:
		f.set(ruleRegistryOnlyBlackHole.with())
	case j.inv.Mesh.OutboundTrafficPolicy == cluster.OutboundAllowAnyDynamicDNS:
		f.set(ruleDynamicDNSCatchAll.with(cluster.EnvoyListenerFiltersTimeout))
	default:
		f.Protocol = string(cluster.ProtocolTCP)
		f.set(ruleExternalPassthrough.with(t.Port))
	}
	j.activeVerdict(&f)
	j.proxyConfigVerdict(&f)
	j.staticPaths(&f, judgement{}, nil)
	j.externalBypassPaths(&f, []string{t.Host})
	f.Fixes = withScenario(append(j.externalFixes(f), outboundExclusionAlternative(f)...), MeshToExternal)
	return f
}

// maxCollisionsListed bounds CollidesWith: every ServiceEntry on a popular
// port collides with every other one, so listing them all made the report
// quadratic in the number of entries (bench-scan -scale 3: 1,000 entries on
// one port gave 166,166 list items and most of a 110 MB JSON).
const maxCollisionsListed = 10

// setCollisions records the ports that share f's outbound listener, less
// self, keeping the first maxCollisionsListed and the total.
func (f *Finding) setCollisions(services []string, self string) {
	total := 0
	for _, s := range services {
		if s == self {
			continue
		}
		total++
		if len(f.CollidesWith) < maxCollisionsListed {
			f.CollidesWith = append(f.CollidesWith, s)
		}
	}
	if total > len(f.CollidesWith) {
		f.CollidesWithTotal = total
	}
}

// collisionText names the colliding ports for a reason.
func (f *Finding) collisionText() string {
	text := strings.Join(f.CollidesWith, ", ")
	if more := f.CollidesWithTotal - len(f.CollidesWith); more > 0 {
		text += fmt.Sprintf(" and %d more", more)
	}
	return text
}

// pathResult is the judgement of one client path.
type pathResult struct {
	judgement
	scenario Scenario
}

func (p pathResult) verdict() Verdict { return p.rule.Verdict }

// activeVerdict refines the static verdict with probe evidence. The rule
// that matters most: DEADLOCK needs both halves of the proof, the banner on
// the direct path and silence through the mesh. Anything less is weaker.
func (j *judge) activeVerdict(f *Finding) {
	obs := j.obs[f.Key()]
	if len(obs) == 0 {
		return
	}
	var direct, meshPath, outside []probe.Result
	for _, o := range obs {
		e := evidenceOf(o)
		f.Evidence = append(f.Evidence, e)
		switch {
		case o.Vantage == target.VantageDirect:
			direct = append(direct, o.Result)
		case e.throughMesh():
			meshPath = append(meshPath, o.Result)
		case !f.ServerInMesh:
			// A client without a sidecar reaching a server without one
			// is the direct path.
			direct = append(direct, o.Result)
		default:
			outside = append(outside, o.Result)
		}
	}
	sort.SliceStable(f.Evidence, func(a, b int) bool { return vantageRank(f.Evidence[a]) < vantageRank(f.Evidence[b]) })
	d, dNote := summarize(direct)
	if dNote != "" {
		f.Notes = append(f.Notes, "direct path: "+dNote)
	}
	var paths []pathResult
	if len(meshPath) > 0 {
		sc := MeshToMesh
		if !f.ServerInMesh {
			sc = MeshToExternal
		}
		m, note := summarize(meshPath)
		if note != "" {
			f.Notes = append(f.Notes, "mesh path: "+note)
		}
		paths = append(paths, j.judgePath(m, d, sc, f, false))
	}
	if len(outside) > 0 {
		o, note := summarize(outside)
		if note != "" {
			f.Notes = append(f.Notes, "outside path: "+note)
		}
		paths = append(paths, j.judgePath(o, d, ExternalToMesh, f, true))
	}
	if len(paths) == 0 {
		// Only the direct path was probed: it says whether the server
		// speaks first, not whether the mesh waits.
		switch {
		case d == nil:
		case d.Outcome == probe.OutcomeBanner && f.Verdict == AtRisk:
			f.set(ruleDirectConfirmsRisk.with(bannerWord(d), ms(d.FirstByteMs), lowerFirst(f.Reason)))
		case d.Outcome == probe.OutcomeBanner && f.Verdict == OK && f.Protocol == string(cluster.ProtocolAuto) && !j.meshAbsent():
			f.set(ruleDirectBannerSniffed.with(bannerWord(d), ms(d.FirstByteMs)))
		case d.Outcome == probe.OutcomeBanner && f.Verdict == OK && cluster.Protocol(f.Protocol).HTTPFamily() && !j.meshAbsent():
			f.set(ruleDirectBannerHTTP.with(bannerWord(d), ms(d.FirstByteMs), f.Protocol))
		case d.Outcome == probe.OutcomeSilent && f.Protocol == string(cluster.ProtocolAuto):
			f.set(ruleDirectSilentSniffed.with())
		case isUnreachable(d.Outcome):
			f.Notes = append(f.Notes, "the direct probe could not connect ("+string(d.Outcome)+"): the verdict rests on static evidence")
		}
		return
	}
	sort.SliceStable(paths, func(a, b int) bool { return paths[a].verdict().Severity() < paths[b].verdict().Severity() })
	best := paths[0]
	f.set(best.judgement)
	f.Scenario = best.scenario
	for _, p := range paths {
		f.Paths = append(f.Paths, PathVerdict{Scenario: p.scenario, Verdict: p.verdict(), Code: p.rule.Code, Reason: p.reason})
	}
}

// summarize reduces several results of one path to one; when they
// disagree about whether bytes arrived, it says so and keeps the weaker
// (silence is the stronger claim).
func summarize(rs []probe.Result) (*probe.Result, string) {
	if len(rs) == 0 {
		return nil, ""
	}
	var banner, silent *probe.Result
	for i := range rs {
		switch rs[i].Outcome {
		case probe.OutcomeBanner:
			if banner == nil {
				banner = &rs[i]
			}
		case probe.OutcomeSilent:
			if silent == nil {
				silent = &rs[i]
			}
		}
	}
	if banner != nil && silent != nil {
		return banner, fmt.Sprintf("probes disagree (%d results, some got a banner, some silence); taking the banner, the weaker claim", len(rs))
	}
	if banner != nil {
		return banner, ""
	}
	if silent != nil {
		return silent, ""
	}
	return &rs[0], ""
}

func isUnreachable(o probe.Outcome) bool {
	switch o {
	case probe.OutcomeRefused, probe.OutcomeConnectTimeout, probe.OutcomeError:
		return true
	}
	return false
}

// judgePath decides one client path from its result and the direct one.
func (j *judge) judgePath(r, d *probe.Result, sc Scenario, f *Finding, outside bool) pathResult {
	serverFirst := d != nil && d.Outcome == probe.OutcomeBanner
	timeout := j.inv.Mesh.ProtocolDetectionTimeout
	via := "through the mesh"
	if outside {
		via = "from a client without a sidecar"
	}
	return pathResult{j.pathJudgement(r, d, f, via, outside, serverFirst, timeout), sc}
}

func (j *judge) pathJudgement(r, d *probe.Result, f *Finding, via string, outside, serverFirst bool, timeout time.Duration) judgement {
	switch r.Outcome {
	case probe.OutcomeBanner:
		if timeout > 0 && r.FirstByteMs != nil && *r.FirstByteMs >= delayedFraction*float64(timeout.Milliseconds()) &&
			(d == nil || d.FirstByteMs == nil || *d.FirstByteMs < float64(timeout.Milliseconds())/2) {
			if serverFirst {
				return ruleDelayedDirect.with(via, ms(r.FirstByteMs), timeout, ms(d.FirstByteMs))
			}
			return ruleDelayed.with(via, ms(r.FirstByteMs), timeout)
		}
		return ruleBannerArrives.with(via, ms(r.FirstByteMs))
	case probe.OutcomeSilent:
		switch {
		case outside && f.MTLSMode == string(cluster.MTLSStrict):
			// The server's sidecar waits for a TLS ClientHello and never
			// lets plaintext through: rejection, whether it resets or waits.
			return ruleStrictSilent.with()
		case serverFirst:
			// Silence is a hang only past every timeout of the mesh
			// that could still end the wait on this path.
			if bound, why := cluster.WaitBound(j.inv.Mesh, meshPathKind(f, outside)); bound > 0 && j.wait <= bound {
				return ruleWaitTooShort.with(bannerWord(d), ms(d.FirstByteMs), via, waitWord(j.wait), why, SuggestedWait(bound))
			}
			return ruleDeadlock.with(bannerWord(d), ms(d.FirstByteMs), via)
		case d != nil && d.Outcome == probe.OutcomeSilent:
			return ruleBothSilent.with(via)
		case f.Verdict == AtRisk || len(f.Hints) > 0:
			return ruleSilentHinted.with(via)
		default:
			return ruleSilentNoHints.with(via)
		}
	case probe.OutcomeReset, probe.OutcomeClosed:
		if outside && f.MTLSMode == string(cluster.MTLSStrict) {
			return ruleStrictClosed.with(r.Outcome)
		}
		if serverFirst {
			return ruleServerFirstClosed.with(via, r.Outcome)
		}
		return rulePathClosed.with(via, r.Outcome)
	default:
		return rulePathUnreachable.with(via, describeFailure(*r))
	}
}

// meshPathKind says which listeners a probe's connection met: the
// server's virtualInbound for a client without a sidecar; for a mesh
// client, a sniffing outbound listener when the port is sniffed or shares
// a 0.0.0.0 listener, else only the 15001 catch-all.
func meshPathKind(f *Finding, outside bool) string {
	switch {
	case outside:
		return cluster.PathInbound
	case f.Protocol == string(cluster.ProtocolAuto) || len(f.CollidesWith) > 0:
		return cluster.PathMeshClient
	}
	return cluster.PathCatchAll
}

func waitWord(d time.Duration) string {
	if d <= 0 {
		return "unknown"
	}
	return d.String()
}

// waitMargin is what a banner wait adds to the mesh's own timeout, so a
// banner the mesh releases at its timeout still arrives within the wait.
const waitMargin = 2 * time.Second

// SuggestedWait is the banner wait that outlasts a mesh timeout bound.
func SuggestedWait(bound time.Duration) time.Duration {
	return (bound + waitMargin).Round(time.Second)
}

// BannerWait picks the probes' banner wait: the user's --timeout when
// given (set), else the default, raised past the longest timeout of the
// mesh that could end a wait on any path, so silence proves a hang and a
// delayed banner is seen as DELAYED. It says why (for Report.Mesh) and,
// when the wait differs from what the user would expect or is too short
// to prove a hang, a note for the report's warnings.
func BannerWait(mc cluster.MeshConfig, timeout time.Duration, set bool) (wait time.Duration, why, note string) {
	var longest time.Duration
	var longestWhy string
	for _, path := range []string{cluster.PathMeshClient, cluster.PathCatchAll, cluster.PathInbound} {
		if b, w := cluster.WaitBound(mc, path); b > longest {
			longest, longestWhy = b, w
		}
	}
	if set {
		if longest > 0 && timeout <= longest {
			note = fmt.Sprintf("--timeout %s is not longer than %s: silence through the mesh there cannot prove a DEADLOCK (AT-RISK instead); --timeout %s can", timeout, longestWhy, SuggestedWait(longest))
		}
		return timeout, fmt.Sprintf("--timeout %s", timeout), note
	}
	if longest == 0 || SuggestedWait(longest) <= timeout {
		return timeout, fmt.Sprintf("the default %s; nothing in the mesh ends a wait sooner (--timeout overrides)", timeout), ""
	}
	wait = SuggestedWait(longest)
	why = fmt.Sprintf("%s, following the mesh: %s + %s margin, so a banner the mesh releases late still arrives (--timeout overrides)", wait, longestWhy, waitMargin)
	return wait, why, fmt.Sprintf("probes wait %s for a banner, not %s: %s + %s, so silence proves a hang and a late banner shows as DELAYED (--timeout overrides)", wait, timeout, longestWhy, waitMargin)
}

func describeFailure(r probe.Result) string {
	if r.Error != "" {
		return string(r.Outcome) + " (" + r.Error + ")"
	}
	return string(r.Outcome)
}

func bannerWord(r *probe.Result) string {
	if r.Protocol != "" {
		return r.Protocol + " banner"
	}
	return "banner"
}

func ms(v *float64) string {
	if v == nil {
		return "?"
	}
	d := time.Duration(*v * float64(time.Millisecond))
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	case d >= 10*time.Millisecond:
		return fmt.Sprintf("%dms", d.Milliseconds())
	default:
		return fmt.Sprintf("%.1fms", *v)
	}
}

func lowerFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

func evidenceOf(o target.Observation) Evidence {
	r := o.Result
	e := Evidence{
		Vantage: o.Vantage, Address: r.Address, Outcome: string(r.Outcome), ConnectMs: r.ConnectMs,
		FirstByteMs: r.FirstByteMs, Banner: probe.Describe(r.Bytes()), Protocol: r.Protocol, Error: r.Error,
	}
	if o.Vantage == target.VantageSelf {
		inMesh := o.InMesh
		e.InMesh = &inMesh
	}
	return e
}

// throughMesh: the evidence went through a client sidecar.
func (e Evidence) throughMesh() bool {
	return e.Vantage == target.VantageMeshClient || e.Vantage == target.VantageSelf && e.InMesh != nil && *e.InMesh
}

// vantageRank orders evidence as a reader checks it: the direct proof
// first, then the mesh path, then the outside path.
func vantageRank(e Evidence) int {
	switch {
	case e.Vantage == target.VantageDirect:
		return 0
	case e.throughMesh():
		return 1
	case e.Vantage == target.VantageOutsideClient:
		return 2
	}
	return 3
}

func withScenario(fixes []Fix, sc Scenario) []Fix {
	for i := range fixes {
		fixes[i].Scenario = sc
	}
	return fixes
}
