package testenv

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
)

const (
	// EnvTestBin names a folder holding kube-apiserver and etcd; it overrides
	// <repo>/.cache/testbin, where `make test-deps` builds them.
	EnvTestBin = "SERVERFIRST_TESTBIN"
	// EnvIstioCRDs names Istio's CRD YAML file; it overrides the copy found
	// in the istio.io/api module.
	EnvIstioCRDs = "SERVERFIRST_ISTIO_CRDS"

	mainModule   = "github.com/serverfirst/kubectl-serverfirst"
	istioAPI     = "istio.io/api"
	istioCRDPath = "kubernetes/customresourcedefinitions.gen.yaml"
)

// ErrBinariesMissing is returned (wrapped) by Start when kube-apiserver or
// etcd cannot be found; StartForTest turns it into a skip outside CI.
var ErrBinariesMissing = errors.New("kube-apiserver/etcd not built: run `make test-deps` (or bash hack/testbins.sh) first")

// Binaries returns the paths of kube-apiserver and etcd: from dir if not
// empty, else $SERVERFIRST_TESTBIN, else <repo>/.cache/testbin where repo is
// the first parent of the working directory holding this project's go.mod.
func Binaries(dir string) (apiserver, etcd string, err error) {
	if dir == "" {
		dir = os.Getenv(EnvTestBin)
	}
	if dir == "" {
		root, rerr := RepoRoot()
		if rerr != nil {
			return "", "", fmt.Errorf("%w (%v; or set %s)", ErrBinariesMissing, rerr, EnvTestBin)
		}
		dir = filepath.Join(root, ".cache", "testbin")
	}
	apiserver, etcd = filepath.Join(dir, "kube-apiserver"), filepath.Join(dir, "etcd")
	for _, p := range []string{apiserver, etcd} {
		if fi, serr := os.Stat(p); serr != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return "", "", fmt.Errorf("%w: no executable %s", ErrBinariesMissing, p)
		}
	}
	return apiserver, etcd, nil
}

// RepoRoot walks up from the working directory to the folder whose go.mod
// declares this project's module (not the e2e module's, whose path is longer:
// the match includes the newline). Tests run in their package folder and
// `go run ./cmd/testcluster` in e2e/, so both find it.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && strings.Contains(string(data), "module "+mainModule+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no %s checkout above the working directory", mainModule)
		}
		dir = parent
	}
}

// IstioCRDFile finds Istio's CRD YAML: $SERVERFIRST_ISTIO_CRDS, else the
// istio.io/api module this binary was built with (via istio.io/client-go),
// looked up in the module cache and downloaded there if missing.
func IstioCRDFile() (string, error) {
	if f := os.Getenv(EnvIstioCRDs); f != "" {
		return f, nil
	}
	version := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range bi.Deps {
			if dep.Path == istioAPI {
				if dep.Replace != nil {
					dep = dep.Replace
				}
				version = dep.Version
			}
		}
	}
	if version != "" {
		if cache := modCache(); cache != "" {
			f := filepath.Join(cache, istioAPI+"@"+version, istioCRDPath)
			if _, err := os.Stat(f); err == nil {
				return f, nil
			}
		}
	}
	// Not in the cache (a fresh GOMODCACHE) or no build info: ask the go
	// command, which downloads the module if needed.
	arg := istioAPI
	if version != "" {
		arg += "@" + version
	}
	cmd := exec.Command("go", "mod", "download", "-json", arg)
	if root, err := RepoRoot(); err == nil {
		cmd.Dir = root
	}
	out, err := cmd.Output()
	var dl struct{ Dir, Error string }
	if jerr := json.Unmarshal(out, &dl); jerr != nil || dl.Dir == "" {
		return "", fmt.Errorf("locate %s in the module cache (go mod download %s: %v %s); set %s to the CRD file",
			istioAPI, arg, err, dl.Error, EnvIstioCRDs)
	}
	return filepath.Join(dl.Dir, istioCRDPath), nil
}

func modCache() string {
	if c := os.Getenv("GOMODCACHE"); c != "" {
		return c
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		return filepath.Join(filepath.SplitList(gp)[0], "pkg", "mod")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, "go", "pkg", "mod")
	}
	return ""
}
