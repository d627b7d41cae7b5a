package publish

import corev1 "k8s.io/api/core/v1"

// ValidationBytes is what the API server counts against MaxObjectBytes:
// the data and binaryData values (the tests check the budget keeps under
// it; the product only bounds ObjectBytes).
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
