package pgpolicy

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// BenchmarkSelect1 measures a SELECT 1 round trip on a real server
// through a plain splice and through the proxy with the test policies
// (whose Cedar decisions the policy package caches by fingerprint), the
// two alternating in each iteration so that both see the same load: with
// pgx's cached prepared statement (Bind, Execute, Sync), and with a simple
// Query. It reports the median round trip of each (splice-p50-us,
// proxy-p50-us) and the median of the differences between the two runs
// of an iteration (added-p50-us).
func BenchmarkSelect1(b *testing.B) {
	_, up := testDB(b)
	splice := startProxy(b, up, nil).connString(up)
	proxied := startProxy(b, up, &Config{Decide: cedarDecide(b, testPolicies)}).connString(up)
	ctx := context.Background()

	b.Run("extended", func(b *testing.B) {
		run := func(connString string) func() error {
			c, err := pgx.Connect(ctx, connString)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close(ctx) })
			var n int
			return func() error { return c.QueryRow(ctx, "SELECT 1").Scan(&n) }
		}
		measure(b, run(splice), run(proxied))
	})
	b.Run("simple", func(b *testing.B) {
		run := func(connString string) func() error {
			c, err := pgconn.Connect(ctx, connString)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close(ctx) })
			return func() error { _, err := c.Exec(ctx, "SELECT 1").ReadAll(); return err }
		}
		measure(b, run(splice), run(proxied))
	})
	// A new text every time: what parsing costs when the proxy's cache
	// cannot help (Decide's cache by fingerprint still does).
	b.Run("simple-new-text", func(b *testing.B) {
		n := 0
		run := func(connString string) func() error {
			c, err := pgconn.Connect(ctx, connString)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { c.Close(ctx) })
			return func() error {
				n++
				_, err := c.Exec(ctx, "SELECT "+strconv.Itoa(n)).ReadAll()
				return err
			}
		}
		measure(b, run(splice), run(proxied))
	})
}

func measure(b *testing.B, splice, proxied func() error) {
	for _, f := range []func() error{splice, proxied} {
		if err := f(); err != nil { // warm: prepare, cache the decision
			b.Fatal(err)
		}
	}
	var ts, tp, added []time.Duration
	timed := func(f func() error) time.Duration {
		t0 := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	i := 0
	for b.Loop() {
		var ds, dp time.Duration
		if i%2 == 0 { // alternate which goes first
			ds, dp = timed(splice), timed(proxied)
		} else {
			dp, ds = timed(proxied), timed(splice)
		}
		i++
		ts, tp, added = append(ts, ds), append(tp, dp), append(added, dp-ds)
	}
	b.StopTimer()
	p50 := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Nanoseconds()) / 1e3
	}
	b.ReportMetric(p50(ts), "splice-p50-us")
	b.ReportMetric(p50(tp), "proxy-p50-us")
	b.ReportMetric(p50(added), "added-p50-us")
}
