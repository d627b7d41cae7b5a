package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	"github.com/serverfirst/kubectl-serverfirst/probe"
	"github.com/serverfirst/kubectl-serverfirst/probe/safetext"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// probeCommandOptions is the probe command: its flags, then the targets
// and the payload Validate reads from them for Run.
type probeCommandOptions struct {
	streams        genericiooptions.IOStreams
	args           []string
	files          []string
	timeout        time.Duration
	connectTimeout time.Duration
	limits         probeLimits
	send           string
	output         string

	// Set by Validate.
	targets []probe.Target
	payload []byte
}

const probeExample = `  # Does the server speak first? A MySQL, an SMTP and a Redis server:
  kubectl serverfirst probe 10.0.0.12:3306 mail.example.com:25 [::1]:6379

  # Many targets from a file (one HOST:PORT per line, # comments), 500 at once at most:
  kubectl serverfirst probe -f targets.txt --concurrency 500

  # Targets on stdin, JSON out for scripts:
  echo 127.0.0.1:22 | kubectl serverfirst probe -f - -o json

  # Wait 10s for a slow banner; give up connecting after 1s:
  kubectl serverfirst probe --timeout 10s --connect-timeout 1s db.internal:3306

  # Send bytes first (the only way anything is sent), e.g. ask Redis for PONG:
  kubectl serverfirst probe --send 'PING\r\n' 127.0.0.1:6379`

func newProbeCommand(streams genericiooptions.IOStreams) *cobra.Command {
	defaults := probe.DefaultOptions()
	f := &probeCommandOptions{streams: streams}
	cmd := &cobra.Command{
		Use:   "probe [flags] HOST:PORT...",
		Short: "Dial targets and report whether the server speaks first",
		Long: `Dial each HOST:PORT, wait for the server's first bytes, and report what happened.

No cluster and no kubeconfig are needed: this is the raw prober that the rest of
kubectl-serverfirst builds on, usable against any TCP endpoint you can reach.

A server-first protocol (MySQL/MariaDB, SMTP, FTP, POP3, IMAP, SSH, NATS, VNC,
telnet, ...) greets the client before the client says anything. Behind a mesh
sidecar that sniffs the protocol, that greeting never comes: the sidecar waits
for the client, the client waits for the server. Probe the port directly and
through the mesh and compare: "banner" directly but "silent" through the
sidecar is the deadlock.

Outcomes:
  banner           connected, and the server sent bytes first (shown sanitised)
  silent           connected, nothing arrived within --timeout (client-first
                   server, or a sidecar waiting for the client)
  closed / reset   connected, then the peer closed / reset without a byte
  refused          nothing listens there (connection refused)
  connect-timeout  no answer to the handshake within --connect-timeout
  error            anything else (DNS failure, no route, interrupted); see DETAIL

The probe is passive: it connects, reads at most 512 bytes (stopping after the
first line or burst), and closes normally. Nothing is sent unless you pass
--send (escapes \r \n \t \0 \\ \xNN, nothing else). Targets are HOST:PORT,
[IPv6]:PORT or NAME:PORT, no scheme; -f FILE reads one per line, skipping blank
lines and # comments (at a line's start or after a space or tab).

Many targets: a silent target costs a socket for the whole --timeout and no
CPU, so by default as many targets as the open-files limit allows are probed
at once (the soft limit is raised to the hard one first), and the time taken
is close to one --timeout. Politeness is kept per destination instead: at most
--per-ip probes at once to one IP and --per-ip-port to one IP:port (a host
name counts as given; the default 1 keeps a MySQL's max_connect_errors and an
SMTP server's per-client limits untouched), one connection per target, each
closed normally. On a
terminal, a run longer than a second shows a live count on stderr.

Output: -o table (default), json or yaml. The JSON is
  {"results":[{"target":..., "outcome":..., "connectMs":..., "firstByteMs":...,
   "banner":..., "protocol":..., "address":..., "dnsMs":..., "error":...}]}
in the order the targets were given; "banner" holds the exact bytes when they
are UTF-8, otherwise "bannerBase64" holds them and "banner" is a readable copy.

Exit status: 0 when every target was probed, whatever the outcomes; 1 for bad
input (malformed target, unreadable file, no targets, bad flag); 130 when
interrupted (Ctrl-C), after printing what finished.`,
		Example: probeExample,
		RunE: func(cmd *cobra.Command, args []string) error {
			f.Complete(args)
			if err := f.Validate(); err != nil {
				return err
			}
			return f.Run(cmd.Context())
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.files, "filename", "f", nil,
		"Read targets from FILE, one HOST:PORT per line (# comments); - reads stdin; repeatable")
	fl.DurationVar(&f.timeout, "timeout", defaults.BannerTimeout,
		"How long to wait for the server's first byte after connecting")
	fl.DurationVar(&f.connectTimeout, "connect-timeout", defaults.ConnectTimeout,
		"How long to wait for the TCP handshake (and, separately, for DNS)")
	f.limits.add(fl, "")
	fl.StringVar(&f.send, "send", "",
		`Bytes to send right after connecting (escapes \r \n \t \0 \\ \xNN): the only way anything is sent`)
	fl.StringVarP(&f.output, "output", "o", "table", "Output format: table, json or yaml")
	return cmd
}

// Complete takes the targets given as arguments.
func (f *probeCommandOptions) Complete(args []string) { f.args = args }

// Validate checks the flags and reads the targets: arguments first, then
// each -f file.
func (f *probeCommandOptions) Validate() error {
	switch f.output {
	case "table", "json", "yaml":
	default:
		return fmt.Errorf("unknown output format %q: want table, json or yaml", f.output)
	}
	if f.timeout <= 0 {
		return fmt.Errorf("--timeout must be positive, got %s", f.timeout)
	}
	if f.connectTimeout <= 0 {
		return fmt.Errorf("--connect-timeout must be positive, got %s", f.connectTimeout)
	}
	if err := f.limits.validate(); err != nil {
		return err
	}
	var err error
	if f.payload, err = unescapePayload(f.send); err != nil {
		return fmt.Errorf("--send: %w", err)
	}
	if f.targets, err = collectTargets(f.args, f.files, f.streams.In); err != nil {
		return err
	}
	if len(f.targets) == 0 {
		return errors.New("no targets: give HOST:PORT arguments or -f FILE (see --help)")
	}
	return nil
}

// Run probes the targets and prints the results.
func (f *probeCommandOptions) Run(ctx context.Context) error {
	streams, targets := f.streams, f.targets
	o := probe.DefaultOptions()
	o.BannerTimeout = f.timeout
	o.ConnectTimeout = f.connectTimeout
	f.limits.apply(&o, len(targets), streams.ErrOut)
	o.Payload = f.payload

	progress, stopProgress := liveProgress(streams.ErrOut, len(targets))
	o.Progress = progress
	results := probe.ProbeAll(ctx, targets, o)
	stopProgress()
	if err := renderProbeResults(streams.Out, f.output, results); err != nil {
		return err
	}
	if ctx.Err() != nil {
		unfinished := 0
		for _, r := range results {
			if r.Error == probe.CanceledError {
				unfinished++
			}
		}
		return &exitError{code: 130, err: fmt.Errorf("interrupted: %d of %d targets not probed", unfinished, len(results))}
	}
	return nil
}

// collectTargets reads arguments first, then each file in order, keeping
// duplicates: the output has one row per target given.
func collectTargets(args, files []string, stdin io.Reader) ([]probe.Target, error) {
	var targets []probe.Target
	for _, a := range args {
		t, err := probe.ParseTarget(a)
		if err != nil {
			return nil, err
		}
		targets = append(targets, t)
	}
	stdinUsed := false
	for _, name := range files {
		var r io.Reader
		if name == "-" {
			if stdinUsed {
				return nil, errors.New("-f - given twice: stdin can be read only once")
			}
			stdinUsed = true
			r, name = stdin, "stdin"
		} else {
			fh, err := os.Open(name)
			if err != nil {
				return nil, fmt.Errorf("cannot read targets: %w", err)
			}
			defer fh.Close()
			r = fh
		}
		ts, err := probe.ReadTargets(r, name)
		if err != nil {
			return nil, err
		}
		targets = append(targets, ts...)
	}
	return targets, nil
}

// unescapePayload turns the --send text into bytes. Only a small, explicit
// set of escapes is accepted so a typo fails loudly instead of sending
// something unintended.
func unescapePayload(s string) ([]byte, error) {
	var out []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			continue
		}
		if i+1 >= len(s) {
			return nil, errors.New(`trailing backslash: write \\ for a literal one`)
		}
		i++
		switch s[i] {
		case 'r':
			out = append(out, '\r')
		case 'n':
			out = append(out, '\n')
		case 't':
			out = append(out, '\t')
		case '0':
			out = append(out, 0)
		case '\\':
			out = append(out, '\\')
		case 'x':
			if i+2 >= len(s) {
				return nil, errors.New(`\x needs two hex digits, e.g. \x1b`)
			}
			v, err := strconv.ParseUint(s[i+1:i+3], 16, 8)
			if err != nil {
				return nil, fmt.Errorf(`\x%s is not two hex digits`, s[i+1:i+3])
			}
			out = append(out, byte(v))
			i += 2
		default:
			return nil, fmt.Errorf(`unknown escape \%c: use \r \n \t \0 \\ or \xNN`, s[i])
		}
	}
	return out, nil
}

// probeOutput is the JSON/YAML document: an object, so fields can be added
// next to "results" later without breaking readers.
type probeOutput struct {
	Results []probe.Result `json:"results"`
}

func renderProbeResults(w io.Writer, format string, results []probe.Result) error {
	if results == nil {
		results = []probe.Result{}
	}
	switch format {
	case "json":
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false) // banners like "220 <mx>" stay readable
		if err := enc.Encode(probeOutput{Results: results}); err != nil {
			return err
		}
		_, err := w.Write(safetext.JSONForTerminal(buf.Bytes()))
		return err
	case "yaml":
		// Through escaped JSON: the YAML parser behind sigs.k8s.io/yaml
		// rejects raw C1 controls, DEL and non-characters that a banner may
		// carry, but reads their \u escapes, and its emitter double-quotes
		// and escapes them again.
		js, err := json.Marshal(probeOutput{Results: results})
		if err != nil {
			return err
		}
		b, err := yaml.JSONToYAML([]byte(safetext.JSONForYAML(string(js))))
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	case "table":
		return renderProbeTable(w, results)
	}
	return fmt.Errorf("unknown output format %q: want table, json or yaml", format)
}

// detailWidth keeps a row on one line of a wide terminal; the full banner is
// in -o json.
const detailWidth = 60

func renderProbeTable(w io.Writer, results []probe.Result) error {
	var buf bytes.Buffer
	// The same kubectl-style table as the scan report.
	table := report.NewPlainTable(&buf)
	table.Header("TARGET", "OUTCOME", "PROTOCOL", "CONNECT", "FIRST BYTE", "DETAIL")
	for _, r := range results {
		if err := table.Append(probeRow(r)); err != nil {
			return err
		}
	}
	if err := table.Render(); err != nil {
		return err
	}
	// Column padding leaves trailing blanks that kubectl-style output has not.
	for line := range strings.Lines(buf.String()) {
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return err
		}
	}
	return nil
}

func probeRow(r probe.Result) []string {
	connect := formatMillis(&r.ConnectMs)
	if r.Outcome == probe.OutcomeError && r.Address == "" {
		connect = "-" // never dialled
	}
	var detail string
	switch {
	case r.Outcome == probe.OutcomeBanner:
		detail = probe.Describe(r.Bytes())
	case r.Error != "":
		detail = probe.Sanitize([]byte(r.Error))
	}
	// Sanitised text: cut it without splitting an escape such as \x1b.
	detail = cmp.Or(safetext.Cut(detail, detailWidth), "-")
	protocol := cmp.Or(r.Protocol, "-")
	return []string{probe.Sanitize([]byte(r.Target)), string(r.Outcome), protocol, connect,
		formatMillis(r.FirstByteMs), detail}
}

// formatMillis prints a duration in milliseconds at a precision that suits
// its size: 0.21ms, 3.4ms, 120ms, 2.50s.
func formatMillis(ms *float64) string {
	if ms == nil {
		return "-"
	}
	v := *ms
	switch {
	case v < 1:
		return strconv.FormatFloat(v, 'f', 2, 64) + "ms"
	case v < 100:
		return strconv.FormatFloat(v, 'f', 1, 64) + "ms"
	case v < 1000:
		return strconv.FormatFloat(v, 'f', 0, 64) + "ms"
	}
	return strconv.FormatFloat(v/1000, 'f', 2, 64) + "s"
}
