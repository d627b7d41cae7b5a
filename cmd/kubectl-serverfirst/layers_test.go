package main

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// layers is the product's package graph, lowest first: data flows
// inventory -> targets -> probes -> findings -> rendering, and a package
// imports only packages of a lower layer (README, "Where things live").
var layers = [][]string{
	{"probe/safetext", "cluster/proxyconfig"},
	{"probe"},
	{"internal/target"},
	{"cluster"},
	{"cluster/vantage", "report"},
	{"report/publish"},
	{"scan"},
	{"cmd/kubectl-serverfirst"},
}

// TestImportsPointDown reads the imports of every non-test file of the
// product's packages and fails on one that points sideways or up, or on a
// product package the table above does not place.
func TestImportsPointDown(t *testing.T) {
	const root, module = "../..", "github.com/serverfirst/kubectl-serverfirst/"
	layerOf := map[string]int{}
	for i, l := range layers {
		for _, p := range l {
			layerOf[p] = i
		}
	}
	for pkg, layer := range layerOf {
		files, err := filepath.Glob(filepath.Join(root, pkg, "*.go"))
		if err != nil || len(files) == 0 {
			t.Errorf("%s: no Go files (%v): update the layers", pkg, err)
			continue
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range file.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				dep, ok := strings.CutPrefix(path, module)
				if !ok {
					continue
				}
				l, placed := layerOf[dep]
				switch {
				case strings.HasPrefix(dep, "internal/testenv") || strings.HasPrefix(dep, "e2e/"):
					t.Errorf("%s imports test tooling %s", f, dep)
				case !placed:
					t.Errorf("%s imports %s, which has no layer here", f, dep)
				case l >= layer:
					t.Errorf("%s (layer %d) imports %s (layer %d): imports must point down", f, layer, dep, l)
				}
			}
		}
	}
	// Every product package is placed.
	for _, dir := range []string{"cluster", "report", "internal", "scan", "probe"} {
		filepath.WalkDir(filepath.Join(root, dir), func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.IsDir() || d.Name() == "testdata" {
				if d != nil && d.IsDir() && d.Name() == "testdata" {
					return filepath.SkipDir
				}
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if rel == "internal" || rel == "internal/testenv" {
				return nil
			}
			if gos, _ := filepath.Glob(filepath.Join(p, "*.go")); len(gos) > 0 {
				if _, ok := layerOf[filepath.ToSlash(rel)]; !ok {
					t.Errorf("package %s has no layer in layers_test.go", rel)
				}
			}
			return nil
		})
	}
}
