package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// FixRecord is what one fix --apply changed, kept so fix --undo can put
// back exactly what was there before.
type FixRecord struct {
	AppliedAt time.Time `json:"appliedAt"`
	// Server is the API server the fix went to: undo refuses another.
	Server       string `json:"server"`
	FieldManager string `json:"fieldManager"`
	// Objects in the order they were applied (undo goes backwards).
	Objects []RecordedObject `json:"objects"`
}

// RecordedObject is one object a fix applied.
type RecordedObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	// Created: the object did not exist before the fix; undo deletes it.
	Created bool `json:"created"`
	// UID is the object's after the fix: undo deletes only that object.
	UID string `json:"uid,omitempty"`
	// Previous is the whole object as the API server returned it before
	// the fix (absent when Created): undo restores its spec, labels and
	// annotations.
	Previous json.RawMessage `json:"previous,omitempty"`
	// Applied is the object as the API server returned it after the fix:
	// undo refuses to overwrite an object that changed since.
	Applied json.RawMessage `json:"applied,omitempty"`
	// Applying: written before the apply, cleared after it; an object
	// still marked was being applied when the command stopped.
	Applying bool `json:"applying,omitempty"`
}

// Ref is "Kind namespace/name".
func (o RecordedObject) Ref() string { return o.Kind + " " + o.Namespace + "/" + o.Name }

// recordFile is the document on disk: every fix --apply not yet undone,
// oldest first.
type recordFile struct {
	Kind    string      `json:"kind"`
	Records []FixRecord `json:"records"`
}

const recordKind = "kubectl-serverfirst/fix-records"

// DefaultRecordPath is where fix --apply keeps its records without
// --record: the user's state directory ($XDG_STATE_HOME, else
// ~/.local/state), which outlives the shell and the cluster's objects.
func DefaultRecordPath() (string, error) {
	dir := os.Getenv("XDG_STATE_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("no home directory for the fix record (give --record FILE): %w", err)
		}
		dir = filepath.Join(home, ".local", "state")
	}
	return filepath.Join(dir, "kubectl-serverfirst", "fix-records.json"), nil
}

// ReadRecords reads a record file; a missing file has no records.
func ReadRecords(path string) ([]FixRecord, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fix record: %w", err)
	}
	var f recordFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("fix record %s: not a record file: %v", path, err)
	}
	if f.Kind != recordKind {
		return nil, fmt.Errorf("fix record %s: kind %q, want %q", path, f.Kind, recordKind)
	}
	return f.Records, nil
}

// WriteRecords replaces the record file atomically (temp file, rename),
// readable by its owner only: previous objects may hold anything.
func WriteRecords(path string, records []FixRecord) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("fix record: %w", err)
	}
	b, err := json.MarshalIndent(recordFile{Kind: recordKind, Records: append([]FixRecord{}, records...)}, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fix-records-*")
	if err != nil {
		return fmt.Errorf("fix record: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("fix record: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("fix record: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("fix record: %w", err)
	}
	return nil
}
