package main

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestReadmeListsPackages: README's "Where things live" names every Go
// package of this module, one table row each, and names nothing that is
// not a package or a folder. The packages are found as go list ./... does:
// every directory with a .go file, without testdata, hidden folders and
// nested modules.
func TestReadmeListsPackages(t *testing.T) {
	const root = "../.."
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	begin := strings.Index(s, "\n## Where things live\n")
	if begin < 0 {
		t.Fatal(`README.md has no "## Where things live" section`)
	}
	section := s[begin+1:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	listed := map[string]bool{}
	row := regexp.MustCompile("(?m)^\\| `([^`]+)` \\|")
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		name := m[1]
		if listed[name] {
			t.Errorf("README lists %s twice", name)
		}
		listed[name] = true
		dir := filepath.Join(root, filepath.FromSlash(strings.TrimSuffix(name, "/")))
		if strings.HasSuffix(name, "/") {
			if st, err := os.Stat(dir); err != nil || !st.IsDir() {
				t.Errorf("README lists folder %s, which does not exist", name)
			}
		} else if !hasGoFiles(dir) {
			t.Errorf("README lists package %s, which has no Go files", name)
		}
	}
	var missing []string
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		name := d.Name()
		if rel != "." && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata" || name == "vendor") {
			return filepath.SkipDir
		}
		if rel != "." {
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil {
				return filepath.SkipDir // a module of its own
			}
		}
		if rel != "." && hasGoFiles(path) && !listed[filepath.ToSlash(rel)] {
			missing = append(missing, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(missing)
	for _, p := range missing {
		t.Errorf("README's \"Where things live\" does not list package %s: add a line", p)
	}
}

func hasGoFiles(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".go") {
			return true
		}
	}
	return false
}
