package testenv

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"regexp"
	"time"

	istioclient "istio.io/client-go/pkg/clientset/versioned"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// contextName is the single context of every kubeconfig the Env writes.
const contextName = "serverfirst-test"

// CreateNamespace creates a namespace with the given labels (nil for none)
// and its `default` ServiceAccount, which a real cluster's
// controller-manager would add.
func (e *Env) CreateNamespace(ctx context.Context, name string, labels map[string]string) (*corev1.Namespace, error) {
	ns, err := e.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create namespace %q: %w", name, err)
	}
	if err := e.ensureDefaultServiceAccount(ctx, name); err != nil {
		return nil, err
	}
	return ns, nil
}

// KubeconfigFor writes a kubeconfig that authenticates as the ServiceAccount
// namespace/name with a token from the TokenRequest API (valid 24h), with
// namespace as the context's default. The namespace must exist; the
// ServiceAccount is created if missing. It holds no RBAC beyond what
// Kubernetes grants every authenticated identity: bind Roles to
// "system:serviceaccount:NAMESPACE:NAME" to grant more.
func (e *Env) KubeconfigFor(namespace, name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := e.Client.CoreV1().Namespaces().Get(ctx, namespace, metav1.GetOptions{}); err != nil {
		return "", fmt.Errorf("ServiceAccount kubeconfig: namespace %q: %w", namespace, err)
	}
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace}}
	if _, err := e.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return "", fmt.Errorf("create ServiceAccount %s/%s: %w", namespace, name, err)
	}
	ttl := int64((24 * time.Hour).Seconds())
	tr, err := e.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &ttl},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("TokenRequest for %s/%s: %w", namespace, name, err)
	}
	path := filepath.Join(e.Dir, "sa-"+safeName(namespace)+"-"+safeName(name)+".kubeconfig")
	user := "system:serviceaccount:" + namespace + ":" + name
	if err := e.writeKubeconfig(path, user, nil, nil, tr.Status.Token, namespace); err != nil {
		return "", err
	}
	return path, nil
}

// KubeconfigForUser writes a kubeconfig that authenticates with a client
// certificate for user in groups (CommonName and Organizations), e.g. to run
// the CLI as a plain user bound by RBAC.
func (e *Env) KubeconfigForUser(user string, groups ...string) (string, error) {
	certPEM, keyPEM, err := e.pki.issue(user, groups, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return "", fmt.Errorf("client certificate for %q: %w", user, err)
	}
	path := filepath.Join(e.Dir, "user-"+safeName(user)+".kubeconfig")
	if err := e.writeKubeconfig(path, user, certPEM, keyPEM, "", ""); err != nil {
		return "", err
	}
	return path, nil
}

// ConfigForUser is KubeconfigForUser as an in-memory REST config.
func (e *Env) ConfigForUser(user string, groups ...string) (*rest.Config, error) {
	certPEM, keyPEM, err := e.pki.issue(user, groups, nil, x509.ExtKeyUsageClientAuth)
	if err != nil {
		return nil, fmt.Errorf("client certificate for %q: %w", user, err)
	}
	return e.restConfig(rest.TLSClientConfig{CertData: certPEM, KeyData: keyPEM}, ""), nil
}

// IstioClient returns an admin istio.io/client-go clientset.
func (e *Env) IstioClient() (istioclient.Interface, error) {
	return istioclient.NewForConfig(e.Config)
}

func (e *Env) writeKubeconfig(path, user string, certPEM, keyPEM []byte, token, namespace string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[contextName] = &clientcmdapi.Cluster{Server: e.Host, CertificateAuthorityData: e.pki.caPEM}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificateData: certPEM, ClientKeyData: keyPEM, Token: token}
	cfg.Contexts[contextName] = &clientcmdapi.Context{Cluster: contextName, AuthInfo: user, Namespace: namespace}
	cfg.CurrentContext = contextName
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	return nil
}

var unsafeChars = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// safeName keeps user-chosen names (which may hold ':' or '/') out of the
// file system's way.
func safeName(s string) string { return unsafeChars.ReplaceAllString(s, "_") }
