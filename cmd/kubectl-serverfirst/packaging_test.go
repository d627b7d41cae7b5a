package main

import (
	"os"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// The krew manifest must point at the archive names goreleaser produces,
// and the image must run as non-root: checked here because neither krew nor
// a container engine runs in CI.
func TestKrewManifestMatchesReleaseArchives(t *testing.T) {
	raw, err := os.ReadFile("../../plugins/serverfirst.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m struct {
		APIVersion string                `json:"apiVersion"`
		Kind       string                `json:"kind"`
		Metadata   struct{ Name string } `json:"metadata"`
		Spec       struct {
			Version          string `json:"version"`
			Homepage         string `json:"homepage"`
			ShortDescription string `json:"shortDescription"`
			Description      string `json:"description"`
			Caveats          string `json:"caveats"`
			Platforms        []struct {
				Selector struct {
					MatchLabels map[string]string `json:"matchLabels"`
				} `json:"selector"`
				URI    string `json:"uri"`
				SHA256 string `json:"sha256"`
				Bin    string `json:"bin"`
			} `json:"platforms"`
		} `json:"spec"`
	}
	if err := yaml.UnmarshalStrict(raw, &m); err != nil {
		t.Fatal(err)
	}
	if m.Kind != "Plugin" || m.Metadata.Name != "serverfirst" || len(m.Spec.Platforms) == 0 {
		t.Fatalf("manifest = %+v", m)
	}
	for _, p := range m.Spec.Platforms {
		osName, arch := p.Selector.MatchLabels["os"], p.Selector.MatchLabels["arch"]
		ext := ".tar.gz"
		bin := "kubectl-serverfirst"
		if osName == "windows" {
			ext, bin = ".zip", "kubectl-serverfirst.exe"
		}
		want := "/releases/download/" + m.Spec.Version + "/kubectl-serverfirst_" + osName + "_" + arch + ext
		if !strings.HasSuffix(p.URI, want) {
			t.Errorf("%s/%s: uri %s does not end in %s", osName, arch, p.URI, want)
		}
		if p.Bin != bin || len(p.SHA256) != 64 {
			t.Errorf("%s/%s: bin %q sha256 %q", osName, arch, p.Bin, p.SHA256)
		}
	}
	goreleaser, err := os.ReadFile("../../.goreleaser.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(goreleaser), `name_template: "{{ .ProjectName }}_{{ .Os }}_{{ .Arch }}"`) {
		t.Error(".goreleaser.yaml archive names changed: update plugins/serverfirst.yaml too")
	}
}

func TestDockerfileRunsAsNonRoot(t *testing.T) {
	raw, err := os.ReadFile("../../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	for _, want := range []string{"CGO_ENABLED=0", "distroless/static", "USER 65532:65532", `ENTRYPOINT ["kubectl-serverfirst"]`} {
		if !strings.Contains(s, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
}

func TestCompletion(t *testing.T) {
	for _, shell := range []string{"bash", "zsh", "fish"} {
		out, _, err := runCLI(t, t.Context(), "", "completion", shell)
		if err != nil || !strings.Contains(out, "kubectl-serverfirst") {
			t.Errorf("completion %s: err %v, %d bytes", shell, err, len(out))
		}
	}
}
