// Package systemtest holds edgesink's system tests: they build the real
// binary once and run it as a device or an operator would, against real
// peers (mosquitto, socat ptys, swaks, a disk that loses what was not
// fsynced, a throwaway service user), driving it by SMTP, signals and its
// own command line. Crashes, power cuts, abuse, memory figures, reloads and
// two instances on one board live here; tests of the wiring in process
// stay with package main. The package has no code outside its tests.
package systemtest
