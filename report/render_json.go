package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"unicode/utf8"
)

// withEmptyArrays is r with every nil array the JSON shows made empty
// (the contract: arrays are never null). The findings are copied, so the
// caller's report is left as it was.
func withEmptyArrays(r Report) Report {
	r.Findings = append([]Finding(nil), r.Findings...)
	if r.Findings == nil {
		r.Findings = []Finding{}
	}
	if r.Warnings == nil {
		r.Warnings = []string{}
	}
	for i := range r.Findings {
		if r.Findings[i].Hints == nil {
			r.Findings[i].Hints = []string{}
		}
		if r.Findings[i].Evidence == nil {
			r.Findings[i].Evidence = []Evidence{}
		}
		if r.Findings[i].Fixes == nil {
			r.Findings[i].Fixes = []Fix{}
		}
	}
	return r
}

// writeJSON writes indented JSON; slices are never null. The bytes are
// exactly those of a json.Encoder with SetIndent("", "  ") (the tests
// compare them), but the findings, nearly all of the output, are written
// by appendFinding in blocks on every CPU and streamed as they are ready:
// one Encode of the whole report builds the compact document and then
// its indented copy, two buffers that grow (and are copied) a quarter at
// a time to tens of MB on a big cluster, and scans its own output again.
func writeJSON(w io.Writer, r Report) error {
	r = withEmptyArrays(r)
	findings := r.Findings
	// The rest of the report, with no findings, is small: the standard
	// encoder writes it, and the findings go where its "[]" is.
	r.Findings = []Finding{}
	var rest bytes.Buffer
	enc := json.NewEncoder(&rest)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return err
	}
	const emptyFindings = "{\n  \"findings\": []"
	if len(findings) == 0 || !bytes.HasPrefix(rest.Bytes(), []byte(emptyFindings)) || !finiteTimes(findings) {
		// (A NaN or infinite time fails here as it always did, before
		// anything is written.)
		r.Findings = findings
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.WriteString("{\n  \"findings\": [")
	if err := encodeFindings(bw, findings); err != nil {
		return err
	}
	bw.WriteString("\n  ]")
	bw.Write(rest.Bytes()[len(emptyFindings):])
	return bw.Flush()
}

// finiteTimes: no evidence holds a time JSON cannot express, the only
// value appendFinding could fail on.
func finiteTimes(findings []Finding) bool {
	finite := func(f float64) bool { return !math.IsInf(f, 0) && !math.IsNaN(f) }
	for i := range findings {
		for _, e := range findings[i].Evidence {
			if !finite(e.ConnectMs) || e.FirstByteMs != nil && !finite(*e.FirstByteMs) {
				return false
			}
		}
	}
	return true
}

// findingsBlock is how many findings one goroutine encodes at a time: a
// few hundred KB of JSON.
const findingsBlock = 128

// encodeFindings writes the elements of the report's "findings" array as
// the indenting encoder would: each on a new line at depth 2, separated by
// commas. Blocks of findings are encoded in parallel and written in order.
func encodeFindings(w *bufio.Writer, findings []Finding) error {
	type block struct {
		buf []byte
		err error
	}
	n := (len(findings) + findingsBlock - 1) / findingsBlock
	done := make([]chan block, n)
	for i := range done {
		done[i] = make(chan block, 1)
	}
	workers := min(runtime.GOMAXPROCS(0), n)
	// A few buffers hold every block in turn: a worker takes one before
	// it takes the next block (so the block the writer waits for always
	// has one), and the writer gives it back once written.
	free := make(chan []byte, 2*workers)
	for range cap(free) {
		free <- nil
	}
	var next atomic.Int64
	stop := make(chan struct{})
	defer close(stop)
	for range workers {
		go func() {
			for {
				var b block
				select {
				case b.buf = <-free:
				case <-stop:
					return
				}
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				lo, hi := i*findingsBlock, min((i+1)*findingsBlock, len(findings))
				for k := lo; k < hi && b.err == nil; k++ {
					if k > 0 {
						b.buf = append(b.buf, ',')
					}
					b.buf = append(b.buf, "\n    "...)
					b.buf, b.err = appendFinding(b.buf, &findings[k])
				}
				select {
				case done[i] <- b:
				case <-stop:
					return
				}
			}
		}()
	}
	for i := range done {
		b := <-done[i]
		if b.err != nil {
			return b.err
		}
		if _, err := w.Write(b.buf); err != nil {
			return err
		}
		free <- b.buf[:0]
	}
	return nil
}

// appendFinding appends f as json.MarshalIndent(f, "    ", "  ") would,
// with the same escaping (HTML characters, U+2028/2029, invalid UTF-8)
// and number format: encoding/json finds the fields by reflection and then
// re-scans its own output to indent it, five times the work. Its output
// for every field is compared with encoding/json's in the tests
// (TestAppendFindingMatchesEncodingJSON), so a field added to Finding,
// Evidence, Fix or PathVerdict without a line here fails them.
func appendFinding(b []byte, f *Finding) ([]byte, error) {
	o := jsonObject{b: b, depth: 2}
	o.open()
	o.str("kind", f.Kind)
	o.str("namespace", f.Namespace)
	o.str("name", f.Name)
	o.int("port", int64(f.Port))
	o.strOmit("portName", f.PortName)
	o.strOmit("targetPort", f.TargetPort)
	o.str("protocol", f.Protocol)
	o.str("protocolSource", f.ProtocolSource)
	o.strOmit("appProtocol", f.AppProtocol)
	if f.AppProtocolTrap {
		o.bool("appProtocolTrap", true)
	}
	o.stringsOmit("hosts", f.Hosts)
	o.bool("serverInMesh", f.ServerInMesh)
	o.strOmit("mtlsMode", f.MTLSMode)
	o.strings("hints", f.Hints)
	o.stringsOmit("collidesWith", f.CollidesWith)
	if f.CollidesWithTotal > 0 {
		o.int("collidesWithTotal", int64(f.CollidesWithTotal))
	}
	o.str("verdict", string(f.Verdict))
	o.str("code", string(f.Code))
	o.strOmit("scenario", string(f.Scenario))
	if len(f.Paths) > 0 {
		o.array("paths", len(f.Paths), func(i int, e *jsonObject) {
			p := &f.Paths[i]
			e.open()
			e.str("scenario", string(p.Scenario))
			e.str("verdict", string(p.Verdict))
			e.str("code", string(p.Code))
			e.str("reason", p.Reason)
			e.strOmit("clients", p.Clients)
			e.close()
		}, f.Paths == nil)
	}
	o.str("reason", f.Reason)
	o.array("evidence", len(f.Evidence), func(i int, e *jsonObject) {
		ev := &f.Evidence[i]
		e.open()
		e.str("vantage", string(ev.Vantage))
		e.strOmit("address", ev.Address)
		e.str("outcome", ev.Outcome)
		e.float("connectMs", ev.ConnectMs)
		if ev.FirstByteMs != nil {
			e.float("firstByteMs", *ev.FirstByteMs)
		}
		e.strOmit("banner", ev.Banner)
		e.strOmit("protocol", ev.Protocol)
		e.strOmit("error", ev.Error)
		if ev.InMesh != nil {
			e.bool("inMesh", *ev.InMesh)
		}
		e.strOmit("proxy", ev.Proxy)
		e.strOmit("side", ev.Side)
		e.strOmit("scenario", string(ev.Scenario))
		e.strOmit("listener", ev.Listener)
		e.stringsOmit("inspectors", ev.Inspectors)
		if ev.TimeoutMs != nil {
			e.int("timeoutMs", *ev.TimeoutMs)
		}
		e.strOmit("onTimeout", ev.OnTimeout)
		e.strOmit("chain", ev.Chain)
		e.strOmit("cluster", ev.Cluster)
		e.close()
	}, f.Evidence == nil)
	o.array("fixes", len(f.Fixes), func(i int, e *jsonObject) {
		fix := &f.Fixes[i]
		e.open()
		e.str("type", fix.Type)
		e.strOmit("scenario", string(fix.Scenario))
		e.str("title", fix.Title)
		e.str("why", fix.Why)
		e.strOmit("manifest", fix.Manifest)
		e.strOmit("command", fix.Command)
		e.stringsOmit("notes", fix.Notes)
		if fix.WeakensSecurity {
			e.bool("weakensSecurity", true)
		}
		if fix.AlternativeOnly {
			e.bool("alternativeOnly", true)
		}
		if c := fix.Change; c != nil {
			e.object("change", func(o *jsonObject) {
				o.str("apiVersion", c.APIVersion)
				o.str("kind", c.Kind)
				o.str("namespace", c.Namespace)
				o.str("name", c.Name)
				if c.Create {
					o.bool("create", true)
				}
				o.strOmit("port", c.Port)
				o.strMap("set", c.Set)
				o.strMap("was", c.Was)
				o.stringsOmit("addresses", c.Addresses)
			})
		}
		e.close()
	}, f.Fixes == nil)
	o.stringsOmit("notes", f.Notes)
	o.strOmit("source", f.Source)
	if f.SourceLine != 0 {
		o.int("sourceLine", int64(f.SourceLine))
	}
	o.strOmit("sourceTemplate", f.SourceTemplate)
	o.close()
	if o.err != nil {
		// What encoding/json says about it (a NaN or infinite time).
		if _, err := json.Marshal(f); err != nil {
			return b, err
		}
		return b, o.err
	}
	return o.b, nil
}

// jsonObject writes one indented JSON object (or array) at a depth: two
// spaces per level, members on their own lines, "{}" and "[]" when empty.
type jsonObject struct {
	b       []byte
	depth   int
	members int
	err     error
}

const jsonSpaces = "                                                                "

func (o *jsonObject) newline(depth int) {
	o.b = append(o.b, '\n')
	for n := 2 * depth; n > 0; n -= len(jsonSpaces) {
		o.b = append(o.b, jsonSpaces[:min(n, len(jsonSpaces))]...)
	}
}

func (o *jsonObject) open() { o.b = append(o.b, '{'); o.members = 0 }

func (o *jsonObject) close() {
	if o.members > 0 {
		o.newline(o.depth)
	}
	o.b = append(o.b, '}')
}

// key starts a member: the comma after the previous one, the new line,
// the quoted name (a plain ASCII constant) and ": ".
func (o *jsonObject) key(name string) {
	o.member()
	o.b = append(o.b, '"')
	o.b = append(o.b, name...)
	o.b = append(o.b, '"', ':', ' ')
}

func (o *jsonObject) str(name, v string) {
	o.key(name)
	o.b = appendJSONString(o.b, v)
}

func (o *jsonObject) strOmit(name, v string) {
	if v != "" {
		o.str(name, v)
	}
}

func (o *jsonObject) int(name string, v int64) {
	o.key(name)
	o.b = strconv.AppendInt(o.b, v, 10)
}

func (o *jsonObject) bool(name string, v bool) {
	o.key(name)
	o.b = strconv.AppendBool(o.b, v)
}

// float is encoding/json's float64 format: like %g but with the exponent
// cutoffs of ES6 (1e-6, 1e21) and no zero padding of the exponent.
func (o *jsonObject) float(name string, f float64) {
	o.key(name)
	if math.IsInf(f, 0) || math.IsNaN(f) {
		o.err = fmt.Errorf("json: unsupported value: %v", f)
		o.b = append(o.b, '0')
		return
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	o.b = strconv.AppendFloat(o.b, f, format, -1, 64)
	if format == 'e' {
		if n := len(o.b); n >= 4 && o.b[n-4] == 'e' && o.b[n-3] == '-' && o.b[n-2] == '0' {
			o.b[n-2] = o.b[n-1]
			o.b = o.b[:n-1]
		}
	}
}

// array writes a member holding n elements, each written by elem at the
// next depth; null when isNil (a nil slice), [] when empty.
func (o *jsonObject) array(name string, n int, elem func(i int, e *jsonObject), isNil bool) {
	o.key(name)
	if isNil {
		o.b = append(o.b, "null"...)
		return
	}
	if n == 0 {
		o.b = append(o.b, '[', ']')
		return
	}
	o.b = append(o.b, '[')
	e := jsonObject{b: o.b, depth: o.depth + 2}
	for i := range n {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.newline(o.depth + 2)
		elem(i, &e)
	}
	o.b = e.b
	if e.err != nil {
		o.err = e.err
	}
	o.newline(o.depth + 1)
	o.b = append(o.b, ']')
}

// member starts a member: the comma after the previous one, the new line.
func (o *jsonObject) member() {
	if o.members > 0 {
		o.b = append(o.b, ',')
	}
	o.members++
	o.newline(o.depth + 1)
}

// object writes a member holding one object, its members written by fill.
func (o *jsonObject) object(name string, fill func(e *jsonObject)) {
	o.key(name)
	e := jsonObject{b: o.b, depth: o.depth + 1}
	e.open()
	fill(&e)
	e.close()
	o.b = e.b
	if e.err != nil {
		o.err = e.err
	}
}

// strMap writes a map of strings with its keys sorted, as encoding/json
// does; nothing when it is empty (omitempty).
func (o *jsonObject) strMap(name string, m map[string]string) {
	if len(m) == 0 {
		return
	}
	o.object(name, func(e *jsonObject) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			e.member()
			e.b = appendJSONString(e.b, k)
			e.b = append(e.b, ':', ' ')
			e.b = appendJSONString(e.b, m[k])
		}
	})
}

// stringsOmit is strings for a field with omitempty.
func (o *jsonObject) stringsOmit(name string, list []string) {
	if len(list) > 0 {
		o.strings(name, list)
	}
}

func (o *jsonObject) strings(name string, list []string) {
	o.array(name, len(list), func(i int, e *jsonObject) { e.b = appendJSONString(e.b, list[i]) }, list == nil)
}

// appendJSONString is encoding/json's string encoding with HTML escaping
// (its default): <, > and & as \u003c, \u003e, \u0026, other control
// bytes as \u00XX but for \b \f \n \r \t, invalid UTF-8 as \ufffd, and
// U+2028/U+2029 escaped.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '\\', '"':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
