package probe

import (
	"strings"
	"testing"
)

func TestReadTargetsComments(t *testing.T) {
	in := "# header\n127.0.0.1:1\n  [::1]:2 # trailing comment\n\nlocalhost:3\t# tab comment\n"
	got, err := ReadTargets(strings.NewReader(in), "list")
	if err != nil {
		t.Fatal(err)
	}
	want := []Target{{Host: "127.0.0.1", Port: 1}, {Host: "::1", Port: 2}, {Host: "localhost", Port: 3}}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("target %d = %v, want %v", i, got[i], want[i])
		}
	}
}

// FuzzReadTargets: a targets file never panics the parser, errors name the
// file and line, and every target it accepts is a valid one.
func FuzzReadTargets(f *testing.F) {
	f.Add("127.0.0.1:1\n# c\n\n[::1]:2 # x\n")
	f.Add("a:1\r\nb:2\r\n")
	f.Fuzz(func(t *testing.T, s string) {
		ts, err := ReadTargets(strings.NewReader(s), "list")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "list:") || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q is not one line naming list:LINE", err)
			}
			return
		}
		for _, tg := range ts {
			if _, err := ParseTarget(tg.String()); err != nil {
				t.Fatalf("accepted %+v, which does not parse back: %v", tg, err)
			}
		}
	})
}
