package pgpolicy

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// BenchmarkSelect1 measures a SELECT 1 round trip on a real server,
// through a plain splice and through the proxy with the test policies
// (whose Cedar decisions the policy package caches by fingerprint), with
// pgx's cached prepared statement (Bind, Execute, Sync) and with a simple
// Query (which the proxy parses every time). p50-us is the median round
// trip.
func BenchmarkSelect1(b *testing.B) {
	_, up := testDB(b)
	for _, via := range []struct {
		name string
		cfg  *Config
	}{
		{"splice", nil},
		{"proxy", &Config{Decide: cedarDecide(b, testPolicies)}},
	} {
		p := startProxy(b, up, via.cfg)
		connString := p.connString(up)
		b.Run(via.name+"/extended", func(b *testing.B) {
			ctx := context.Background()
			c, err := pgx.Connect(ctx, connString)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close(ctx)
			var n int
			measure(b, func() error { return c.QueryRow(ctx, "SELECT 1").Scan(&n) })
		})
		b.Run(via.name+"/simple", func(b *testing.B) {
			ctx := context.Background()
			c, err := pgconn.Connect(ctx, connString)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close(ctx)
			measure(b, func() error { _, err := c.Exec(ctx, "SELECT 1").ReadAll(); return err })
		})
	}
}

func measure(b *testing.B, f func() error) {
	if err := f(); err != nil { // warm: prepare, cache the decision
		b.Fatal(err)
	}
	times := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		times = append(times, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(times)
	b.ReportMetric(float64(times[len(times)/2].Nanoseconds())/1e3, "p50-us")
}
