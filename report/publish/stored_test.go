package publish

import (
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/serverfirst/kubectl-serverfirst/report"
)

// What the tests read back of a published ConfigMap; the product only
// writes it.

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

// ValidationBytes is what the API server counts against MaxObjectBytes:
// the data and binaryData values.
func ValidationBytes(cm *corev1.ConfigMap) int {
	n := 0
	for _, v := range cm.Data {
		n += len(v)
	}
	for _, v := range cm.BinaryData {
		n += len(v)
	}
	return n
}
