package systemtest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgesink/edgesink/deploy/testtools"
	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// The two ways of README's "Many sites, one broker cluster", each proven
// with its shipped example config: the central broker stops while 200
// mails arrive at the site, then comes back, and a consumer at the centre
// gets all 200.

// centre is the central broker: persistent (its consumers' sessions and
// queues survive the restart), TLS for the sites, a plain loopback
// listener for the test's consumer.
type centre struct {
	*mqtttest.Mosquitto
	TLSAddr, CAFile string
}

func startCentre(t *testing.T) centre {
	t.Helper()
	dir := t.TempDir()
	mqtttest.WriteTestPKI(t, dir)
	tlsPort := testtools.FreePort(t)
	m := mqtttest.StartMosquittoConfig(t, func(port int) string {
		return fmt.Sprintf("persistence true\npersistence_location %s/\nautosave_interval 0\n"+
			"allow_anonymous true\nmax_queued_messages 100000\nset_tcp_nodelay true\n"+
			"listener %d 127.0.0.1\n"+
			"listener %d 127.0.0.1\ncafile %s\ncertfile %s\nkeyfile %s\n",
			dir, port, tlsPort, filepath.Join(dir, "ca.pem"), filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"))
	})
	return centre{Mosquitto: m, TLSAddr: fmt.Sprintf("127.0.0.1:%d", tlsPort), CAFile: filepath.Join(dir, "ca.pem")}
}

// shipped reads an example config from deploy/ and templates it: each old
// string must be there (a drifted example fails the test, not silently
// proves something else).
func shipped(t *testing.T, name string, replace ...string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "..", "deploy", name))
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	for i := 0; i+1 < len(replace); i += 2 {
		if !strings.Contains(s, replace[i]) {
			t.Fatalf("deploy/%s no longer has %q", name, replace[i])
		}
		s = strings.ReplaceAll(s, replace[i], replace[i+1])
	}
	return s
}

// outage sends 200 mails to the site's edgesink while the centre is down,
// then restarts the centre and waits for all of them there.
func outage(t *testing.T, c centre, smtpAddr string, sub *mqtttest.Subscriber, filter string) {
	t.Helper()
	c.Stop()
	acked, refused, errs := smtptest.SendMany(func() string { return smtpAddr }, "wan", 200, 8, nil)
	if len(refused) > 0 {
		t.Fatalf("%d of 200 mails refused while the centre was down: %v", len(refused), errs[0])
	}
	c.Restart()
	mqtttest.SubscribeSession(t, c.Addr(), filter, "centre-consumer", sub)
	seen := sub.AwaitSubjects(t, acked, 90*time.Second)
	t.Logf("centre outage: %d mails acknowledged at the site, %d arrived at the centre, %d duplicates",
		len(acked), len(seen), mqtttest.Duplicates(seen))
}

// siteEdgesink writes conf and starts the real binary with it.
func siteEdgesink(t *testing.T, conf string) string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "edgesink.yaml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	_, addr := startBinary(t, binary(t), "--config", path, "--smtp-listen", "127.0.0.1:0",
		"--spool-dir", filepath.Join(dir, "spool"))
	return addr
}

// A site polled by one IP sends 200 mails at once: the test's client is
// one address, so the per-address limits are raised.
const siteSMTPLimits = "smtp:\n  max_mails_per_minute: 10000\n  max_connections_per_ip: 32\n"

// TestSiteBridgedToCentre: edgesink publishes to the site's mosquitto,
// which bridges (deploy/mosquitto-bridge.conf) to the centre over TLS.
func TestSiteBridgedToCentre(t *testing.T) {
	c := startCentre(t)
	siteDir := t.TempDir()
	site := mqtttest.StartMosquittoConfig(t, func(port int) string {
		return shipped(t, "mosquitto-bridge.conf",
			"listener 1883 127.0.0.1", fmt.Sprintf("listener %d 127.0.0.1", port),
			"persistence_location /var/lib/mosquitto/", "persistence_location "+siteDir+"/",
			"address central.example.net:8883", "address "+c.TLSAddr,
			"bridge_cafile /etc/mosquitto/certs/central-ca.pem", "bridge_cafile "+c.CAFile,
			"restart_timeout 2 30", "restart_timeout 1 1")
	})
	const filter = "edgesink/barn1/+/alert"
	sub := mqtttest.SubscribeSession(t, c.Addr(), filter, "centre-consumer", nil)
	smtpAddr := siteEdgesink(t, "site: barn1\n"+siteSMTPLimits+"mqtt:\n  broker: "+site.URL()+"\n  max_reconnect_interval: 1s\nspool:\n  retry_max: 1s\n")

	// The bridge is up: an alert crosses it.
	if err := sendPlain(smtpAddr, "bridged"); err != nil {
		t.Fatal(err)
	}
	sub.AwaitSubjects(t, []string{"bridged"}, 30*time.Second)
	outage(t, c, smtpAddr, sub, filter)
}

// TestSiteStraightToCentre: edgesink publishes to the centre itself over
// TLS (deploy/edgesink-central.yaml); its disk spool rides out the outage.
func TestSiteStraightToCentre(t *testing.T) {
	c := startCentre(t)
	const filter = "edgesink/barn1/+/alert"
	sub := mqtttest.SubscribeSession(t, c.Addr(), filter, "centre-consumer", nil)
	conf := shipped(t, "edgesink-central.yaml",
		"ssl://central.example.net:8883", "ssl://"+c.TLSAddr,
		"/etc/edgesink/central-ca.pem", c.CAFile,
		"max_reconnect_interval: 60s", "max_reconnect_interval: 1s",
		"retry_max: 2m", "retry_max: 1s",
		"smtp:\n", siteSMTPLimits)
	smtpAddr := siteEdgesink(t, conf)

	if err := sendPlain(smtpAddr, "direct"); err != nil {
		t.Fatal(err)
	}
	sub.AwaitSubjects(t, []string{"direct"}, 30*time.Second)
	outage(t, c, smtpAddr, sub, filter)
}
