package world

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/serverfirst/kubectl-serverfirst/internal/testenv"
)

// EnvIstioBin names the folder holding pilot-discovery, pilot-agent and
// istio-world; it overrides $SERVERFIRST_TESTBIN (hack/testbins.sh honours
// it too).
const EnvIstioBin = "SERVERFIRST_ISTIOBIN"

// ErrIstioBinariesMissing is returned (wrapped) by LocateIstioBinaries
// when a binary is absent or istio-world is older than its sources.
var ErrIstioBinariesMissing = errors.New("pilot-discovery, pilot-agent or istio-world not built or stale: run `bash hack/testbins.sh`")

// LocateIstioBinaries finds Istio's binaries in dir, else
// $SERVERFIRST_ISTIOBIN, else $SERVERFIRST_TESTBIN, else
// <repo>/.cache/testbin, and checks that istio-world was built from the
// e2e/tools/istio sources of this checkout (the hash hack/testbins.sh
// stamps), so a test never runs yesterday's xDS client.
func LocateIstioBinaries(dir string) (IstioBinaries, error) {
	root, rerr := testenv.RepoRoot()
	for _, d := range []string{dir, os.Getenv(EnvIstioBin), os.Getenv(testenv.EnvTestBin)} {
		if d != "" {
			dir = d
			break
		}
	}
	if dir == "" {
		if rerr != nil {
			return IstioBinaries{}, fmt.Errorf("%w (%v; or set %s)", ErrIstioBinariesMissing, rerr, EnvIstioBin)
		}
		dir = filepath.Join(root, ".cache", "testbin")
	}
	b := IstioBinaries{
		PilotDiscovery: filepath.Join(dir, "pilot-discovery"),
		PilotAgent:     filepath.Join(dir, "pilot-agent"),
		IstioWorld:     filepath.Join(dir, "istio-world"),
	}
	for _, p := range []string{b.PilotDiscovery, b.PilotAgent, b.IstioWorld} {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			return IstioBinaries{}, fmt.Errorf("%w: no executable %s", ErrIstioBinariesMissing, p)
		}
	}
	if rerr == nil {
		want, err := istioWorldSourceHash(filepath.Join(root, "e2e", "tools", "istio"))
		if err != nil {
			return IstioBinaries{}, err
		}
		stamp, _ := os.ReadFile(filepath.Join(dir, ".stamp-istio-world"))
		if strings.TrimSpace(string(stamp)) != want {
			return IstioBinaries{}, fmt.Errorf("%w: %s was built from other e2e/tools/istio sources", ErrIstioBinariesMissing, b.IstioWorld)
		}
	}
	return b, nil
}

// istioWorldSourceHash is hack/testbins.sh's stamp: sha256 of the module's
// .go files, go.mod and go.sum concatenated in byte order of their paths.
func istioWorldSourceHash(dir string) (string, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if !d.IsDir() && (strings.HasSuffix(name, ".go") || name == "go.mod" || name == "go.sum") {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(paths)
	h := sha256.New()
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return "", err
		}
		h.Write(data)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
