package sink

import (
	"strings"
	"testing"
)

func TestDeviceName(t *testing.T) {
	tests := []struct {
		auth, mailFrom string
		from           []string
		want           string
	}{
		{"", "cam-garage@cams.lan", nil, "cam-garage"},
		{"Printer1", "printer@office.lan", nil, "printer1"},
		{"", "", []string{"ups@rack.lan"}, "ups"},
		{"", "<>", nil, "unknown"},
		{"", "Weird+Name/#x@lan", nil, "weird_name_x"},
		{"", "ßüper@lan", nil, "per"},
		{"", "@@@", []string{"---@x"}, "unknown"},
		{"", strings.Repeat("a", 100) + "@lan", nil, strings.Repeat("a", 64)},
	}
	for _, tt := range tests {
		if got := DeviceName(tt.auth, tt.mailFrom, tt.from); got != tt.want {
			t.Errorf("DeviceName(%q, %q, %q) = %q, want %q", tt.auth, tt.mailFrom, tt.from, got, tt.want)
		}
	}
}
