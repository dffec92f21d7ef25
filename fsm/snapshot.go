package fsm

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
)

// SnapshotVersion is the version of the snapshot format.
const SnapshotVersion = 1

// snapshotFile is the shape of a snapshot: {"v":1,"state":{...}}.
// WriteSnapshot and ReadSnapshot stream it piece by piece, and a test
// checks that the stream equals json.Marshal of this struct.
type snapshotFile struct {
	V     int    `json:"v"`
	State *State `json:"state"`
}

// WriteSnapshot writes s as a snapshot: deterministic JSON
// {"v":1,"state":{...}} (map keys sorted), so equal states give equal
// bytes, the bytes json.Marshal would give. It streams: one node, plan,
// module or event at a time is encoded, never the whole state at once.
func WriteSnapshot(w io.Writer, s *State) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	sw := &snapWriter{w: bw}
	sw.raw(`{"v":`)
	sw.value(SnapshotVersion)
	sw.raw(`,"state":`)
	if s == nil {
		sw.raw(`null}`)
	} else {
		sw.raw(`{"nodes":`)
		writeMap(sw, s.Nodes)
		sw.raw(`,"blobs":`)
		writeMap(sw, s.Blobs)
		sw.raw(`,"plans":`)
		writeMap(sw, s.Plans)
		sw.raw(`,"plan_seq":`)
		sw.value(s.PlanSeq)
		sw.raw(`,"desired":`)
		writeMap(sw, s.Desired)
		sw.raw(`,"observed":`)
		writeMap(sw, s.Observed)
		sw.raw(`,"history":`)
		if s.History == nil {
			sw.raw("null")
		} else {
			sw.raw("[")
			for i, e := range s.History {
				if i > 0 {
					sw.raw(",")
				}
				sw.value(e)
			}
			sw.raw("]")
		}
		sw.raw(`,"index":`)
		sw.value(s.Index)
		sw.raw(`}}`)
	}
	if sw.err != nil {
		return sw.err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing state: %w", err)
	}
	return nil
}

// snapWriter writes JSON pieces, keeping the first error.
type snapWriter struct {
	w   *bufio.Writer
	err error
}

func (sw *snapWriter) raw(s string) {
	if sw.err == nil {
		if _, err := sw.w.WriteString(s); err != nil {
			sw.err = fmt.Errorf("writing state: %w", err)
		}
	}
}

func (sw *snapWriter) value(v any) {
	if sw.err != nil {
		return
	}
	data, err := json.Marshal(v)
	if err != nil {
		sw.err = fmt.Errorf("encoding state: %w", err)
		return
	}
	if _, err := sw.w.Write(data); err != nil {
		sw.err = fmt.Errorf("writing state: %w", err)
	}
}

// writeMap writes m as a JSON object with sorted keys, one value at a time.
func writeMap[V any](sw *snapWriter, m map[string]V) {
	if m == nil {
		sw.raw("null")
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	sw.raw("{")
	for i, k := range keys {
		if i > 0 {
			sw.raw(",")
		}
		sw.value(k)
		sw.raw(":")
		sw.value(m[k])
	}
	sw.raw("}")
}

// ReadSnapshot reads a snapshot written by WriteSnapshot, one node, plan,
// module or event at a time (never the whole file at once). Unknown fields
// are refused.
func ReadSnapshot(r io.Reader) (*State, error) {
	dec := json.NewDecoder(bufio.NewReaderSize(r, 64<<10))
	dec.DisallowUnknownFields()
	s, err := readSnapshotFile(dec)
	if err != nil {
		return nil, fmt.Errorf("decoding snapshot: %w", err)
	}
	s.normalize()
	for id, p := range s.Plans {
		if !validPlanState(p.State) {
			return nil, fmt.Errorf("snapshot plan %s has unknown state %q: %w", id, p.State, ErrUnsupported)
		}
	}
	return s, nil
}

func readSnapshotFile(dec *json.Decoder) (*State, error) {
	if err := expectDelim(dec, '{'); err != nil {
		return nil, err
	}
	var (
		v     int
		haveV bool
		s     *State
	)
	for dec.More() {
		key, err := readKey(dec)
		if err != nil {
			return nil, err
		}
		switch key {
		case "v":
			if err := dec.Decode(&v); err != nil {
				return nil, err
			}
			if v != SnapshotVersion {
				return nil, fmt.Errorf("snapshot version %d is not supported (want %d): %w", v, SnapshotVersion, ErrUnsupported)
			}
			haveV = true
		case "state":
			if !haveV {
				return nil, fmt.Errorf("snapshot state comes before its version: %w", ErrInvalid)
			}
			if s, err = readState(dec); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("unknown field %q", clip(key, 64))
		}
	}
	if err := expectDelim(dec, '}'); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("trailing data after the JSON value")
	}
	if !haveV {
		return nil, fmt.Errorf("snapshot has no version: %w", ErrInvalid)
	}
	if s == nil {
		return nil, fmt.Errorf("snapshot has no state: %w", ErrInvalid)
	}
	return s, nil
}

func readState(dec *json.Decoder) (*State, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("state: want an object, got %v", tok)
	}
	s := &State{}
	for dec.More() {
		key, err := readKey(dec)
		if err != nil {
			return nil, err
		}
		switch key {
		case "nodes":
			err = readMap(dec, &s.Nodes)
		case "blobs":
			err = readMap(dec, &s.Blobs)
		case "plans":
			err = readMap(dec, &s.Plans)
		case "plan_seq":
			err = dec.Decode(&s.PlanSeq)
		case "desired":
			err = readMap(dec, &s.Desired)
		case "observed":
			err = readMap(dec, &s.Observed)
		case "history":
			err = readHistory(dec, &s.History)
		case "index":
			err = dec.Decode(&s.Index)
		default:
			err = fmt.Errorf("state: unknown field %q", clip(key, 64))
		}
		if err != nil {
			return nil, fmt.Errorf("state %s: %w", clip(key, 64), err)
		}
	}
	return s, expectDelim(dec, '}')
}

// readMap reads a JSON object (or null) into *m one value at a time.
func readMap[V any](dec *json.Decoder, m *map[string]V) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		*m = nil
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fmt.Errorf("want an object, got %v", tok)
	}
	*m = map[string]V{}
	for dec.More() {
		key, err := readKey(dec)
		if err != nil {
			return err
		}
		var v V
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("%s: %w", clip(key, 64), err)
		}
		(*m)[key] = v
	}
	return expectDelim(dec, '}')
}

func readHistory(dec *json.Decoder, h *[]Event) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok == nil {
		*h = nil
		return nil
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fmt.Errorf("want an array, got %v", tok)
	}
	*h = []Event{}
	for dec.More() {
		var e Event
		if err := dec.Decode(&e); err != nil {
			return fmt.Errorf("event %d: %w", len(*h)+1, err)
		}
		*h = append(*h, e)
	}
	return expectDelim(dec, ']')
}

func readKey(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	key, ok := tok.(string)
	if !ok {
		return "", fmt.Errorf("want an object key, got %v", tok)
	}
	return key, nil
}

func expectDelim(dec *json.Decoder, want json.Delim) error {
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("want %v, got %v", want, tok)
	}
	return nil
}
