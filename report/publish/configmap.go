// Package publish writes scan reports out of the process: into a
// ConfigMap (with history, optimistic concurrency and a size budget), as
// Prometheus metrics (textfile collector or Pushgateway), and as shard
// payloads that a sharded scan merges into one report. It also builds the
// manifests of the scheduled in-cluster scan (job manifests).
package publish

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/serverfirst/kubectl-serverfirst/report"
)

// Keys of the report ConfigMap. Other keys (shard payloads, anything a
// user added) are kept as they are.
const (
	KeyReportJSON   = "report.json"
	KeyReportJSONGz = "report.json.gz" // binaryData: gzip of report.json
	KeyReportMD     = "report.md"
	KeyPrevious     = "previous.json"
	KeyPreviousGz   = "previous.json.gz" // binaryData: the last report, when it was compressed
	KeyUpdated      = "updated"          // RFC 3339, UTC
	KeyNote         = "note"             // what had to give to fit the size limit
)

// LabelName/LabelValue mark every object the tool writes.
const (
	LabelName  = "app.kubernetes.io/name"
	LabelValue = "kubectl-serverfirst"
)

// MaxObjectBytes is the API server's limit for a ConfigMap: the sum of
// its data and binaryData values may not exceed 1 MiB.
const MaxObjectBytes = 1 << 20

// DefaultBudget bounds the ConfigMap's JSON encoding (base64 binaryData,
// escaped strings, metadata), which is always larger than what the API
// server counts; the margin covers labels and managedFields that the
// server adds.
const DefaultBudget = MaxObjectBytes - 32<<10

// markdownShare caps report.md before any finding is dropped: the human
// view gives way before the data does.
const markdownShare = 4

// ConfigMapSink publishes reports into one ConfigMap.
type ConfigMapSink struct {
	Client    kubernetes.Interface
	Namespace string
	Name      string
	// Budget is the most bytes the ConfigMap's JSON encoding may take;
	// 0 means DefaultBudget.
	Budget int
	// Backoff paces retries on write conflicts; zero means conflictBackoff.
	Backoff wait.Backoff
}

// conflictBackoff: enough steps for a few concurrent writers (shards
// finishing together), jittered so they do not collide again.
var conflictBackoff = wait.Backoff{Steps: 10, Duration: 20 * time.Millisecond, Factor: 1.5, Jitter: 1.0, Cap: 2 * time.Second}

// PublishResult says what was written and what had to give.
type PublishResult struct {
	// Created is true when the ConfigMap did not exist.
	Created bool
	// Attempts counts Get+Update rounds (more than 1 after conflicts).
	Attempts int
	// Bytes is the JSON encoding size of the stored object.
	Bytes int
	// Compressed: report.json went to binaryData report.json.gz.
	Compressed bool
	// DroppedPrevious: previous.json was left out to make room.
	DroppedPrevious bool
	// MarkdownTruncated: report.md was cut to make room.
	MarkdownTruncated bool
	// Trimmed counts findings left out of the stored report.
	Trimmed int
	// Notes are the same facts in words (also in the `note` key).
	Notes []string
	// ResourceVersion of the stored object.
	ResourceVersion string
}

func (s ConfigMapSink) budget() int {
	if s.Budget > 0 {
		return s.Budget
	}
	return DefaultBudget
}

func (s ConfigMapSink) backoff() wait.Backoff {
	if s.Backoff.Steps > 0 {
		return s.Backoff
	}
	return conflictBackoff
}

// Ref is "namespace/name".
func (s ConfigMapSink) Ref() string { return s.Namespace + "/" + s.Name }

// Publish stores r (as report.json), markdown (report.md) and the time in
// the ConfigMap, moving the report it replaces to previous.json. The
// ConfigMap is created if absent and otherwise updated with its
// resourceVersion, retrying on conflict, so concurrent writers never lose
// an update silently. When the object would exceed the size limit, the
// JSON is gzipped into binaryData, then previous.json is dropped, then
// report.md is cut, then findings are trimmed (affected and worst kept);
// each step is recorded in the `note` key and in the result. A write the
// ServiceAccount may not make is an error that says so.
func (s ConfigMapSink) Publish(ctx context.Context, r report.Report, markdown []byte, now time.Time) (PublishResult, error) {
	return s.update(ctx, func(cm *corev1.ConfigMap) (PublishResult, error) {
		return fitReport(cm, r, markdown, now, s.budget())
	})
}

// update runs one optimistic read-modify-write: Get (or start a new
// object), mutate, Create or Update with the read resourceVersion, and
// again on conflict.
func (s ConfigMapSink) update(ctx context.Context, mutate func(cm *corev1.ConfigMap) (PublishResult, error)) (PublishResult, error) {
	if s.Client == nil || s.Namespace == "" || s.Name == "" {
		return PublishResult{}, errors.New("report ConfigMap: namespace and name are required")
	}
	cms := s.Client.CoreV1().ConfigMaps(s.Namespace)
	attempts := 0
	var res PublishResult
	err := retry.RetryOnConflict(s.backoff(), func() error {
		attempts++
		cur, err := cms.Get(ctx, s.Name, metav1.GetOptions{})
		created := false
		switch {
		case apierrors.IsNotFound(err):
			created = true
			cur = &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: s.Namespace}}
		case err != nil:
			return err
		}
		cm := cur.DeepCopy()
		if cm.Labels == nil {
			cm.Labels = map[string]string{}
		}
		cm.Labels[LabelName] = LabelValue
		res, err = mutate(cm)
		if err != nil {
			return err
		}
		res.Created = created
		var out *corev1.ConfigMap
		if created {
			out, err = cms.Create(ctx, cm, metav1.CreateOptions{FieldManager: LabelValue})
			if apierrors.IsAlreadyExists(err) {
				// Another writer created it between our Get and Create:
				// the same situation as a stale resourceVersion.
				return apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, s.Name, err)
			}
		} else {
			out, err = cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: LabelValue})
		}
		if err != nil {
			return err
		}
		res.ResourceVersion = out.ResourceVersion
		return nil
	})
	res.Attempts = attempts
	if err != nil {
		return res, s.explain(err)
	}
	return res, nil
}

// explain turns the API errors a Job can hit into one clear line.
func (s ConfigMapSink) explain(err error) error {
	switch {
	case apierrors.IsForbidden(err):
		return fmt.Errorf("cannot write ConfigMap %s: forbidden: the job's ServiceAccount needs create/update on it (and get): %w", s.Ref(), err)
	case apierrors.IsConflict(err):
		return fmt.Errorf("cannot write ConfigMap %s: still conflicting after retries (another writer keeps updating it): %w", s.Ref(), err)
	case apierrors.IsNotFound(err):
		return fmt.Errorf("cannot write ConfigMap %s: namespace %s not found: %w", s.Ref(), s.Namespace, err)
	}
	return fmt.Errorf("cannot write ConfigMap %s: %w", s.Ref(), err)
}

// Read returns the stored ConfigMap.
func (s ConfigMapSink) Read(ctx context.Context) (*corev1.ConfigMap, error) {
	cm, err := s.Client.CoreV1().ConfigMaps(s.Namespace).Get(ctx, s.Name, metav1.GetOptions{})
	if apierrors.IsForbidden(err) {
		return nil, fmt.Errorf("cannot read ConfigMap %s: forbidden: it needs get on it: %w", s.Ref(), err)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read ConfigMap %s: %w", s.Ref(), err)
	}
	return cm, nil
}

// StoredReport reads the current report out of a ConfigMap written by
// Publish, whichever form it took (plain or gzipped).
func StoredReport(cm *corev1.ConfigMap) (report.Report, bool, error) {
	var raw []byte
	if s, ok := cm.Data[KeyReportJSON]; ok {
		raw = []byte(s)
	} else if gz, ok := cm.BinaryData[KeyReportJSONGz]; ok {
		var err error
		if raw, err = gunzip(gz); err != nil {
			return report.Report{}, true, fmt.Errorf("%s: %w", KeyReportJSONGz, err)
		}
	} else {
		return report.Report{}, false, nil
	}
	var r report.Report
	if err := json.Unmarshal(raw, &r); err != nil {
		return report.Report{}, true, fmt.Errorf("stored report: %w", err)
	}
	return r, true, nil
}

// ObjectBytes is the size of the ConfigMap's JSON encoding: what the
// budget bounds.
func ObjectBytes(cm *corev1.ConfigMap) int {
	b, err := json.Marshal(cm)
	if err != nil {
		return 1 << 30
	}
	return len(b)
}

// fitReport writes the report keys into cm (which holds the current
// object), degrading step by step until the object fits the budget.
func fitReport(cm *corev1.ConfigMap, r report.Report, markdown []byte, now time.Time, budget int) (PublishResult, error) {
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	if cm.BinaryData == nil {
		cm.BinaryData = map[string][]byte{}
	}
	// History: the report being replaced becomes previous.json (in the
	// form it was stored in).
	prevPlain, hasPrevPlain := cm.Data[KeyReportJSON]
	prevGz, hasPrevGz := cm.BinaryData[KeyReportJSONGz]
	for _, k := range []string{KeyReportJSON, KeyReportMD, KeyPrevious, KeyUpdated, KeyNote} {
		delete(cm.Data, k)
	}
	for _, k := range []string{KeyReportJSONGz, KeyPreviousGz} {
		delete(cm.BinaryData, k)
	}
	base := cm.DeepCopy()

	full, err := encodeReport(r)
	if err != nil {
		return PublishResult{}, err
	}
	st := fitState{
		full: r, fullJSON: full, markdown: markdown, now: now,
		prevPlain: prevPlain, hasPrevPlain: hasPrevPlain, prevGz: prevGz, hasPrevGz: hasPrevGz,
		keepPrevious: true, mdLimit: -1, budget: budget,
	}
	try := func() (*corev1.ConfigMap, int, error) {
		out := base.DeepCopy()
		if err := st.apply(out); err != nil {
			return nil, 0, err
		}
		return out, ObjectBytes(out), nil
	}
	out, size, err := try()
	if err != nil {
		return PublishResult{}, err
	}
	// 1. gzip the JSON into binaryData.
	if size > budget {
		st.compress = true
		if out, size, err = try(); err != nil {
			return PublishResult{}, err
		}
	}
	// 2. drop the history.
	if size > budget && (hasPrevPlain || hasPrevGz) {
		st.keepPrevious = false
		if out, size, err = try(); err != nil {
			return PublishResult{}, err
		}
	}
	// 3. cut report.md to its share of the budget.
	if size > budget && len(markdown) > budget/markdownShare {
		st.mdLimit = budget / markdownShare
		if out, size, err = try(); err != nil {
			return PublishResult{}, err
		}
	}
	// 4. trim findings: the largest worst-first prefix that fits.
	if size > budget {
		sorted := append([]report.Finding(nil), r.Findings...)
		report.SortFindings(sorted)
		st.sorted = sorted
		keepAt := func(k int) (*corev1.ConfigMap, int, error) {
			st.keep = k
			return try()
		}
		if out, size, err = largestFit(len(sorted), budget, keepAt); err != nil {
			return PublishResult{}, err
		}
	}
	// 5. last resort: whatever report.md still costs.
	if size > budget && len(markdown) > 0 {
		st.mdLimit = 0
		if out, size, err = try(); err != nil {
			return PublishResult{}, err
		}
	}
	if size > budget {
		return PublishResult{}, fmt.Errorf("report does not fit in ConfigMap %s/%s even with every finding trimmed (%d bytes > %d): other keys take %d bytes", cm.Namespace, cm.Name, size, budget, ObjectBytes(base))
	}
	*cm = *out
	return PublishResult{
		Bytes:             size,
		Compressed:        st.compress,
		DroppedPrevious:   !st.keepPrevious,
		MarkdownTruncated: st.mdLimit >= 0 && st.mdLimit < len(markdown),
		Trimmed:           st.trimmed(),
		Notes:             st.notes(),
	}, nil
}

// fitState is one candidate layout of the report keys.
type fitState struct {
	full                                  report.Report
	fullJSON                              []byte
	markdown                              []byte
	now                                   time.Time
	prevPlain                             string
	prevGz                                []byte
	sorted                                []report.Finding
	keep                                  int // findings kept when sorted != nil
	mdLimit                               int // bytes of report.md kept; -1 = all
	compress                              bool
	keepPrevious, hasPrevPlain, hasPrevGz bool
	budget                                int
}

func (st *fitState) trimmed() int {
	if st.sorted == nil {
		return 0
	}
	return len(st.sorted) - st.keep
}

func (st *fitState) notes() []string {
	var n []string
	if st.compress {
		n = append(n, fmt.Sprintf("report.json is stored gzipped in binaryData key %s (%d bytes of JSON did not fit %s); read it with: kubectl get configmap NAME -o jsonpath='{.binaryData.report\\.json\\.gz}' | base64 -d | gunzip", KeyReportJSONGz, len(st.fullJSON), limitText(st.budget)))
	}
	if !st.keepPrevious {
		n = append(n, "previous.json was dropped to make room: no history this time")
	}
	if st.mdLimit >= 0 && st.mdLimit < len(st.markdown) {
		n = append(n, fmt.Sprintf("report.md was cut from %d to %d bytes to make room", len(st.markdown), st.mdLimit))
	}
	if t := st.trimmed(); t > 0 {
		n = append(n, trimNote(t, len(st.sorted), st.budget))
	}
	return n
}

func trimNote(trimmed, total, budget int) string {
	return fmt.Sprintf("%d of %d findings were trimmed to fit %s (kept %d: affected first, worst first); summary still counts all %d", trimmed, total, limitText(budget), total-trimmed, total)
}

// limitText names the size limit a note refers to: the API server's, or
// the smaller one the caller chose.
func limitText(budget int) string {
	if budget <= 0 || budget >= DefaultBudget {
		return "the 1 MiB ConfigMap limit"
	}
	return fmt.Sprintf("the report size limit of %d bytes", budget)
}

// apply writes the candidate's keys into cm.
func (st *fitState) apply(cm *corev1.ConfigMap) error {
	js := st.fullJSON
	if st.sorted != nil {
		r := st.full
		r.Findings = st.sorted[:st.keep]
		r.Warnings = append(append([]string{}, st.full.Warnings...), trimNote(len(st.sorted)-st.keep, len(st.sorted), st.budget))
		var err error
		if js, err = encodeReport(r); err != nil {
			return err
		}
	}
	if st.compress {
		gz, err := gzipBytes(js)
		if err != nil {
			return err
		}
		cm.BinaryData[KeyReportJSONGz] = gz
	} else {
		cm.Data[KeyReportJSON] = string(js)
	}
	md := st.markdown
	if st.mdLimit >= 0 && st.mdLimit < len(md) {
		md = cutMarkdown(md, st.mdLimit)
	}
	cm.Data[KeyReportMD] = string(md)
	if st.keepPrevious {
		if st.hasPrevPlain {
			cm.Data[KeyPrevious] = st.prevPlain
		} else if st.hasPrevGz {
			cm.BinaryData[KeyPreviousGz] = st.prevGz
		}
	}
	cm.Data[KeyUpdated] = st.now.UTC().Format(time.RFC3339)
	if notes := st.notes(); len(notes) > 0 {
		cm.Data[KeyNote] = strings.Join(notes, "\n") + "\n"
	}
	if len(cm.BinaryData) == 0 {
		cm.BinaryData = nil
	}
	return nil
}

// largestFit is at(k) for the largest k below n whose object fits the
// budget, by bisection: sizes grow with k, and n findings are known not to
// fit. When not even at(0) fits, it is at(0). The last call is at the k
// returned, so the state at sets is that k's.
func largestFit(n, budget int, at func(k int) (*corev1.ConfigMap, int, error)) (*corev1.ConfigMap, int, error) {
	if out, size, err := at(0); err != nil || size > budget {
		return out, size, err
	}
	lo, hi := 0, n // invariant: lo fits, hi does not
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		_, s, err := at(mid)
		if err != nil {
			return nil, 0, err
		}
		if s <= budget {
			lo = mid
		} else {
			hi = mid
		}
	}
	return at(lo)
}

// cutMarkdown keeps whole lines up to limit bytes and says what is missing.
func cutMarkdown(md []byte, limit int) []byte {
	const tail = "\n\n_(report.md cut to fit the ConfigMap: the full list is in report.json)_\n"
	if limit <= len(tail) {
		return nil
	}
	keep := md[:limit-len(tail)]
	if i := bytes.LastIndexByte(keep, '\n'); i >= 0 {
		keep = keep[:i]
	}
	return append(append([]byte{}, keep...), tail...)
}

// encodeReport is the documented JSON schema, as `scan -o json` prints it.
func encodeReport(r report.Report) ([]byte, error) {
	var b bytes.Buffer
	if err := report.Render(&b, "json", r, report.RenderOptions{}); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func gzipBytes(b []byte) ([]byte, error) {
	var out bytes.Buffer
	zw, err := gzip.NewWriterLevel(&out, gzip.BestCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(b); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	defer zr.Close()
	return io.ReadAll(zr)
}
