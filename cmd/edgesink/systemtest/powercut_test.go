package systemtest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgesink/edgesink/forward/mqtt/mqtttest"
	"github.com/edgesink/edgesink/forward/spool/disktest"
	"github.com/edgesink/edgesink/sink/smtpd/smtptest"
)

// TestPowerCutLosesNothing is the promise on the box: a 250 means the alert
// survives a power cut. The spool lives on a disk that keeps only what was
// fsynced (disktest) and did not exist before this first start. With the
// broker down, mails from five senders get their 250; edgesink is killed
// mid-load and the power cut; edgesink starts again on what the disk
// holds, the broker comes back, and every acknowledged alert must arrive.
func TestPowerCutLosesNothing(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	disk, mnt := disktest.Start(t)
	bin := binary(t)
	spoolDir := filepath.Join(mnt, "var", "lib", "edgesink")
	conf := filepath.Join(t.TempDir(), "edgesink.yaml")
	if err := os.WriteFile(conf, []byte("smtp:\n  max_connections_per_ip: 100\n  max_mails_per_minute: 1000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", conf, "--smtp-listen", "127.0.0.1:0", "--mqtt-broker", broker.URL(), "--spool-dir", spoolDir}
	broker.Stop()

	first, addr := startBinary(t, bin, args...)
	// Every mail of the first round has its 250 before the cut; the second
	// round is still being sent when edgesink dies.
	acked, refused, errs := smtptest.SendMany(func() string { return addr }, "before", 120, 10, nil)
	if len(refused) > 0 || len(acked) == 0 {
		t.Fatalf("broker down, spool on: %d acknowledged, %d refused (%v)", len(acked), len(refused), errs)
	}
	var inFlight []string
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		inFlight, _, _ = smtptest.SendMany(func() string { return addr }, "during", 400, 10, nil)
	}()
	time.Sleep(150 * time.Millisecond)
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	wg.Wait()
	acked = append(acked, inFlight...)
	synced := disk.Stats()
	disk.CutAndMount(t)

	broker.Restart()
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")
	second, _ := startBinary(t, bin, args...)
	seen := sub.AwaitSubjects(t, acked, 60*time.Second)
	t.Logf("power cut: %d mails acknowledged (%d of them in the round the kill cut short), %d distinct alerts delivered after the cut, %d duplicates; %d file and %d directory fsyncs before the cut",
		len(acked), len(inFlight), len(seen), mqtttest.Duplicates(seen), synced.FileSyncs, synced.DirSyncs)
	if err := second.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = second.Wait()
}

// TestReadOnlySpoolAnswers451: the real binary on a spool whose disk has
// gone read-only answers 451 4.3.0 (a local problem; the device retries),
// not "outputs unavailable", and accepts again once the disk is back.
func TestReadOnlySpoolAnswers451(t *testing.T) {
	broker := mqtttest.StartMosquitto(t)
	sub := mqtttest.Subscribe(t, broker.Addr(), "edgesink/+/alert")
	disk, mnt := disktest.Start(t)
	cmd, addr := startBinary(t, binary(t), "--smtp-listen", "127.0.0.1:0", "--mqtt-broker", broker.URL(),
		"--spool-dir", filepath.Join(mnt, "spool"))
	disk.Fail(syscall.EROFS)
	err := smtptest.SendMail(context.Background(), nil, addr, "x", "cam@cams.lan", "a@b", smtptest.SubjectMail("read-only"))
	if err == nil || !strings.Contains(err.Error(), "451") || !strings.Contains(err.Error(), "4.3.0") {
		t.Fatalf("mail on a read-only spool: %v, want 451 4.3.0", err)
	}
	disk.Fail(0)
	if err := smtptest.SendMail(context.Background(), nil, addr, "x", "cam@cams.lan", "a@b", smtptest.SubjectMail("healed")); err != nil {
		t.Fatalf("mail once the disk is back: %v", err)
	}
	sub.AwaitSubjects(t, []string{"healed"}, 10*time.Second)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
}
