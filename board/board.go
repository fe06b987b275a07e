// Package board knows the machines edgesink runs on: for each supported
// board, the Go target to build for and the defaults that suit it (serial
// device, activity LED, state directory). At run time it detects the board
// from the device tree. Standard library only.
package board

import (
	"os"
	"runtime"
	"strings"
)

// Profile describes one board.
type Profile struct {
	Name         string // short id used by make BOARD=...
	Description  string
	GOOS         string
	GOARCH       string
	GOARM        string // "6" or "7" for GOARCH=arm, else ""
	SerialDevice string // default serial output device, "" if none
	LED          string // sysfs LED directory, "" if none
	StateDir     string // where the installed service keeps its state

	// modelPrefixes match /proc/device-tree/model.
	modelPrefixes []string
}

const piStateDir = "/var/lib/edgesink"

// Profiles lists every supported board, most specific first.
var profiles = []Profile{
	{Name: "pi-zero", Description: "Raspberry Pi Zero, Zero W and 1 (ARMv6)", GOOS: "linux", GOARCH: "arm", GOARM: "6",
		SerialDevice: "/dev/serial0", LED: "/sys/class/leds/ACT", StateDir: piStateDir,
		modelPrefixes: []string{"Raspberry Pi Zero W", "Raspberry Pi Zero Rev", "Raspberry Pi Model", "Raspberry Pi Compute Module Rev"}},
	{Name: "pi-2", Description: "Raspberry Pi 2 (ARMv7)", GOOS: "linux", GOARCH: "arm", GOARM: "7",
		SerialDevice: "/dev/serial0", LED: "/sys/class/leds/ACT", StateDir: piStateDir,
		modelPrefixes: []string{"Raspberry Pi 2"}},
	{Name: "pi-arm64", Description: "Raspberry Pi 3, 4, 5 and Zero 2 W (64-bit OS)", GOOS: "linux", GOARCH: "arm64",
		SerialDevice: "/dev/serial0", LED: "/sys/class/leds/ACT", StateDir: piStateDir,
		modelPrefixes: []string{"Raspberry Pi 3", "Raspberry Pi 4", "Raspberry Pi 5", "Raspberry Pi Zero 2", "Raspberry Pi Compute Module 3", "Raspberry Pi Compute Module 4", "Raspberry Pi 400", "Raspberry Pi 500"}},
	{Name: "pi-armv7", Description: "Raspberry Pi 3, 4, 5 and Zero 2 W (32-bit OS)", GOOS: "linux", GOARCH: "arm", GOARM: "7",
		SerialDevice: "/dev/serial0", LED: "/sys/class/leds/ACT", StateDir: piStateDir},
	{Name: "linux-amd64", Description: "Generic Linux on x86-64", GOOS: "linux", GOARCH: "amd64", StateDir: piStateDir},
	{Name: "linux-arm64", Description: "Generic Linux on 64-bit ARM", GOOS: "linux", GOARCH: "arm64", StateDir: piStateDir},
}

// All returns every profile.
func All() []Profile {
	out := make([]Profile, len(profiles))
	copy(out, profiles)
	return out
}

// Lookup returns the profile called name.
func Lookup(name string) (Profile, bool) {
	for _, p := range profiles {
		if p.Name == name {
			return p, true
		}
	}
	return Profile{}, false
}

// FromModel picks the profile for a device-tree model string such as
// "Raspberry Pi 4 Model B Rev 1.4". For a 64-bit Pi running a 32-bit OS
// (goarch "arm") it returns the armv7 profile. ok is false for a machine that
// is not a known board; the generic profile for goarch is returned then.
func FromModel(model, goarch string) (p Profile, ok bool) {
	model = strings.TrimRight(strings.TrimSpace(model), "\x00")
	for _, pr := range profiles {
		for _, prefix := range pr.modelPrefixes {
			if strings.HasPrefix(model, prefix) {
				if pr.GOARCH == "arm64" && goarch == "arm" {
					armv7, _ := Lookup("pi-armv7")
					return armv7, true
				}
				return pr, true
			}
		}
	}
	return generic(goarch), false
}

func generic(goarch string) Profile {
	if goarch == "arm64" {
		p, _ := Lookup("linux-arm64")
		return p
	}
	p, _ := Lookup("linux-amd64")
	if goarch != "amd64" {
		p.Name, p.Description, p.GOARCH = "linux-"+goarch, "Generic Linux on "+goarch, goarch
	}
	return p
}

// DeviceTreeModel is where Linux exposes the board model.
const DeviceTreeModel = "/proc/device-tree/model"

// Detect reads the device-tree model of this machine and returns its
// profile, the raw model text, and whether the board is a known one.
func Detect() (p Profile, model string, ok bool) {
	b, err := os.ReadFile(DeviceTreeModel)
	if err != nil {
		return generic(runtime.GOARCH), "", false
	}
	model = strings.TrimRight(string(b), "\x00\n")
	p, ok = FromModel(model, runtime.GOARCH)
	return p, model, ok
}
