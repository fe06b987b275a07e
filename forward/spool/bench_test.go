package spool

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/edgesink/edgesink/sink"
)

// BenchmarkHandle measures how fast the spool takes alerts (Handle returns
// once the alert is durable) from 20 concurrent senders, with an output that
// confirms at once, in disk and memory mode.
func BenchmarkHandle(b *testing.B) {
	for _, mode := range []string{ModeDisk, ModeMemory} {
		b.Run(mode, func(b *testing.B) {
			s, err := Open(Config{Dir: b.TempDir(), Mode: mode, MaxAlerts: 1 << 20, MaxBytes: 1 << 40}, nil, &fakeOutput{name: "fast", fail: func(*sink.Alert, int) error { return nil }})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			var next atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for g := 0; g < 20; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
						a := testAlert(int(i), "bench")
						a.Text = strings.Repeat("x", 4000)
						if err := s.Handle(context.Background(), a); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			s.Drain(context.Background())
		})
	}
}
