package world

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// saDefaultingName is the webhook configuration of saDefaulter.
const saDefaultingName = "serverfirst-world-serviceaccount"

// saDefaulter does the one thing of the ServiceAccount admission plugin
// (off in internal/testenv) that Istio's injection depends on: a pod that names
// no ServiceAccount gets `default`. Istio's template mounts a projected
// service-account token, which the API server rejects on a pod without
// one; in a cluster the plugin has set it before any webhook runs.
type saDefaulter struct {
	kube kubernetes.Interface
	srv  *http.Server
}

func startSADefaulter(ctx context.Context, kube kubernetes.Interface) (*saDefaulter, error) {
	caPEM, cert, err := webhookCertificates()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	d := &saDefaulter{kube: kube}
	d.srv = &http.Server{
		Handler:           http.HandlerFunc(serveSADefault),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() { _ = d.srv.ServeTLS(ln, "", "") }()
	url := "https://" + ln.Addr().String() + "/"
	sideEffects := admissionregistrationv1.SideEffectClassNone
	failure := admissionregistrationv1.Fail
	cfg := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: saDefaultingName, Labels: map[string]string{worldLabel: "serviceaccount"}},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name:         "serviceaccount.world.serverfirst.io",
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM},
			Rules: []admissionregistrationv1.RuleWithOperations{{
				Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
				Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			SideEffects: &sideEffects, FailurePolicy: &failure, AdmissionReviewVersions: []string{"v1"},
		}},
	}
	if err := applyWebhookConfiguration(ctx, kube, cfg); err != nil {
		d.srv.Close()
		return nil, err
	}
	return d, nil
}

func serveSADefault(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	var review admissionv1.AdmissionReview
	if err == nil {
		err = json.Unmarshal(body, &review)
	}
	if err != nil || review.Request == nil {
		http.Error(w, fmt.Sprintf("not an AdmissionReview: %v", err), http.StatusBadRequest)
		return
	}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	var pod corev1.Pod
	if json.Unmarshal(review.Request.Object.Raw, &pod) == nil && pod.Spec.ServiceAccountName == "" {
		patch := []byte(`[{"op":"add","path":"/spec/serviceAccountName","value":"default"}]`)
		pt := admissionv1.PatchTypeJSONPatch
		resp.Patch, resp.PatchType = patch, &pt
	}
	out := admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: resp}
	if out.APIVersion == "" {
		out.APIVersion, out.Kind = "admission.k8s.io/v1", "AdmissionReview"
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// stop unregisters the webhook (so pod creation does not fail closed) and
// shuts the server down.
func (d *saDefaulter) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := d.kube.AdmissionregistrationV1().MutatingWebhookConfigurations().Delete(ctx, saDefaultingName, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		err = nil
	}
	return errors.Join(err, d.srv.Shutdown(ctx))
}

// saController does the ServiceAccount controller's part that pods here
// depend on (there is no kube-controller-manager): every namespace gets a
// `default` ServiceAccount, so a pod defaulted to it (above) can get its
// token. Namespaces made by tests and the demo create theirs; istiod's
// istio-system, where `fix` may put a ServiceEntry and `scan` then a probe
// pod, does not.
type saController struct {
	kube   kubernetes.Interface
	logf   func(string, ...any)
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startSAController(kube kubernetes.Interface, logf func(string, ...any)) *saController {
	ctx, cancel := context.WithCancel(context.Background())
	c := &saController{kube: kube, logf: logf, cancel: cancel}
	kick := make(chan struct{}, 1)
	c.wg.Add(2)
	go watchKick(ctx, &c.wg, func(ctx context.Context) (watch.Interface, error) {
		return kube.CoreV1().Namespaces().Watch(ctx, metav1.ListOptions{})
	}, kick)
	go func() {
		defer c.wg.Done()
		for {
			c.sync(ctx)
			select {
			case <-ctx.Done():
				return
			case <-kick:
			}
		}
	}()
	return c
}

func (c *saController) sync(ctx context.Context) {
	nss, err := c.kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
	if err != nil {
		return
	}
	sas, err := c.kube.CoreV1().ServiceAccounts("").List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=default"})
	if err != nil {
		return
	}
	have := map[string]bool{}
	for _, sa := range sas.Items {
		have[sa.Namespace] = true
	}
	for _, ns := range nss.Items {
		if have[ns.Name] || ns.Status.Phase == corev1.NamespaceTerminating {
			continue
		}
		sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns.Name}}
		if _, err := c.kube.CoreV1().ServiceAccounts(ns.Name).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) && ctx.Err() == nil {
			c.logf("world: ServiceAccount %s/default: %v", ns.Name, err)
		}
	}
}

func (c *saController) stop() {
	c.cancel()
	c.wg.Wait()
}
