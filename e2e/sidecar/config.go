package sidecar

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
)

// ConfigSource yields the mesh as the sidecar should see it. A real sidecar
// gets it from istiod over xDS; the model reads the same objects itself.
// Load is called once per refresh; it must return a fresh value the caller
// may keep.
type ConfigSource interface {
	Load(ctx context.Context) (*cluster.Inventory, error)
	// String names the source in status and logs.
	String() string
}

// StaticSource serves an Inventory held in memory; Set replaces it, as an
// apply against the API server would.
type StaticSource struct {
	mu  sync.Mutex
	inv cluster.Inventory
}

// NewStaticSource returns a source serving a copy of inv.
func NewStaticSource(inv cluster.Inventory) *StaticSource {
	s := &StaticSource{}
	s.Set(inv)
	return s
}

// Set replaces the inventory the next Load returns.
func (s *StaticSource) Set(inv cluster.Inventory) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inv = inv
}

func (s *StaticSource) Load(context.Context) (*cluster.Inventory, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// A JSON round trip is a deep copy, so a later Set cannot change a
	// generation the model is serving.
	return cloneInventory(&s.inv)
}

func (s *StaticSource) String() string { return "static inventory" }

// FileSource reads an Inventory from a JSON file (the encoding/json form of
// cluster.Inventory) on every Load. Writers should replace the file by
// rename so a Load never sees half of it.
type FileSource struct{ Path string }

func (f FileSource) Load(context.Context) (*cluster.Inventory, error) {
	b, err := os.ReadFile(f.Path)
	if err != nil {
		return nil, err
	}
	var inv cluster.Inventory
	if err := json.Unmarshal(b, &inv); err != nil {
		return nil, fmt.Errorf("%s: not a JSON cluster.Inventory: %w", f.Path, err)
	}
	return &inv, nil
}

func (f FileSource) String() string { return "file " + f.Path }

// FuncSource adapts a loader such as cluster.Load to ConfigSource.
type FuncSource struct {
	Name string
	Fn   func(ctx context.Context) (*cluster.Inventory, error)
}

func (f FuncSource) Load(ctx context.Context) (*cluster.Inventory, error) { return f.Fn(ctx) }
func (f FuncSource) String() string                                       { return f.Name }

func cloneInventory(inv *cluster.Inventory) (*cluster.Inventory, error) {
	b, err := json.Marshal(inv)
	if err != nil {
		return nil, err
	}
	var out cluster.Inventory
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// WriteInventoryFile writes inv where a FileSource reads it, atomically.
func WriteInventoryFile(path string, inv *cluster.Inventory) error {
	b, err := json.MarshalIndent(inv, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
