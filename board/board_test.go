package board

import "testing"

func TestFromModel(t *testing.T) {
	tests := []struct {
		model, goarch, want string
		known               bool
	}{
		{"Raspberry Pi Zero W Rev 1.1\x00", "arm", "pi-zero", true},
		{"Raspberry Pi Zero Rev 1.3", "arm", "pi-zero", true},
		{"Raspberry Pi Model B Rev 2", "arm", "pi-zero", true},
		{"Raspberry Pi Model B Plus Rev 1.2", "arm", "pi-zero", true},
		{"Raspberry Pi 2 Model B Rev 1.1", "arm", "pi-2", true},
		{"Raspberry Pi 3 Model B Plus Rev 1.3", "arm64", "pi-arm64", true},
		{"Raspberry Pi 3 Model B Rev 1.2", "arm", "pi-armv7", true},
		{"Raspberry Pi 4 Model B Rev 1.4", "arm64", "pi-arm64", true},
		{"Raspberry Pi 5 Model B Rev 1.0", "arm64", "pi-arm64", true},
		{"Raspberry Pi Zero 2 W Rev 1.0", "arm64", "pi-arm64", true},
		{"Raspberry Pi Zero 2 W Rev 1.0", "arm", "pi-armv7", true},
		{"Raspberry Pi Compute Module 4 Rev 1.0", "arm64", "pi-arm64", true},
		{"", "amd64", "linux-amd64", false},
		{"Pine64 RockPro64", "arm64", "linux-arm64", false},
		{"QEMU Virtual Machine", "riscv64", "linux-riscv64", false},
	}
	for _, tt := range tests {
		p, known := FromModel(tt.model, tt.goarch)
		if p.Name != tt.want || known != tt.known {
			t.Errorf("FromModel(%q, %s) = %s (known %v), want %s (%v)", tt.model, tt.goarch, p.Name, known, tt.want, tt.known)
		}
	}
}

func TestProfilesAreComplete(t *testing.T) {
	for _, p := range All() {
		if p.Name == "" || p.GOOS != "linux" || p.GOARCH == "" || p.StateDir == "" {
			t.Errorf("incomplete profile %+v", p)
		}
		if (p.GOARCH == "arm") != (p.GOARM != "") {
			t.Errorf("%s: GOARM %q with GOARCH %s", p.Name, p.GOARM, p.GOARCH)
		}
		if got, ok := Lookup(p.Name); !ok || got.Name != p.Name {
			t.Errorf("Lookup(%s) failed", p.Name)
		}
	}
	if _, ok := Lookup("pi-zero"); !ok {
		t.Error("no pi-zero profile")
	}
}
