package probe

import (
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		in      string
		want    Target
		wantErr string // substring of the error; "" means success
	}{
		{in: "127.0.0.1:3306", want: Target{"127.0.0.1", 3306}},
		{in: "[::1]:22", want: Target{"::1", 22}},
		{in: "[fe80::1%eth0]:25", want: Target{"fe80::1%eth0", 25}},
		{in: "localhost:6379", want: Target{"localhost", 6379}},
		{in: "mysql.db.svc.cluster.local:3306", want: Target{"mysql.db.svc.cluster.local", 3306}},
		{in: "my_host.example.:1", want: Target{"my_host.example.", 1}},
		{in: "h:65535", want: Target{"h", 65535}},
		{in: "", wantErr: "empty target"},
		{in: "localhost", wantErr: "missing a port"},
		{in: "localhost:", wantErr: "missing port"},
		{in: ":3306", wantErr: "empty host"},
		{in: "host:0", wantErr: "out of range"},
		{in: "host:65536", wantErr: "out of range"},
		{in: "host:99999999999999999999", wantErr: "out of range"},
		{in: "host:-1", wantErr: "not a number"},
		{in: "host:+80", wantErr: "not a number"},
		{in: "host:mysql", wantErr: "not a number"},
		{in: " host:1", wantErr: "whitespace"},
		{in: "host :1", wantErr: "whitespace"},
		{in: "host:1\n", wantErr: "whitespace"},
		{in: "tcp://host:1", wantErr: `scheme "tcp://"`},
		{in: "mysql://db:3306/", wantErr: "e.g. db:3306"},
		{in: "host:1/path", wantErr: "not HOST:PORT"},
		{in: "user@host:1", wantErr: "not HOST:PORT"},
		{in: "::1", wantErr: "need brackets: want [ADDRESS]:PORT"},
		{in: "::1:22", wantErr: "need brackets: want [::1]:22 if 22 is the port"},
		{in: "fe80::1%eth0:22", wantErr: "want [fe80::1%eth0]:22"},
		{in: "[::1]", wantErr: "missing a port after ']'"},
		{in: "[::1:22", wantErr: "missing ']'"},
		{in: "[127.0.0.1]:22", wantErr: "brackets are for IPv6"},
		{in: "[example.com]:22", wantErr: "not an IPv6 address"},
		{in: "999.1.1.1:22", wantErr: "not a valid IPv4 address"},
		{in: "a..b:1", wantErr: "empty label"},
		{in: "-a.b:1", wantErr: "starts or ends with '-'"},
		{in: "a!b:1", wantErr: "contains '!'"},
		{in: strings.Repeat("a", 64) + ".b:1", wantErr: "longer than 63"},
		{in: strings.Repeat("abcdefghi.", 26) + "com:1", wantErr: "longer than 253"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseTarget(tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseTarget(%q) error: %v", tc.in, err)
				}
				if got != tc.want {
					t.Fatalf("ParseTarget(%q) = %+v, want %+v", tc.in, got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseTarget(%q) = %+v, want an error containing %q", tc.in, got, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ParseTarget(%q) error %q, want it to contain %q", tc.in, err, tc.wantErr)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("error is not one line: %q", err)
			}
		})
	}
}

func TestTargetString(t *testing.T) {
	for _, tc := range []struct {
		t    Target
		want string
	}{
		{Target{"127.0.0.1", 25}, "127.0.0.1:25"},
		{Target{"::1", 22}, "[::1]:22"},
		{Target{"db.example", 3306}, "db.example:3306"},
	} {
		if got := tc.t.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.t, got, tc.want)
		}
	}
}

// FuzzParseTarget: target lists come from users, files and the cluster.
// Parsing never panics, errors are one line, and whatever parses prints back
// to something that parses to the same Target.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"127.0.0.1:1", "[::1]:22", "[fe80::1%eth0]:1", "a.b:65535", "tcp://x:1", "::1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTarget(s)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error for %q: %q", s, err)
			}
			return
		}
		if got.Port < 1 || got.Port > 65535 || got.Host == "" {
			t.Fatalf("ParseTarget(%q) = %+v accepted a bad target", s, got)
		}
		again, err := ParseTarget(got.String())
		if err != nil || again != got {
			t.Fatalf("ParseTarget(%q) = %+v, but its String %q parses to %+v, %v", s, got, got.String(), again, err)
		}
	})
}
