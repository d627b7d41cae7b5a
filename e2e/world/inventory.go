package world

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/serverfirst/kubectl-serverfirst/cluster"
	"github.com/serverfirst/kubectl-serverfirst/e2e/sidecar"
)

// InventoryWriter keeps a JSON cluster.Inventory file (the one every
// sidecar model in the world reads with --inventory) up to date with the
// API server: istiod's job, as far as the model is concerned. Each sync is
// one cluster.Load of all namespaces and an atomic replace of the file
// (sidecar.WriteInventoryFile: temp file + rename), whether or not
// anything changed, so "the file was rewritten after T" is a plain clock
// comparison. Syncs never overlap.
type InventoryWriter struct {
	clients cluster.Clients
	path    string
	kick    chan struct{}

	syncMu sync.Mutex // one Load+write at a time, so files land in order

	mu        sync.Mutex
	changed   chan struct{} // closed and replaced after every attempt
	synced    time.Time     // when the Load behind the file on disk started
	written   time.Time     // when that file was renamed into place
	gen       uint64        // files written
	lastErr   error
	lastTook  time.Duration
	warnCount int
}

// NewInventoryWriter returns a writer for path; nothing is written until
// Sync or Run.
func NewInventoryWriter(clients cluster.Clients, path string) *InventoryWriter {
	return &InventoryWriter{clients: clients, path: path, kick: make(chan struct{}, 1), changed: make(chan struct{})}
}

// Path is the inventory file.
func (w *InventoryWriter) Path() string { return w.path }

// RunInventoryWriter writes clients' inventory to path at once and then
// every `every` until ctx ends. A failure of the first sync is returned;
// later failures keep the previous file (as a sidecar keeps its last
// config when istiod is unreachable) and are retried on the next tick. It
// returns nil when ctx ends.
func RunInventoryWriter(ctx context.Context, clients cluster.Clients, path string, every time.Duration) error {
	w := NewInventoryWriter(clients, path)
	if err := w.Sync(ctx); err != nil {
		return err
	}
	w.Run(ctx, every)
	return nil
}

// Sync loads the inventory and replaces the file now.
func (w *InventoryWriter) Sync(ctx context.Context) error {
	w.syncMu.Lock()
	defer w.syncMu.Unlock()
	started := time.Now()
	inv, err := cluster.Load(ctx, w.clients, cluster.LoadOptions{})
	if err == nil {
		err = sidecar.WriteInventoryFile(w.path, inv)
	}
	written := time.Now()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.lastErr = fmt.Errorf("inventory writer: %w", err)
	} else {
		w.lastErr = nil
		w.synced, w.written, w.lastTook = started, written, written.Sub(started)
		w.gen++
		w.warnCount = len(inv.Warnings)
	}
	close(w.changed)
	w.changed = make(chan struct{})
	return w.lastErr
}

// Run syncs every `every` (and at once after Kick) until ctx ends. Errors
// are kept for LastError; the previous file stays.
func (w *InventoryWriter) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.kick:
		}
		_ = w.Sync(ctx)
	}
}

// Kick asks Run for a sync now instead of at the next tick.
func (w *InventoryWriter) Kick() {
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Synced is when the Load behind the file on disk started: every change
// the API server accepted before that instant is in the file. Zero before
// the first successful sync.
func (w *InventoryWriter) Synced() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.synced
}

// Written is when the file on disk was renamed into place. A sidecar whose
// lastSyncStarted is later than this serves it (or a newer one).
func (w *InventoryWriter) Written() time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.written
}

// Generation counts the files written (1 after the first sync).
func (w *InventoryWriter) Generation() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.gen
}

// LastError is the latest sync's error, nil after a successful one.
func (w *InventoryWriter) LastError() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastErr
}

// WaitSynced kicks a sync and waits until the file on disk reflects the API
// server as of `after` (Synced later than after). It returns when that
// file was written, to compare with the sidecars' lastSyncStarted. Needs Run
// (or another caller of Sync) to be going.
func (w *InventoryWriter) WaitSynced(ctx context.Context, after time.Time) (written time.Time, err error) {
	w.Kick()
	for {
		w.mu.Lock()
		synced, written, changed, lastErr := w.synced, w.written, w.changed, w.lastErr
		w.mu.Unlock()
		if synced.After(after) {
			return written, nil
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return time.Time{}, fmt.Errorf("inventory file %s not rewritten since %s: %w (last error: %v)",
					w.path, after.Format(time.RFC3339Nano), ctx.Err(), lastErr)
			}
			return time.Time{}, fmt.Errorf("inventory file %s not rewritten since %s: %w", w.path, after.Format(time.RFC3339Nano), ctx.Err())
		case <-changed:
		}
	}
}
