package probe

import (
	"net/netip"
	"sync"
)

// dispatcher hands ProbeAll's targets to its workers in input order,
// holding a target back while its destination IP, or its IP:port, already
// has as many probes in flight as the politeness limits allow; later
// targets for other destinations go ahead meanwhile.
//
// A worker that finds nothing to start simply ends: every held-back target
// waits for a probe in flight at its own destination, and the worker of that
// probe comes back for it when it finishes. So no worker ever sleeps here,
// and ProbeAll needs no condition variable.
type dispatcher struct {
	mu      sync.Mutex
	targets []Target
	perIP   int
	perPort int
	next    int // first target not looked at yet
	dests   map[string]*destination
	ready   []*destination // destinations with held targets that a finished probe may have freed
}

// destination is one host (an IP literal, or a name as given: names are
// not resolved before dispatch) and what is in flight there.
type destination struct {
	inFlight int
	ports    map[int]int // probes in flight per port
	held     []int       // held-back target indices, in input order
	queued   bool        // in dispatcher.ready
}

func newDispatcher(targets []Target, perIP, perPort int) *dispatcher {
	return &dispatcher{targets: targets, perIP: perIP, perPort: perPort, dests: map[string]*destination{}}
}

// take returns the next target index to probe, or -1 when there is nothing
// to start now (see dispatcher for why the caller may then stop).
func (d *dispatcher) take() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.ready) > 0 {
		dst := d.ready[0]
		d.ready = d.ready[1:]
		dst.queued = false
		if i := d.startHeld(dst); i >= 0 {
			if len(dst.held) > 0 && dst.inFlight < d.perIP {
				d.enqueue(dst)
			}
			return i
		}
	}
	for d.next < len(d.targets) {
		i := d.next
		d.next++
		t := d.targets[i]
		dst := d.destination(t.Host)
		if d.room(dst, t.Port) {
			d.start(dst, t.Port)
			return i
		}
		dst.held = append(dst.held, i)
	}
	return -1
}

// finish records that target i's probe is over.
func (d *dispatcher) finish(i int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.targets[i]
	dst := d.dests[hostKey(t.Host)]
	dst.inFlight--
	dst.ports[t.Port]--
	if len(dst.held) > 0 {
		d.enqueue(dst)
	}
}

func (d *dispatcher) startHeld(dst *destination) int {
	for j, i := range dst.held {
		if dst.inFlight >= d.perIP {
			return -1
		}
		if port := d.targets[i].Port; d.room(dst, port) {
			dst.held = append(dst.held[:j], dst.held[j+1:]...)
			d.start(dst, port)
			return i
		}
	}
	return -1
}

func (d *dispatcher) room(dst *destination, port int) bool {
	return dst.inFlight < d.perIP && dst.ports[port] < d.perPort
}

func (d *dispatcher) start(dst *destination, port int) {
	dst.inFlight++
	dst.ports[port]++
}

func (d *dispatcher) enqueue(dst *destination) {
	if !dst.queued {
		dst.queued = true
		d.ready = append(d.ready, dst)
	}
}

func (d *dispatcher) destination(host string) *destination {
	key := hostKey(host)
	dst := d.dests[key]
	if dst == nil {
		dst = &destination{ports: map[int]int{}}
		d.dests[key] = dst
	}
	return dst
}

// hostKey makes the spellings of one IP ("::ffff:10.0.0.1" and "10.0.0.1",
// "0:0::1" and "::1") one destination.
func hostKey(host string) string {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().String()
	}
	return host
}
