package sink

import "strings"

// MaxDeviceLen keeps device names short enough for topic levels and LED signs.
const MaxDeviceLen = 64

// UnknownDevice is the device name of a mail that names no sender at all.
const UnknownDevice = "unknown"

// DeviceName picks the short name an alert is filed under: the AUTH user if
// the client logged in, else the local part of the envelope sender, else the
// local part of the first From address. The result is lower case, at most 64
// bytes of [a-z0-9._-], and never empty, so it is safe as an MQTT topic level.
func DeviceName(authUser, mailFrom string, from []string) string {
	candidates := []string{authUser, LocalPart(mailFrom)}
	if len(from) > 0 {
		candidates = append(candidates, LocalPart(from[0]))
	}
	for _, c := range candidates {
		if name := SafeName(c); name != "" {
			return name
		}
	}
	return UnknownDevice
}

// LocalPart returns the part of an address before the last '@'.
func LocalPart(addr string) string {
	addr = strings.Trim(addr, "<> ")
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[:i]
	}
	return addr
}

// DomainPart returns the part of an address after the last '@', or "".
func DomainPart(addr string) string {
	addr = strings.Trim(addr, "<> ")
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return addr[i+1:]
	}
	return ""
}

// SafeName lowercases s and replaces every byte outside [a-z0-9._-] with
// '_', collapsing runs and trimming separators at the ends. It returns ""
// when nothing of s is left.
func SafeName(s string) string {
	var b strings.Builder
	lastUnderscore := false
	for _, r := range strings.ToLower(s) {
		ok := r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_'
		if !ok || r == '_' {
			if !lastUnderscore {
				b.WriteByte('_')
			}
			lastUnderscore = true
			continue
		}
		b.WriteRune(r)
		lastUnderscore = false
		if b.Len() >= MaxDeviceLen {
			break
		}
	}
	return strings.Trim(b.String(), "_.-")
}
