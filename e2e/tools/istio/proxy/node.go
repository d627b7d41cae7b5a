// Package proxy is what the e2e world's istio-proxy containers run in place
// of pilot-agent + Envoy: an ADS client of the world's real istiod that
// identifies itself exactly as pilot-agent would (node ID and metadata
// built by Istio's own bootstrap code from the container's environment)
// and keeps the listeners, clusters, routes and endpoints it is sent.
package proxy

import (
	"encoding/json"
	"fmt"
	"strings"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"

	"istio.io/istio/pkg/bootstrap"
	"istio.io/istio/pkg/config/constants"
	"istio.io/istio/pkg/config/mesh"
)

// Identity is what pilot-agent learns about its pod: from the downward API
// env vars the injector sets (POD_NAME, POD_NAMESPACE, INSTANCE_IP, ...),
// the ISTIO_META_* env vars, PROXY_CONFIG, and the pod's labels and
// annotations (a downward API volume in a real pod).
type Identity struct {
	Env         []string // KEY=VALUE, as os.Environ
	Labels      map[string]string
	Annotations map[string]string
}

// lookup returns the value of key in env ("" if absent).
func lookup(env []string, key string) string {
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// Node builds the Envoy node pilot-agent would send: ID
// sidecar~INSTANCE_IP~POD_NAME.POD_NAMESPACE~POD_NAMESPACE.svc.cluster.local
// and the metadata of Istio's bootstrap.GetNodeMetaData (the same function
// pilot-agent calls), marshalled as pilot-agent puts it into Envoy's
// bootstrap (typed fields, then the untyped ISTIO_META_* ones they do not
// cover).
func (id Identity) Node() (*core.Node, error) {
	name, ns, ip := lookup(id.Env, "POD_NAME"), lookup(id.Env, "POD_NAMESPACE"), lookup(id.Env, "INSTANCE_IP")
	if name == "" || ns == "" || ip == "" {
		return nil, fmt.Errorf("proxy: POD_NAME, POD_NAMESPACE and INSTANCE_IP must be set (got %q, %q, %q)", name, ns, ip)
	}
	pc := mesh.DefaultProxyConfig()
	if s := lookup(id.Env, "PROXY_CONFIG"); s != "" {
		m := mesh.DefaultMeshConfig()
		m.DefaultConfig = pc
		applied, err := mesh.ApplyProxyConfig(s, m)
		if err != nil {
			return nil, fmt.Errorf("proxy: PROXY_CONFIG: %w", err)
		}
		pc = applied.DefaultConfig
	}
	nodeID := fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.%s", ip, name, ns, ns, constants.DefaultClusterLocalDomain)
	n, err := bootstrap.GetNodeMetaData(bootstrap.MetadataOptions{
		Envs:            id.Env,
		InstanceIPs:     strings.Split(ip, ","),
		ID:              nodeID,
		ProxyConfig:     pc,
		EnvoyStatusPort: 15021,
		// pilot-agent's defaults (pilot/cmd/pilot-agent/options).
		EnvoyPrometheusPort: 15090,
		StsPort:             0,
	})
	if err != nil {
		return nil, err
	}
	// The downward API files /etc/istio/pod/{labels,annotations}.
	if len(id.Labels) > 0 {
		if n.Metadata.Labels == nil {
			n.Metadata.Labels = map[string]string{}
		}
		for k, v := range id.Labels {
			if k != bootstrap.DefaultDeploymentUniqueLabelKey {
				n.Metadata.Labels[k] = v
			}
		}
	}
	if len(id.Annotations) > 0 {
		if n.Metadata.Annotations == nil {
			n.Metadata.Annotations = map[string]string{}
		}
		for k, v := range id.Annotations {
			n.Metadata.Annotations[k] = v
		}
	}
	typed, err := json.Marshal(n.Metadata)
	if err != nil {
		return nil, err
	}
	var merged map[string]any
	if err := json.Unmarshal(typed, &merged); err != nil {
		return nil, err
	}
	for k, v := range n.RawMetadata {
		if _, ok := merged[k]; !ok {
			merged[k] = v
		}
	}
	meta, err := structpb.NewStruct(merged)
	if err != nil {
		return nil, fmt.Errorf("proxy: node metadata: %w", err)
	}
	return &core.Node{Id: n.ID, Metadata: meta, Locality: n.Locality}, nil
}

// IdentityFromPod is the Identity of the pod's istio-proxy container (a
// regular container or a native sidecar), its env resolved as the kubelet
// resolves it: literal values and the downward API field references the
// injector uses.
func IdentityFromPod(pod *corev1.Pod) (Identity, error) {
	var c *corev1.Container
	for i := range pod.Spec.InitContainers {
		if pod.Spec.InitContainers[i].Name == "istio-proxy" {
			c = &pod.Spec.InitContainers[i]
		}
	}
	for i := range pod.Spec.Containers {
		if pod.Spec.Containers[i].Name == "istio-proxy" {
			c = &pod.Spec.Containers[i]
		}
	}
	if c == nil {
		return Identity{}, fmt.Errorf("proxy: pod %s/%s has no istio-proxy container", pod.Namespace, pod.Name)
	}
	id := Identity{Labels: pod.Labels, Annotations: pod.Annotations}
	for _, e := range c.Env {
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			v = fieldRef(pod, e.ValueFrom.FieldRef.FieldPath)
		}
		id.Env = append(id.Env, e.Name+"="+v)
	}
	return id, nil
}

func fieldRef(pod *corev1.Pod, path string) string {
	switch path {
	case "metadata.name":
		return pod.Name
	case "metadata.namespace":
		return pod.Namespace
	case "metadata.uid":
		return string(pod.UID)
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName
	case "spec.nodeName":
		return pod.Spec.NodeName
	case "status.podIP":
		return pod.Status.PodIP
	case "status.hostIP":
		return pod.Status.HostIP
	case "status.podIPs":
		ips := make([]string, 0, len(pod.Status.PodIPs))
		for _, p := range pod.Status.PodIPs {
			ips = append(ips, p.IP)
		}
		return strings.Join(ips, ",")
	}
	if k, ok := strings.CutPrefix(path, "metadata.labels['"); ok {
		return pod.Labels[strings.TrimSuffix(k, "']")]
	}
	if k, ok := strings.CutPrefix(path, "metadata.annotations['"); ok {
		return pod.Annotations[strings.TrimSuffix(k, "']")]
	}
	return ""
}
