package main

import (
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/serverfirst/kubectl-serverfirst/probe"
)

// probeLimits are the flags that bound how many probes run at once, shared
// by probe, scan and agent.
type probeLimits struct {
	concurrency, perIP, perIPPort int
}

// add defines the flags; prefix starts each help text (scan's say "With
// probes: ").
func (l *probeLimits) add(fl *pflag.FlagSet, prefix string) {
	d := probe.DefaultOptions()
	fl.IntVar(&l.concurrency, "concurrency", 0,
		prefix+"How many targets to probe at once, at most; 0 = as many as the open-files limit allows")
	fl.IntVar(&l.perIP, "per-ip", d.PerIP, prefix+"How many probes at once to one destination IP")
	fl.IntVar(&l.perIPPort, "per-ip-port", d.PerIPPort,
		prefix+"How many probes at once to one IP:port")
}

func (l *probeLimits) validate() error {
	switch {
	case l.concurrency < 0:
		return fmt.Errorf("--concurrency must be 0 (automatic) or more, got %d", l.concurrency)
	case l.perIP < 1:
		return fmt.Errorf("--per-ip must be at least 1, got %d", l.perIP)
	case l.perIPPort < 1:
		return fmt.Errorf("--per-ip-port must be at least 1, got %d", l.perIPPort)
	}
	return nil
}

// apply sets the limits on o; an explicit --concurrency over the open-files
// limit is lowered with a warning on warn.
func (l *probeLimits) apply(o *probe.Options, targets int, warn io.Writer) {
	o.Concurrency = capConcurrency(l.concurrency, targets, warn)
	o.PerIP, o.PerIPPort = l.perIP, l.perIPPort
}

// capConcurrency keeps the sockets in flight under the open-files limit, so
// a large --concurrency degrades to queueing instead of EMFILE errors that
// would look like failed targets. 0 (the prober's default) is already under it.
func capConcurrency(want, targets int, warn io.Writer) int {
	limit, ok := probe.OpenFileLimit()
	if !ok || want <= limit-probe.FileReserve || targets <= limit-probe.FileReserve {
		return want
	}
	capped := max(1, limit-probe.FileReserve)
	fmt.Fprintf(warn, "warning: --concurrency %d exceeds the open-files limit (%d); using %d (raise it with ulimit -n)\n",
		want, limit, capped)
	return capped
}

// progressAfter is how long a run goes before it shows a live count.
const progressAfter = time.Second

// liveProgress shows "probed N/TOTAL" on w, rewritten in place, when w is a
// terminal and the run lasts over progressAfter; on anything else it shows
// nothing. It returns the callback for probe.Options.Progress and a stop
// function that erases the line.
func liveProgress(w io.Writer, total int) (progress func(int), stop func()) {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return nil, func() {}
	}
	var finished atomic.Int64
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		tick := time.NewTicker(progressAfter / 4)
		defer tick.Stop()
		start, shown := time.Now(), false
		for {
			select {
			case <-done:
				if shown {
					fmt.Fprint(w, "\r\033[K")
				}
				return
			case <-tick.C:
				if time.Since(start) >= progressAfter {
					fmt.Fprintf(w, "\rprobed %d/%d", finished.Load(), total)
					shown = true
				}
			}
		}
	}()
	return func(n int) { finished.Store(int64(n)) }, func() { close(done); <-ended }
}
