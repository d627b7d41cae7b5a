package publish

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/serverfirst/kubectl-serverfirst/internal/target"
	"github.com/serverfirst/kubectl-serverfirst/report"
)

// A sharded scan splits the targets between N processes (the pods of an
// Indexed Job): every target belongs to exactly one shard, by a stable
// hash of its key. Each shard probes its own targets only, keeps only
// their findings, and stores them with its raw observations under
// shard-<i>.json; the shard that completes the set merges them into the
// one report.
//
// The merge is a re-judgment in effect: the verdict engine (report.Build)
// reads observations only for the finding of their own target, so the
// finding a shard built from its own observations is the finding a
// single scan would build from all of them (TestMergeEqualsSingleScan).

// ShardOf is the shard (0..n-1) that owns a target: FNV-1a of the key's
// String form, mod n. Stable across processes, versions and runs.
func ShardOf(k target.TargetKey, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(k.String()))
	return int(h.Sum32() % uint32(n))
}

// FilterPlan keeps the probe tasks that shard index of count owns.
func FilterPlan(tasks []target.ProbeTask, index, count int) []target.ProbeTask {
	if count <= 1 {
		return tasks
	}
	var out []target.ProbeTask
	for _, t := range tasks {
		if ShardOf(t.Key, count) == index {
			out = append(out, t)
		}
	}
	return out
}

// ParseShard reads "INDEX/COUNT" (0-based index).
func ParseShard(s string) (index, count int, err error) {
	i, c, ok := strings.Cut(s, "/")
	index, err1 := strconv.Atoi(strings.TrimSpace(i))
	count, err2 := strconv.Atoi(strings.TrimSpace(c))
	if !ok || err1 != nil || err2 != nil || count < 1 || index < 0 || index >= count {
		return 0, 0, fmt.Errorf("shard %q: want INDEX/COUNT with 0 <= INDEX < COUNT, e.g. 0/3", s)
	}
	return index, count, nil
}

// Shard is what one shard stores: its part of the report and the raw
// observations it rests on. Observations live only here, never in the
// report schema.
type Shard struct {
	// Run names the scan the shard belongs to (the Job's name): only
	// shards of one run are merged automatically.
	Run   string `json:"run,omitempty"`
	Index int    `json:"shard"`
	Count int    `json:"shards"`
	// Time is when the shard finished (RFC 3339).
	Time         string               `json:"time,omitempty"`
	Report       report.Report        `json:"report"`
	Observations []target.Observation `json:"observations"`
}

// NewShard keeps what shard index of count owns out of a full scan's
// report (built from this shard's observations) and its observations.
func NewShard(run string, index, count int, r report.Report, obs []target.Observation, now time.Time) Shard {
	sh := Shard{Run: run, Index: index, Count: count, Time: now.UTC().Format(time.RFC3339), Report: r, Observations: []target.Observation{}}
	sh.Report.Findings = nil
	for _, f := range r.Findings {
		if ShardOf(f.Key(), count) == index {
			sh.Report.Findings = append(sh.Report.Findings, f)
		}
	}
	sh.Report.Summary = summarize(sh.Report.Findings)
	for _, o := range obs {
		if ShardOf(o.Target, count) == index {
			sh.Observations = append(sh.Observations, o)
		}
	}
	return sh
}

func summarize(fs []report.Finding) map[report.Verdict]int {
	m := map[report.Verdict]int{}
	for _, f := range fs {
		m[f.Verdict]++
	}
	return m
}

// DecodeShard reads a shard payload, or a plain report (scan -o json of
// one shard), which becomes a shard of unknown index (-1).
func DecodeShard(b []byte) (Shard, error) {
	var probeKeys map[string]json.RawMessage
	if err := json.Unmarshal(b, &probeKeys); err != nil {
		return Shard{}, err
	}
	if _, ok := probeKeys["report"]; ok {
		var sh Shard
		if err := json.Unmarshal(b, &sh); err != nil {
			return Shard{}, err
		}
		if sh.Count < 1 || sh.Index < 0 || sh.Index >= sh.Count {
			return Shard{}, fmt.Errorf("shard %d of %d: out of range", sh.Index, sh.Count)
		}
		return sh, nil
	}
	if _, ok := probeKeys["findings"]; !ok {
		return Shard{}, errors.New("neither a shard payload (report, observations) nor a report (findings)")
	}
	var r report.Report
	if err := json.Unmarshal(b, &r); err != nil {
		return Shard{}, err
	}
	return Shard{Index: -1, Report: r}, nil
}

// Merge joins shards into one report: the union of their findings (where
// two shards have the same target, the one that owns it, else the one
// with evidence), warnings deduplicated, the summary recounted, worst
// first. Shards missing from the set, or from different runs, are said
// in the warnings.
func Merge(shards []Shard) (report.Report, error) {
	if len(shards) == 0 {
		return report.Report{}, errors.New("merge: no shards")
	}
	shards = append([]Shard(nil), shards...)
	sort.SliceStable(shards, func(a, b int) bool { return shards[a].Index < shards[b].Index })
	count := 0
	seen := map[int]bool{}
	runs := map[string]bool{}
	for _, s := range shards {
		if s.Index < 0 {
			continue
		}
		if count == 0 {
			count = s.Count
		} else if s.Count != count {
			return report.Report{}, fmt.Errorf("merge: shards of different splits (%d and %d shards)", count, s.Count)
		}
		if seen[s.Index] {
			return report.Report{}, fmt.Errorf("merge: shard %d of %d given twice", s.Index, count)
		}
		seen[s.Index] = true
		runs[s.Run] = true
	}
	type pick struct {
		f     report.Finding
		owner bool
	}
	picked := map[target.TargetKey]*pick{}
	var order []target.TargetKey
	var warnings []string
	warned := map[string]bool{}
	warn := func(w string) {
		if !warned[w] {
			warned[w] = true
			warnings = append(warnings, w)
		}
	}
	out := report.Report{Mesh: shards[0].Report.Mesh, Static: true, SchemaVersion: shards[0].Report.SchemaVersion}
	for _, s := range shards {
		out.Static = out.Static && s.Report.Static
		// A shard of an older schema may lack fields the merge then lacks.
		out.SchemaVersion = min(out.SchemaVersion, s.Report.SchemaVersion)
		for _, w := range s.Report.Warnings {
			warn(w)
		}
		for _, f := range s.Report.Findings {
			k := f.Key()
			owner := s.Index >= 0 && ShardOf(k, s.Count) == s.Index
			p, ok := picked[k]
			switch {
			case !ok:
				picked[k] = &pick{f, owner}
				order = append(order, k)
			case p.owner:
			case owner, len(p.f.Evidence) == 0 && len(f.Evidence) > 0:
				*p = pick{f, owner}
			}
		}
	}
	if count > 0 {
		var missing []string
		for i := 0; i < count; i++ {
			if !seen[i] {
				missing = append(missing, strconv.Itoa(i))
			}
		}
		if len(missing) > 0 {
			warn(fmt.Sprintf("merged %d of %d shards: shard(s) %s missing, so their targets are not in this report", count-len(missing), count, strings.Join(missing, ", ")))
		}
	}
	if len(runs) > 1 {
		names := slices.Sorted(maps.Keys(runs))
		warn(fmt.Sprintf("merged shards of different runs (%s): findings may come from different times", strings.Join(names, ", ")))
	}
	for _, k := range order {
		out.Findings = append(out.Findings, picked[k].f)
	}
	report.SortFindings(out.Findings)
	out.Summary = summarize(out.Findings)
	out.Warnings = warnings
	return out, nil
}

// ShardKey is the ConfigMap key of shard i (binaryData adds ".gz").
func ShardKey(i int) string { return "shard-" + strconv.Itoa(i) + ".json" }

var shardKeyRE = regexp.MustCompile(`^shard-(\d+)\.json(\.gz)?$`)

// storedShard is one shard key found in a ConfigMap.
type storedShard struct {
	key, binaryKey string
	shard          Shard
	err            error
}

func readShards(cm *corev1.ConfigMap) []storedShard {
	var out []storedShard
	add := func(key string, raw []byte, gz bool) {
		st := storedShard{key: key}
		if gz {
			st.binaryKey, st.key = key, ""
			var err error
			if raw, err = gunzip(raw); err != nil {
				st.err = err
			}
		}
		if st.err == nil {
			st.shard, st.err = DecodeShard(raw)
		}
		out = append(out, st)
	}
	for _, k := range slices.Sorted(maps.Keys(cm.Data)) {
		if m := shardKeyRE.FindStringSubmatch(k); m != nil && m[2] == "" {
			add(k, []byte(cm.Data[k]), false)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(cm.BinaryData)) {
		if m := shardKeyRE.FindStringSubmatch(k); m != nil && m[2] != "" {
			add(k, cm.BinaryData[k], true)
		}
	}
	return out
}

func (st storedShard) remove(cm *corev1.ConfigMap) {
	if st.key != "" {
		delete(cm.Data, st.key)
	}
	if st.binaryKey != "" {
		delete(cm.BinaryData, st.binaryKey)
	}
}

func (st storedShard) name() string { return cmp.Or(st.key, st.binaryKey) }

// ShardsIn returns the shard payloads stored in a ConfigMap; keys that do
// not decode are named in the error list rather than dropped silently.
func ShardsIn(cm *corev1.ConfigMap) ([]Shard, []error) {
	var out []Shard
	var errs []error
	for _, st := range readShards(cm) {
		if st.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", st.name(), st.err))
			continue
		}
		out = append(out, st.shard)
	}
	return out, errs
}

// ShardResult says what PublishShard did.
type ShardResult struct {
	// Shard is the write of this shard's key.
	Shard PublishResult
	// Merged is true when this shard completed its run's set and wrote
	// the merged report (then Report says how that went).
	Merged bool
	Report PublishResult
	// Present are the shard indices of this run stored after the write
	// (before a merge removed them).
	Present []int
}

// PublishShard stores sh under shard-<i>.json (gzipped into binaryData
// shard-<i>.json.gz when the object would not fit otherwise), removing
// shard keys of other runs. When this write completes the set of its
// run, the same update merges the shards, writes the report keys as
// Publish does (previous.json, report.md, note) and removes the shard
// keys: exactly one shard merges, whatever the timing, because the update
// carries the resourceVersion it read.
func (s ConfigMapSink) PublishShard(ctx context.Context, sh Shard, now time.Time) (ShardResult, error) {
	if sh.Count < 1 || sh.Index < 0 || sh.Index >= sh.Count {
		return ShardResult{}, fmt.Errorf("shard %d of %d: out of range", sh.Index, sh.Count)
	}
	var sr ShardResult
	res, err := s.update(ctx, func(cm *corev1.ConfigMap) (PublishResult, error) {
		sr = ShardResult{}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		if cm.BinaryData == nil {
			cm.BinaryData = map[string][]byte{}
		}
		var mine []Shard
		for _, st := range readShards(cm) {
			if st.err != nil || st.shard.Run != sh.Run || st.shard.Count != sh.Count || st.shard.Index == sh.Index {
				st.remove(cm) // another run's, unreadable, or our own older write
				continue
			}
			mine = append(mine, st.shard)
		}
		wr, err := fitShard(cm, sh, s.budget())
		if err != nil {
			return PublishResult{}, err
		}
		sr.Shard = wr
		mine = append(mine, sh)
		for _, m := range mine {
			sr.Present = append(sr.Present, m.Index)
		}
		sort.Ints(sr.Present)
		if len(mine) < sh.Count {
			return wr, nil
		}
		merged, err := Merge(mine)
		if err != nil {
			return PublishResult{}, err
		}
		for _, st := range readShards(cm) {
			st.remove(cm)
		}
		var md bytes.Buffer
		if err := report.Render(&md, "markdown", merged, report.RenderOptions{ShowAll: false}); err != nil {
			return PublishResult{}, err
		}
		rr, err := fitReport(cm, merged, md.Bytes(), now, s.budget())
		if err != nil {
			return PublishResult{}, err
		}
		sr.Merged, sr.Report = true, rr
		return rr, nil
	})
	if sr.Merged {
		sr.Report.Attempts, sr.Report.Created, sr.Report.ResourceVersion = res.Attempts, res.Created, res.ResourceVersion
	}
	sr.Shard.Attempts, sr.Shard.Created, sr.Shard.ResourceVersion = res.Attempts, res.Created, res.ResourceVersion
	return sr, err
}

// fitShard writes the shard's key: plain JSON if the object fits, else
// gzipped, else without the previous report, else with its findings
// trimmed (worst kept; the trimmed targets' observations go too).
func fitShard(cm *corev1.ConfigMap, sh Shard, budget int) (PublishResult, error) {
	key := ShardKey(sh.Index)
	base := cm.DeepCopy()
	var res PublishResult
	encode := func(s Shard, gz bool) (*corev1.ConfigMap, int, error) {
		out := base.DeepCopy()
		b, err := json.Marshal(s)
		if err != nil {
			return nil, 0, err
		}
		if gz {
			if b, err = gzipBytes(b); err != nil {
				return nil, 0, err
			}
			out.BinaryData[key+".gz"] = b
		} else {
			out.Data[key] = string(b)
		}
		if len(out.BinaryData) == 0 {
			out.BinaryData = nil
		}
		return out, ObjectBytes(out), nil
	}
	out, size, err := encode(sh, false)
	if err != nil {
		return res, err
	}
	if size > budget {
		res.Compressed = true
		res.Notes = append(res.Notes, fmt.Sprintf("%s is stored gzipped in binaryData key %s.gz", key, key))
		if out, size, err = encode(sh, true); err != nil {
			return res, err
		}
	}
	if size > budget {
		_, p1 := base.Data[KeyPrevious]
		_, p2 := base.BinaryData[KeyPreviousGz]
		if p1 || p2 {
			delete(base.Data, KeyPrevious)
			delete(base.BinaryData, KeyPreviousGz)
			res.DroppedPrevious = true
			res.Notes = append(res.Notes, "previous.json was dropped to make room for the shards")
			if out, size, err = encode(sh, true); err != nil {
				return res, err
			}
		}
	}
	if size > budget {
		sorted := append([]report.Finding(nil), sh.Report.Findings...)
		report.SortFindings(sorted)
		at := func(k int) (*corev1.ConfigMap, int, error) {
			t := sh
			t.Report.Findings = sorted[:k]
			t.Report.Warnings = append(append([]string{}, sh.Report.Warnings...), fmt.Sprintf("shard %d: %s", sh.Index, trimNote(len(sorted)-k, len(sorted), budget)))
			keep := map[target.TargetKey]bool{}
			for _, f := range t.Report.Findings {
				keep[f.Key()] = true
			}
			t.Observations = nil
			for _, o := range sh.Observations {
				if keep[o.Target] {
					t.Observations = append(t.Observations, o)
				}
			}
			res.Trimmed = len(sorted) - k
			return encode(t, true)
		}
		if out, size, err = largestFit(len(sorted), budget, at); err != nil {
			return res, err
		}
		res.Notes = append(res.Notes, fmt.Sprintf("shard %d: %s", sh.Index, trimNote(res.Trimmed, len(sorted), budget)))
	}
	if size > budget {
		return res, fmt.Errorf("shard %d does not fit in ConfigMap %s/%s even with every finding trimmed (%d bytes > %d)", sh.Index, cm.Namespace, cm.Name, size, budget)
	}
	*cm = *out
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	if cm.BinaryData == nil {
		cm.BinaryData = map[string][]byte{}
	}
	res.Bytes = size
	return res, nil
}
