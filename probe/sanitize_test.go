package probe

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// The escaping itself is tested in probe/safetext; here, the cap.
func TestSanitizeCap(t *testing.T) {
	long := strings.Repeat("x", 1000)
	if got := Sanitize([]byte(long)); utf8.RuneCountInString(got) != SanitizeLimit || !strings.HasSuffix(got, "...") {
		t.Errorf("Sanitize(1000 x) has %d runes, want %d ending in ...", utf8.RuneCountInString(got), SanitizeLimit)
	}
}
