package main

import (
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/edgesink/edgesink/forward/broker"
	"github.com/edgesink/edgesink/forward/spool"
	"github.com/edgesink/edgesink/sink/smtpd"
)

// Files the embedded broker keeps beside the instance lock (the spool
// directory in disk mode, else spool.dir or the state directory): one
// instance, one credential.
const (
	// brokerCredentialName holds the password edgesink's own output logs
	// in to the embedded broker with (as broker.PublisherUser): made at
	// the first start of a release that has broker logins, 0600, never
	// configured by the user.
	brokerCredentialName = "broker-credential"
	// brokerUpgradeName marks an upgraded board whose configuration ran an
	// open broker on the LAN before broker logins existed; it keeps doing
	// so, with a warning at every start (brokerAnonymity).
	brokerUpgradeName = "broker-anonymous-upgrade"
)

// brokerAnonymity decides whether an embedded broker without users may
// listen beyond loopback, for the instance directory dir. earlierStart
// tells that an edgesink had started on dir before (its lock file was
// there). The rule:
//
//   - users configured, loopback only, or mqtt.embedded_allow_anonymous:
//     nothing to decide;
//   - dir holds brokerUpgradeName: an upgraded board, runs anonymously
//     with a warning;
//   - an edgesink started on dir before but never made the broker
//     credential: the release before broker logins ran this board, with
//     this configuration: it is an upgrade. With record, brokerUpgradeName
//     is written so that later starts (which find the credential) know;
//   - otherwise a new configuration: refused (broker.ErrOpenOnLAN).
//
// warning is "" when there is nothing to warn about.
func brokerAnonymity(bc broker.Config, dir string, earlierStart, record bool) (warning string, err error) {
	if !bc.OpenOnLAN() || bc.AllowAnonymous {
		return "", nil
	}
	const warn = "the embedded MQTT broker accepts every client on the network (an upgraded configuration: " +
		"this release keeps it running as before); anyone on the LAN can read and forge alerts: " +
		"add mqtt.embedded_users, or set mqtt.embedded_allow_anonymous: true to say it is on purpose"
	marker := filepath.Join(dir, brokerUpgradeName)
	if _, err := os.Stat(marker); err == nil {
		return warn, nil
	}
	_, cerr := os.Stat(filepath.Join(dir, brokerCredentialName))
	if !earlierStart || !errors.Is(cerr, os.ErrNotExist) {
		return "", broker.ErrOpenOnLAN
	}
	if record {
		note := "edgesink: this board ran an open MQTT broker on the LAN before broker logins existed; " +
			"it keeps doing so (with a warning) until mqtt.embedded_users is set. Delete this file to refuse it.\n"
		if err := os.WriteFile(marker, []byte(note), 0o600); err != nil {
			return "", fmt.Errorf("record the upgraded broker configuration: %w", err)
		}
	}
	return warn, nil
}

// earlierStart tells whether an edgesink has started on the instance
// directory dir before: its lock file is there (AcquireLock never removes
// it).
func earlierStart(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, spool.LockName))
	return err == nil
}

// brokerCredential reads the output's broker password from dir, making it
// (0600) on first use.
func brokerCredential(dir string) (string, error) {
	path := filepath.Join(dir, brokerCredentialName)
	if data, err := os.ReadFile(path); err == nil {
		if p := strings.TrimSpace(string(data)); len(p) >= 32 {
			if err := os.Chmod(path, 0o600); err != nil {
				return "", fmt.Errorf("broker credential: %w", err)
			}
			return p, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("broker credential: %w", err)
	}
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("broker credential: %w", err)
	}
	p := hex.EncodeToString(b)
	if err := os.WriteFile(path+".tmp", []byte(p+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("broker credential: %w", err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		return "", fmt.Errorf("broker credential: %w", err)
	}
	return p, nil
}

// embeddedBroker is the embedded broker's configuration for an instance
// whose directory is dir: the listen address, the topic rights derived
// from the MQTT output's topics, the output's credential and the TLS
// certificate (like SMTP's: the configured files or the self-signed one in
// smtp.tls.dir, default the state directory's tls/). allowOpen says
// brokerAnonymity let an upgraded board run an open broker on the LAN. cert
// is nil without a TLS listener.
func (c Config) embeddedBroker(dir string, allowOpen bool, log *slog.Logger) (bc broker.Config, cert *smtpd.Certificate, err error) {
	bc = c.MQTT.embedded()
	if allowOpen {
		bc.AllowAnonymous = true
	}
	id := c.mqttIdentity()
	bc.Topics = broker.Topics{Base: id.BaseTopic, Alert: id.Topic, Status: id.AvailabilityTopic,
		DiscoveryPrefix: c.HomeAssistant.DiscoveryPrefix}
	bc.PublisherClientID = id.ClientID
	if bc.PublisherPassword, err = brokerCredential(dir); err != nil {
		return bc, nil, err
	}
	bc.CheckPassword = bcrypt.CompareHashAndPassword
	if bc.TLS.Listen != "" {
		t := SMTPTLSConfig{CertFile: bc.TLS.CertFile, KeyFile: bc.TLS.KeyFile, Dir: c.SMTP.TLS.Dir}
		var created bool
		if cert, created, err = t.certificate(c.SMTP.Domain); err != nil {
			return bc, nil, fmt.Errorf("mqtt embedded_tls: %w", err)
		}
		bc.ServerTLS = cert.TLSConfig(tls.VersionTLS12)
		msg := "embedded MQTT broker: TLS certificate loaded"
		if created {
			msg = "embedded MQTT broker: created a self-signed certificate; check its fingerprint on clients that ask"
		}
		log.Info(msg, "sha256_fingerprint", cert.Fingerprint())
	}
	return bc, cert, nil
}

// embedded is the embedded broker's settings from the file: its section's
// keys and the listen address.
func (m MQTTConfig) embedded() broker.Config {
	bc := m.Embedded
	bc.Listen = m.EmbeddedListen
	return bc
}
