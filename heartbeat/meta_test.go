package heartbeat

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestMetaRoundTrip(t *testing.T) {
	tests := []Meta{
		{},
		{Pair: "sip-1", Role: "active", Server: true, Health: HealthHealthy, Version: "0.1.0", API: "127.0.0.1:7070", Raft: "127.0.0.1:7071"},
		{Role: "witness", Server: true, Health: HealthUnknown},
		{Pair: "sip-2", Role: "standby", Health: HealthUnhealthy, FailingCheck: "sip-port", Output: `dial tcp 127.0.0.1:5060: connect: connection refused <&> "quoted"`},
		{Pair: "π", Output: "ünïcödé ✓"},
	}
	for _, m := range tests {
		b, err := EncodeMeta(m)
		if err != nil {
			t.Fatalf("EncodeMeta(%+v) error %v; want nil", m, err)
		}
		if len(b) > MetaMaxSize {
			t.Fatalf("EncodeMeta(%+v) = %d bytes; want <= %d", m, len(b), MetaMaxSize)
		}
		got, err := DecodeMeta(b)
		if err != nil {
			t.Fatalf("DecodeMeta(%s) error %v; want nil", b, err)
		}
		want := m
		if want.Health == "" {
			want.Health = HealthUnknown
		}
		if got != want {
			t.Fatalf("DecodeMeta(EncodeMeta(m)) = %+v; want %+v", got, want)
		}
	}
}

func TestMetaCompact(t *testing.T) {
	m := Meta{Pair: "sip-1", Role: "standby", Server: true, Health: HealthHealthy, Version: "0.1.0", API: "10.0.0.11:7070", Raft: "10.0.0.11:7071"}
	b, err := EncodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("typical meta: %d bytes: %s", len(b), b)
	if len(b) > 128 {
		t.Fatalf("typical meta is %d bytes; want <= 128 (one-letter keys, empty fields omitted)", len(b))
	}
}

func TestMetaTruncation(t *testing.T) {
	long := strings.Repeat("é<", 400) // multi-byte runes and a character JSON may escape
	m := Meta{Pair: "sip-1", Role: "active", Health: HealthUnhealthy, FailingCheck: "check-sip", Output: long}
	b, err := EncodeMeta(m)
	if err != nil {
		t.Fatalf("EncodeMeta with long output: %v; want nil (output truncated)", err)
	}
	if len(b) > MetaMaxSize {
		t.Fatalf("encoded %d bytes; want <= %d", len(b), MetaMaxSize)
	}
	got, err := DecodeMeta(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.FailingCheck != "check-sip" {
		t.Fatalf("FailingCheck = %q; want %q kept whole", got.FailingCheck, "check-sip")
	}
	if !strings.HasSuffix(got.Output, ellipsis) || !utf8.ValidString(got.Output) || len(got.Output) < 200 {
		t.Fatalf("Output = %q (%d bytes); want a long valid UTF-8 prefix ending in %q", got.Output, len(got.Output), ellipsis)
	}
	if !strings.HasPrefix(long, strings.TrimSuffix(got.Output, ellipsis)) {
		t.Fatalf("Output is not a prefix of the original")
	}

	// A failing check name that alone is too long is truncated as well.
	m = Meta{Health: HealthUnhealthy, FailingCheck: strings.Repeat("n", 1000), Output: "x"}
	b, err = EncodeMeta(m)
	if err != nil || len(b) > MetaMaxSize {
		t.Fatalf("EncodeMeta with long check name: %d bytes, %v; want <= %d, nil", len(b), err, MetaMaxSize)
	}
}

func TestMetaTooLarge(t *testing.T) {
	m := Meta{Pair: strings.Repeat("p", 600), Health: HealthHealthy}
	if _, err := EncodeMeta(m); !errors.Is(err, ErrMetaTooLarge) {
		t.Fatalf("EncodeMeta(600-byte pair) error %v; want ErrMetaTooLarge", err)
	}
	if _, err := EncodeMeta(Meta{Health: "sick"}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("EncodeMeta(health sick) error %v; want ErrInvalidConfig", err)
	}
}

func TestDecodeMetaBad(t *testing.T) {
	tests := []struct {
		in      string
		wantErr bool
		health  string
	}{
		{"", false, HealthUnknown},
		{"{}", false, HealthUnknown},
		{`{"h":"healthy"}`, false, HealthHealthy},
		{`{"h":"weird"}`, false, HealthUnknown},
		{`{"h":3}`, true, HealthUnknown},
		{"not json", true, HealthUnknown},
		{`{"p":"x"`, true, HealthUnknown},
		{"\xff\xfe", true, HealthUnknown},
		{"[" + strings.Repeat(`"x",`, 200) + `"x"]`, true, HealthUnknown},
	}
	for _, tt := range tests {
		m, err := DecodeMeta([]byte(tt.in))
		if (err != nil) != tt.wantErr || m.Health != tt.health {
			t.Errorf("DecodeMeta(%.20q) = health %q, err %v; want health %q, error %v", tt.in, m.Health, err, tt.health, tt.wantErr)
		}
	}
}

func FuzzDecodeMeta(f *testing.F) {
	for _, m := range []Meta{{}, {Pair: "sip-1", Role: "active", Server: true, Health: HealthUnhealthy, FailingCheck: "c", Output: "o"}} {
		b, err := EncodeMeta(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"h":"x","s":"notbool"}`))
	f.Add([]byte("\x00\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMeta(b)
		if err != nil {
			return
		}
		switch m.Health {
		case HealthHealthy, HealthUnhealthy, HealthUnknown:
		default:
			t.Fatalf("DecodeMeta(%q).Health = %q; want one of the three values", b, m.Health)
		}
		// Whatever decodes must encode again within the limit (or say why).
		if out, err := EncodeMeta(m); err == nil && len(out) > MetaMaxSize {
			t.Fatalf("re-encoded %d bytes; want <= %d", len(out), MetaMaxSize)
		}
	})
}

func TestParseMemberlistLine(t *testing.T) {
	tests := []struct {
		in    string
		level slog.Level
		text  string
	}{
		{"[DEBUG] memberlist: Stream connection from=127.0.0.1:1\n", slog.LevelDebug, "memberlist: Stream connection from=127.0.0.1:1"},
		{"[INFO] memberlist: Suspect n3 has failed, no acks received\n", slog.LevelInfo, "memberlist: Suspect n3 has failed, no acks received"},
		// Routine on a healthy start or shutdown: lowered.
		{"[WARN] memberlist: Refuting a suspect message (from: n1)", slog.LevelInfo, "memberlist: Refuting a suspect message (from: n1)"},
		{"[ERR] memberlist: Failed fallback TCP ping: timeout 100ms: read tcp 127.0.0.1:55104->127.0.0.1:7172: i/o timeout", slog.LevelInfo,
			"memberlist: Failed fallback TCP ping: timeout 100ms: read tcp 127.0.0.1:55104->127.0.0.1:7172: i/o timeout"},
		{"[WARN] memberlist: Was able to connect to sip-b over TCP but UDP probes failed, network may be misconfigured", slog.LevelInfo,
			"memberlist: Was able to connect to sip-b over TCP but UDP probes failed, network may be misconfigured"},
		{"[ERR] memberlist: Error reading UDP packet: read udp 127.0.0.1:7072: use of closed network connection", slog.LevelDebug,
			"memberlist: Error reading UDP packet: read udp 127.0.0.1:7072: use of closed network connection"},
		// Not routine: kept.
		{"[WARN] memberlist: Refusing to join: bad key", slog.LevelWarn, "memberlist: Refusing to join: bad key"},
		{"[ERR] memberlist: Failed to send gossip\r\n", slog.LevelError, "memberlist: Failed to send gossip"},
		{"no level", slog.LevelInfo, "no level"},
		{"", slog.LevelInfo, ""},
	}
	for _, tt := range tests {
		level, text := parseMemberlistLine(tt.in)
		if level != tt.level || text != tt.text {
			t.Errorf("parseMemberlistLine(%q) = %v, %q; want %v, %q", tt.in, level, text, tt.level, tt.text)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	good := DefaultConfig()
	good.Name = "n1"
	if err := good.Validate(); err != nil {
		t.Fatalf("DefaultConfig with a name: %v; want nil", err)
	}
	tests := []struct {
		name   string
		mutate func(*Config)
		field  string
	}{
		{"no name", func(c *Config) { c.Name = "" }, "Name"},
		{"bad bind", func(c *Config) { c.BindAddr = "localhost" }, "BindAddr"},
		{"bad port", func(c *Config) { c.BindPort = 70000 }, "BindPort"},
		{"bad key", func(c *Config) { c.SecretKey = []byte("short") }, "SecretKey"},
		{"timeout above interval", func(c *Config) { c.Timing.ProbeTimeout = 2 * c.Timing.ProbeInterval }, "ProbeTimeout"},
		{"no suspicion", func(c *Config) { c.Timing.SuspicionMult = 0 }, "SuspicionMult"},
		{"meta too big", func(c *Config) { c.Meta.Pair = strings.Repeat("x", 600) }, "Meta"},
	}
	for _, tt := range tests {
		c := good
		tt.mutate(&c)
		err := c.Validate()
		if err == nil || !strings.Contains(err.Error(), tt.field) {
			t.Errorf("%s: Validate() = %v; want an error naming %s", tt.name, err, tt.field)
		}
	}
	for _, tm := range []Timing{LANFast(), MemberlistDefaultLAN()} {
		if err := tm.Validate(); err != nil {
			t.Errorf("built-in timing invalid: %v", err)
		}
	}
}

func TestExpectedDetection(t *testing.T) {
	for _, n := range []int{3, 9} {
		fastTyp, fastWorst := LANFast().ExpectedDetection(n)
		defTyp, defWorst := MemberlistDefaultLAN().ExpectedDetection(n)
		t.Logf("n=%d LANFast typical %v worst %v; memberlist default typical %v worst %v", n, fastTyp, fastWorst, defTyp, defWorst)
		if fastTyp >= time.Second || fastTyp > fastWorst || defTyp > defWorst || fastTyp >= defTyp {
			t.Errorf("n=%d: LANFast typical %v worst %v, default typical %v worst %v; want LANFast typical < 1s <= default typical, typical <= worst",
				n, fastTyp, fastWorst, defTyp, defWorst)
		}
	}
}
