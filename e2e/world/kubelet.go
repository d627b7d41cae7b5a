package world

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/portforward"
)

// startKubeletServer serves the parts of the kubelet API the API server
// calls for `kubectl logs` and `kubectl port-forward`, over TLS with a
// self-signed certificate (the API server does not verify kubelets unless
// told to), on 127.0.0.1 and a free port.
func (n *Node) startKubeletServer() error {
	cert, err := selfSignedCert()
	if err != nil {
		return fmt.Errorf("kubelet certificate: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	n.listener = ln
	n.port = ln.Addr().(*net.TCPAddr).Port
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("GET /containerLogs/{ns}/{pod}/{container}", n.serveLogs)
	for _, pattern := range []string{"/portForward/{ns}/{pod}", "/portForward/{ns}/{pod}/{uid}"} {
		mux.HandleFunc(pattern, n.servePortForward)
	}
	n.server = &http.Server{
		Handler:           mux,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          nil,
	}
	go func() { _ = n.server.ServeTLS(ln, "", "") }()
	return nil
}

func selfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "world-kubelet"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

func (n *Node) workerByName(ns, name string) *podWorker {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.byName[ns+"/"+name]
}

// serveLogs answers GET /containerLogs/{ns}/{pod}/{container} with the
// container's output: ?previous, ?tailLines, ?limitBytes and a minimal
// ?follow (until the container stops or the client goes).
func (n *Node) serveLogs(rw http.ResponseWriter, r *http.Request) {
	w := n.workerByName(r.PathValue("ns"), r.PathValue("pod"))
	if w == nil {
		http.Error(rw, "pod not found on this node", http.StatusNotFound)
		return
	}
	c := w.container(r.PathValue("container"))
	if c == nil {
		http.Error(rw, "container not found", http.StatusNotFound)
		return
	}
	q := r.URL.Query()
	previous, _ := strconv.ParseBool(q.Get("previous"))
	follow, _ := strconv.ParseBool(q.Get("follow"))
	w.mu.Lock()
	logs := append([]string{}, c.logs...)
	exitedCh := c.exitedCh
	w.mu.Unlock()
	idx := len(logs) - 1
	if previous {
		idx--
		follow = false
	}
	if idx < 0 {
		http.Error(rw, fmt.Sprintf("container %q has no logs yet", c.spec.Name), http.StatusBadRequest)
		return
	}
	f, err := os.Open(logs[idx])
	if err != nil {
		http.Error(rw, err.Error(), http.StatusInternalServerError)
		return
	}
	defer f.Close()
	limit := int64(-1)
	if v, err := strconv.ParseInt(q.Get("limitBytes"), 10, 64); err == nil && v > 0 {
		limit = v
	}
	if v, err := strconv.Atoi(q.Get("tailLines")); err == nil && v >= 0 {
		off, err := tailOffset(f, v)
		if err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			http.Error(rw, err.Error(), http.StatusInternalServerError)
			return
		}
	}
	rw.Header().Set("Content-Type", "text/plain")
	out := io.Writer(rw)
	var lw *limitWriter
	if limit >= 0 {
		lw = &limitWriter{w: rw, left: limit}
		out = lw
	}
	flusher, _ := rw.(http.Flusher)
	for {
		_, err := io.Copy(out, f)
		if err != nil || lw != nil && lw.left <= 0 {
			return
		}
		if !follow {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		select {
		case <-r.Context().Done():
			return
		case <-exitedCh:
			_, _ = io.Copy(out, f)
			return
		case <-n.ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type limitWriter struct {
	w    io.Writer
	left int64
}

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, io.ErrShortWrite
	}
	full := len(p)
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	if err == nil && n < full {
		err = io.ErrShortWrite
	}
	return n, err
}

// tailOffset is the file offset where the last n lines begin.
func tailOffset(f *os.File, n int) (int64, error) {
	data, err := io.ReadAll(f)
	if err != nil {
		return 0, err
	}
	if n == 0 {
		return int64(len(data)), nil
	}
	end := len(data)
	if end > 0 && data[end-1] == '\n' {
		end--
	}
	for i := 0; i < n; i++ {
		j := bytes.LastIndexByte(data[:end], '\n')
		if j < 0 {
			return 0, nil
		}
		end = j
	}
	return int64(end + 1), nil
}

// servePortForward answers POST /portForward/{ns}/{pod}[/{uid}] with the
// kubelet's own port-forward server (k8s.io/cri-streaming: SPDY, and
// WebSocket should a client come without the API server's translation);
// each stream dials 127.0.0.1:PORT inside the pod's network namespace, as a
// CRI runtime does.
func (n *Node) servePortForward(rw http.ResponseWriter, r *http.Request) {
	ns, name := r.PathValue("ns"), r.PathValue("pod")
	w := n.workerByName(ns, name)
	if w == nil || w.netnsName() == "" {
		http.Error(rw, "pod not running on this node", http.StatusNotFound)
		return
	}
	if uid := r.PathValue("uid"); uid != "" && uid != string(w.uid) {
		http.Error(rw, "pod UID mismatch", http.StatusNotFound)
		return
	}
	// The kubelet's handler (pkg/kubelet/server) does the same: the options
	// only matter to WebSocket clients, which name the ports in the query.
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	// The kubelet's defaults: streaming-connection-idle-timeout 4h, stream
	// creation timeout 30s. Errors go to klog (runtime.HandleError), as in
	// the kubelet.
	portforward.ServePortForward(rw, r, &podForwarder{w: w}, ns+"/"+name, string(w.uid), opts,
		4*time.Hour, 30*time.Second, portforward.SupportedProtocols)
}

type podForwarder struct{ w *podWorker }

func (f *podForwarder) PortForward(ctx context.Context, _ string, _ string, port int32, stream io.ReadWriteCloser) error {
	defer stream.Close()
	netns := f.w.netnsName()
	if netns == "" {
		return errors.New("pod has no network namespace")
	}
	conn, err := dialIn(netns, net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), net.Dialer{Timeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("dial port %d in the pod: %w", port, err)
	}
	defer conn.Close()
	// Done when the pod's side is: the client closing its half only
	// half-closes the connection, so a reply still gets through.
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(conn, stream)
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
	}()
	go func() {
		_, _ = io.Copy(stream, conn)
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}
