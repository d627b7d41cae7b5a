package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
)

// referenceJSON is what writeJSON replaced: one indenting json.Encoder
// over the whole report, after the same nil-to-empty normalization.
func referenceJSON(t testing.TB, r Report) []byte {
	t.Helper()
	r = withEmptyArrays(r)
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func assertSameJSON(t *testing.T, r Report) {
	t.Helper()
	want := referenceJSON(t, r)
	var got bytes.Buffer
	if err := writeJSON(&got, r); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		g, w := got.String(), string(want)
		i := 0
		for i < len(g) && i < len(w) && g[i] == w[i] {
			i++
		}
		t.Fatalf("writeJSON differs from json.Encoder at byte %d:\n--- got\n%s\n--- want\n%s", i, excerpt(g, i), excerpt(w, i))
	}
}

func excerpt(s string, i int) string {
	return s[max(0, i-200):min(len(s), i+200)]
}

// awkward strings: everything encoding/json escapes, and what it does not.
var awkward = []string{
	"", "plain", `quote " backslash \ slash /`, "<script>&amp;</script>", "\x00\x01\x1f\x7f",
	"\b\f\n\r\t", "tab\tnew\nline", "\u2028\u2029", "é ü 日本 🙂", "bad \xff\xfe utf-8 \xc3", "\xed\xa0\x80 surrogate",
	"\u0085 NEL \u200b zero width \u202e bidi", strings.Repeat("x", 300),
}

// fill sets every exported field of the value v points to, recursively:
// strings from awkward, numbers, true, non-nil pointers, slices and maps
// of two.
func fill(v reflect.Value, seed *int) {
	*seed++
	switch v.Kind() {
	case reflect.String:
		v.SetString(awkward[*seed%len(awkward)] + fmt.Sprint(*seed))
	case reflect.Int, reflect.Int32, reflect.Int64:
		v.SetInt(int64(*seed) * 1009)
	case reflect.Uint, reflect.Uint32, reflect.Uint64:
		v.SetUint(uint64(*seed) * 31)
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Float64:
		v.SetFloat(float64(*seed) * 0.37)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(p.Elem(), seed)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 2, 2)
		for i := range 2 {
			fill(s.Index(i), seed)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range 2 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(k, seed)
			fill(e, seed)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), seed)
			}
		}
	}
}

// TestAppendFindingMatchesEncodingJSON: the hand-written encoder knows
// every field. A Finding with all of them set (and one with none) must
// come out as encoding/json writes it; a field added to Finding, Evidence,
// Fix or PathVerdict without a line in appendFinding fails here.
func TestAppendFindingMatchesEncodingJSON(t *testing.T) {
	seed := 0
	var full Finding
	fill(reflect.ValueOf(&full).Elem(), &seed)
	for _, f := range []Finding{full, {}} {
		want, err := json.MarshalIndent(f, "    ", "  ")
		if err != nil {
			t.Fatal(err)
		}
		got, err := appendFinding(nil, &f)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("appendFinding differs from json.MarshalIndent:\n--- got\n%s\n--- want\n%s", got, want)
		}
	}
}

func TestWriteJSONMatchesEncoder(t *testing.T) {
	t.Run("empty", func(t *testing.T) { assertSameJSON(t, Report{}) })
	t.Run("no findings, warnings", func(t *testing.T) {
		assertSameJSON(t, Report{Warnings: []string{"a <b>", "\u2028"}, Summary: map[Verdict]int{}, Static: true})
	})

	seed := 0
	var full Finding
	fill(reflect.ValueOf(&full).Elem(), &seed)
	t.Run("every field", func(t *testing.T) {
		assertSameJSON(t, Report{Findings: []Finding{full}, Summary: map[Verdict]int{AtRisk: 1}})
	})

	// Empty but non-nil slices where omitempty drops them, nil pointers,
	// zero values.
	sparse := Finding{Hosts: []string{}, CollidesWith: []string{}, Paths: []PathVerdict{}, Notes: []string{},
		Evidence: []Evidence{{}, {FirstByteMs: new(float64), InMesh: new(bool)}}, Fixes: []Fix{{}, {Notes: []string{}}}}
	t.Run("sparse", func(t *testing.T) { assertSameJSON(t, Report{Findings: []Finding{sparse, {}}}) })

	// Numbers around encoding/json's switch to exponents.
	var floats []Evidence
	for _, v := range []float64{0, math.Copysign(0, -1), 1, 0.1, 1.5e-7, 1e-6, 9.99999e-7, 123456.789, 1e20, 1e21, 1.5e300, -2.5e-9, math.SmallestNonzeroFloat64, math.MaxFloat64} {
		floats = append(floats, Evidence{ConnectMs: v, FirstByteMs: &v})
	}
	t.Run("floats", func(t *testing.T) { assertSameJSON(t, Report{Findings: []Finding{{Evidence: floats}}}) })

	// Every byte, alone and in company, and random strings.
	var bytesFinding Finding
	for c := range 256 {
		bytesFinding.Hints = append(bytesFinding.Hints, string(rune(c)), string([]byte{byte(c)}), "a"+string([]byte{byte(c)})+"b")
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		bytesFinding.Notes = append(bytesFinding.Notes, string(b))
	}
	for r := rune(0x80); r < 0x3000; r += 7 {
		bytesFinding.Reason += string(r)
	}
	bytesFinding.Reason += string(rune(utf8.MaxRune))
	t.Run("strings", func(t *testing.T) { assertSameJSON(t, Report{Findings: []Finding{bytesFinding}}) })

	// Many findings: several blocks, encoded in parallel, in order.
	var many []Finding
	for i := range 3*findingsBlock + 5 {
		f := full
		f.Name = fmt.Sprintf("svc-%d", i)
		if i%3 == 0 {
			f = Finding{Name: f.Name}
		}
		many = append(many, f)
	}
	t.Run("many", func(t *testing.T) {
		assertSameJSON(t, Report{Findings: many, Warnings: []string{"w"}, Summary: map[Verdict]int{OK: 3, AtRisk: 2}})
	})
}

func TestWriteJSONUnsupportedFloat(t *testing.T) {
	nan := math.NaN()
	r := Report{Findings: []Finding{{}, {Evidence: []Evidence{{ConnectMs: 1, FirstByteMs: &nan}}}}}
	var b bytes.Buffer
	err := writeJSON(&b, r)
	if _, ok := errors.AsType[*json.UnsupportedValueError](err); !ok {
		t.Fatalf("err = %v, want json's UnsupportedValueError", err)
	}
	if b.Len() != 0 {
		t.Errorf("%d bytes written before the error, want none", b.Len())
	}
	// appendFinding alone says the same.
	if _, err := appendFinding(nil, &r.Findings[1]); err == nil {
		t.Error("appendFinding: no error for NaN")
	}
}
