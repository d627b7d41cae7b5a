package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/report"
	"github.com/serverfirst/kubectl-serverfirst/scan"
)

// fileFlags are scan -f's: manifests judged before they reach a cluster.
type fileFlags struct {
	paths              []string
	meshConfig         string
	injectedNamespaces []string
}

func (f *fileFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.paths, "filename", "f", nil, "Judge the objects in these manifests: a file, a directory or - for stdin; repeatable (see below)")
	fl.StringVar(&f.meshConfig, "mesh-config", "", "With -f: the mesh config to assume (the istio ConfigMap, or the YAML of its mesh key)")
	fl.StringSliceVar(&f.injectedNamespaces, "injected-namespaces", nil, "With -f: namespaces that are not in the files but have sidecar injection enabled (comma-separated)")
	// Shell completion offers manifests (and directories) for -f.
	_ = cmd.MarkFlagFilename("filename", "yaml", "yml", "json")
	_ = cmd.MarkFlagFilename("mesh-config", "yaml", "yml", "json")
}

// overlay: -f together with a cluster named on the command line judges
// that cluster with the files applied. The environment's KUBECONFIG and
// current context alone never make -f contact a cluster, so a CI job
// with credentials around still judges just the files.
func overlayWanted(cmd *cobra.Command) bool {
	return slices.ContainsFunc([]string{"context", "kubeconfig", "server", "cluster"}, cmd.Flags().Changed)
}

// validateFiles checks scan -f's flags: manifests are judged statically.
func (o *scanOptions) validateFiles() error {
	if o.root.inCluster {
		return errors.New("-f and --in-cluster: a scheduled scan judges the cluster, not files; drop one")
	}
	switch {
	case o.vantage != "auto" && o.vantage != "none":
		return fmt.Errorf("-f judges manifests statically: --vantage %s probes live targets, drop one", o.vantage)
	case o.direct:
		return errors.New("-f judges manifests statically: --direct probes live targets, drop one")
	case len(o.fromPods) > 0:
		return errors.New("-f judges manifests statically: --from-pod probes live targets, drop one")
	}
	if o.cmd.Flags().Changed("report-configmap") && !overlayWanted(o.cmd) {
		return errors.New("-f without a cluster and --report-configmap: writing the ConfigMap needs one; name it with --context or --kubeconfig, or drop --report-configmap")
	}
	var err error
	o.externals, err = parseExternals(o.external)
	return err
}

// runFiles judges the manifests: alone, or over the live cluster.
func (o *scanOptions) runFiles(ctx context.Context) (report.Report, error) {
	root, ff := o.root, &o.files
	opts := cluster.ManifestOptions{IstioNamespace: o.istioNamespace, InjectedNamespaces: ff.injectedNamespaces}
	if ff.meshConfig != "" {
		text, err := readMeshConfigFile(ff.meshConfig)
		if err != nil {
			return report.Report{}, err
		}
		source := "--mesh-config " + ff.meshConfig
		if err := cluster.CheckMeshConfig(text, source); err != nil {
			return report.Report{}, err
		}
		opts.MeshConfig, opts.MeshConfigSource = text, source
	}
	overlay := overlayWanted(o.cmd)
	if overlay {
		ns, _, err := root.configFlags.ToRawKubeConfigLoader().Namespace()
		if err != nil {
			return report.Report{}, fmt.Errorf("no usable kubeconfig: %w", err)
		}
		opts.DefaultNamespace = ns
	} else if root.configFlags.Namespace != nil {
		opts.DefaultNamespace = *root.configFlags.Namespace
	}
	m, err := cluster.ReadManifests(ff.paths, root.streams.In, opts)
	if err != nil {
		return report.Report{}, err
	}
	cfg := scan.Config{IstioNamespace: o.istioNamespace, External: o.externals}
	var live *scan.Clients
	if overlay {
		s, err := newLiveScan(root, cfg)
		if err != nil {
			return report.Report{}, err
		}
		live, cfg = &s.clients, s.cfg
	}
	r, err := scan.RunManifests(ctx, m, live, cfg)
	if err != nil {
		return report.Report{}, apiError(live.REST.Host, err)
	}
	fmt.Fprintf(o.cmd.ErrOrStderr(), "read %d object(s) from %s, %d judged\n", m.Objects, strings.Join(ff.paths, ", "), m.Judged)
	return r, nil
}

// readMeshConfigFile reads --mesh-config: an istio ConfigMap (its "mesh"
// key) or the mesh config YAML itself.
func readMeshConfigFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--mesh-config: %w", err)
	}
	var cm corev1.ConfigMap
	if err := yaml.Unmarshal(data, &cm); err == nil && cm.Kind == "ConfigMap" {
		mesh, ok := cm.Data["mesh"]
		if !ok {
			return "", fmt.Errorf("--mesh-config %s: ConfigMap %s has no \"mesh\" key", path, cm.Name)
		}
		return mesh, nil
	}
	return string(data), nil
}
