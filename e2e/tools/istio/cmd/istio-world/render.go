package main

import (
	"encoding/base64"
	"flag"
	"fmt"
	"os"
	"strings"

	"istio.io/istio/operator/pkg/component"
	"istio.io/istio/operator/pkg/manifest"
	"istio.io/istio/operator/pkg/render"
)

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// render prints the istiod objects the world applies itself: there is no
// istiod Deployment or Service here (istiod runs as a process), so only the
// ConfigMaps it reads and the injector's webhook configuration are kept.
func renderChart(args []string) error {
	fs := flag.NewFlagSet("render", flag.ExitOnError)
	revision := fs.String("revision", "", "control-plane revision (\"\" = default)")
	url := fs.String("injection-url", "", "where the API server calls the injector (https://HOST:PORT/inject)")
	caFile := fs.String("ca-bundle", "", "PEM CA that signed the injector's serving certificate")
	var sets stringList
	fs.Var(&sets, "set", "more istioctl --set values (repeatable)")
	_ = fs.Parse(args)
	if *url == "" || *caFile == "" {
		return fmt.Errorf("render needs --injection-url and --ca-bundle")
	}
	ca, err := os.ReadFile(*caFile)
	if err != nil {
		return err
	}
	flags := []string{
		"values.istiodRemote.injectionURL=" + *url,
		"values.istiodRemote.injectionCABundle=" + base64.StdEncoding.EncodeToString(ca),
		"values.global.istioNamespace=istio-system",
	}
	if *revision != "" {
		flags = append(flags, "revision="+*revision)
	}
	flags = append(flags, sets...)
	sets2, _, err := render.GenerateManifest(nil, flags, false, nil, nil)
	if err != nil {
		return err
	}
	var out []string
	for _, m := range manifest.ExtractComponent(sets2, component.PilotComponentName) {
		switch m.GetKind() {
		case "ConfigMap", "MutatingWebhookConfiguration":
			out = append(out, m.Content)
		}
	}
	if len(out) == 0 {
		return fmt.Errorf("the pilot component rendered no ConfigMap or MutatingWebhookConfiguration")
	}
	_, err = fmt.Println(strings.Join(out, "\n---\n"))
	return err
}
