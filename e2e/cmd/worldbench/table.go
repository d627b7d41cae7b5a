package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	return s[len(s)/2]
}

func ms(d time.Duration) string { return d.Round(10 * time.Millisecond).String() }

func verdictList(v map[string]int) string {
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(v)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, v[k]))
	}
	return strings.Join(parts, ", ")
}

// printTable prints the runs side by side, then the goals computed from
// the seeding (namespaces with their own client config) and from the run
// of one probe pod alone (its start, the banner wait).
func printTable(out io.Writer, o options, rs []result) {
	sidecars, rules := (o.own+1)/2, o.own/2
	fmt.Fprintf(out, "world bench: %d namespaces x %d server-first Services (sniffed ports in front of sshd, %d sshd pod(s) per namespace with a sidecar), "+
		"%d namespace(s) with client config of their own (%d Sidecar, %d DestinationRule); scan -A -o json %s\n",
		o.namespaces, o.services, o.servers, o.own, sidecars, rules, strings.Join(o.scanArgs, " "))
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	row := func(label string, cell func(r result) string) {
		cells := []string{label}
		for _, r := range rs {
			cells = append(cells, cell(r))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	row("", func(r result) string { return r.name })
	row("probe pods created (API watch)", func(r result) string { return fmt.Sprint(r.probePods) })
	row("  the tool said (pods/port-forwards)", func(r result) string {
		if r.toolPods == "" {
			return "-"
		}
		return r.toolPods + "/" + r.toolForwards
	})
	row("  alive at once, peak", func(r result) string { return fmt.Sprint(r.peakPods) })
	row("  start to agent running, median/max", func(r result) string {
		if len(r.starts) == 0 {
			return "-"
		}
		return ms(median(r.starts)) + "/" + ms(slices.Max(r.starts))
	})
	row("pod creates (apiserver_request_total)", func(r result) string { return fmt.Sprint(r.metrics.podCreates) })
	row("port-forwards (proxy)", func(r result) string { return fmt.Sprint(r.requests.portForwards) })
	row("port-forwards (apiserver_request_total)", func(r result) string { return fmt.Sprint(r.metrics.portForwards) })
	row("API requests by the tool (proxy)", func(r result) string { return fmt.Sprint(r.requests.total) })
	row("  of which pod logs/watches", func(r result) string { return fmt.Sprintf("%d/%d", r.requests.logs, r.requests.watches) })
	row("API requests, all clients (apiserver)", func(r result) string { return fmt.Sprint(r.metrics.total) })
	row("wall", func(r result) string { return ms(r.wall) })
	row("banner wait (report)", func(r result) string { return ms(r.bannerWait) })
	row("exit code", func(r result) string { return fmt.Sprint(r.exit) })
	row("warnings", func(r result) string { return fmt.Sprint(r.warnings) })
	tw.Flush()
	for _, r := range rs {
		fmt.Fprintf(out, "verdicts %s: %s\n", r.name, verdictList(r.verdicts))
	}

	podGoal := 2 + 2*o.own
	var start, bannerWait time.Duration
	for _, r := range rs {
		if r.kind == "one" && len(r.starts) > 0 {
			start, bannerWait = median(r.starts), r.bannerWait
		}
	}
	wallGoal := 2 * (start + bannerWait)
	metOr := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	for _, r := range rs {
		switch r.kind {
		case "config":
			fmt.Fprintf(out, "goal %s: 0 probe pods: %s (%d)\n", r.name, metOr(r.probePods == 0), r.probePods)
		case "pods":
			fmt.Fprintf(out, "goal %s: probe pods <= 2 + 2 x %d = %d: %s (%d)\n", r.name, o.own, podGoal, metOr(r.probePods <= podGoal), r.probePods)
			if start > 0 {
				fmt.Fprintf(out, "goal %s: wall <= 2 x (one probe pod's start %s + banner wait %s) = %s: %s (%s)\n",
					r.name, ms(start), ms(bannerWait), ms(wallGoal), metOr(r.wall <= wallGoal), ms(r.wall))
			}
		}
	}
}
