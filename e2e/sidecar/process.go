package sidecar

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// ProcessOptions describe what the sidecar-model binary does in a pod.
type ProcessOptions struct {
	// Capture, when set, is installed first, as istio-init would; nil when
	// something else (an init container) already did it.
	Capture *Capture
	// UID and GID are what the process becomes after capture when started as
	// root; the capture rules exempt them.
	UID, GID int
	Model    Options
}

// RunProcess installs capture, drops privileges and runs the model until ctx
// ends. SIGHUP asks for an immediate config reload.
func RunProcess(ctx context.Context, p ProcessOptions) error {
	if p.Capture != nil {
		if os.Geteuid() != 0 {
			return fmt.Errorf("sidecar: installing capture rules needs root (NET_ADMIN); running as uid %d", os.Geteuid())
		}
		if err := p.Capture.Apply(ctx, ""); err != nil {
			return err
		}
	}
	parent := os.Getppid()
	if err := DropPrivileges(p.UID, p.GID); err != nil {
		return fmt.Errorf("sidecar: %w", err)
	}
	// Dropping privileges clears the parent-death signal the node agent
	// set, so a SIGKILLed agent would leave the model running: watch the
	// parent instead, and end with it (as a container ends with its pod).
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if parent > 1 {
		go func() {
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					if os.Getppid() != parent {
						cancel()
						return
					}
				}
			}
		}()
	}
	m, err := New(p.Model)
	if err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				m.Refresh()
			}
		}
	}()
	return m.Run(ctx)
}
