package proxy

import (
	"encoding/json"
	"net"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// Status is what the agent reports on /model/status (the world reads it
// as it reads the sidecar model's).
type Status struct {
	Ready      bool              `json:"ready"`
	Generation int               `json:"generation"` // xDS responses accepted
	LastPush   time.Time         `json:"lastSyncStarted"`
	PodKnown   bool              `json:"podKnown"`
	Versions   map[string]string `json:"versions"`
}

// AdminHandler is Envoy's admin API as far as reading config goes:
// /config_dump (?include_eds, ?name_regex=) and /ready.
func AdminHandler(c *Client) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/config_dump", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		_, eds := q["include_eds"]
		o := DumpOptions{Endpoints: eds}
		if expr := q.Get("name_regex"); expr != "" {
			re, err := regexp.Compile(expr)
			if err != nil {
				http.Error(w, "name_regex: "+err.Error(), http.StatusBadRequest)
				return
			}
			o.NameRegex = re
		}
		out, err := c.Snapshot().DumpJSON(o)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(out)
	})
	mux.HandleFunc("/ready", func(w http.ResponseWriter, r *http.Request) {
		if !c.Snapshot().Complete() {
			http.Error(w, "PRE_INITIALIZING", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("LIVE\n"))
	})
	return mux
}

// AgentHandler is pilot-agent's status server (15021 and 15020 share it
// here): /healthz/ready once the proxy holds a complete config,
// /model/status, and POST /quitquitquit from localhost, which calls quit.
func AgentHandler(c *Client, quit func()) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz/ready", func(w http.ResponseWriter, r *http.Request) {
		if !c.Snapshot().Complete() {
			http.Error(w, "envoy not ready: no complete xDS config yet", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("/model/status", func(w http.ResponseWriter, r *http.Request) {
		s := c.Snapshot()
		st := Status{Ready: s.Complete(), Generation: s.Pushes, PodKnown: s.Complete(), Versions: s.Versions}
		for _, r := range s.Listeners {
			if r.LastUpdated.After(st.LastPush) {
				st.LastPush = r.LastUpdated
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("/quitquitquit", func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		if r.Method != http.MethodPost || !(host == "127.0.0.1" || host == "::1" || strings.HasPrefix(host, "127.")) {
			http.Error(w, "POST from localhost only", http.StatusForbidden)
			return
		}
		w.WriteHeader(http.StatusOK)
		go quit()
	})
	return mux
}
