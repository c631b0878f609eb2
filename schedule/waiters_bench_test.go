package schedule

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/mvrefresher/mvrefresher/catalog"
	"github.com/mvrefresher/mvrefresher/config"
	"github.com/mvrefresher/mvrefresher/metrics"
	"github.com/mvrefresher/mvrefresher/refresher"
	"github.com/mvrefresher/mvrefresher/replication"
)

// BenchmarkSchedulerReadYourWrites drives the scheduler by hand, one loop
// iteration per b.N, as run does: each iteration handles one event, then
// dispatches, answers the waiters and confirms. 50,000 waiters stand on a
// view whose refresh runs for the whole benchmark. In each round of 100
// iterations a transaction changes every view's source, 84 clients ask to
// read their write (a wait for the transaction's end on one of the fast
// views; one in ten gives up at once) and the 15 fast views' refreshes
// finish, answering them. It reports the iteration's p50, p99 and longest
// in µs; ns/op is the mean.
func BenchmarkSchedulerReadYourWrites(b *testing.B) {
	const (
		fastViews = 15
		standing  = 50_000
		round     = 100
		finishes  = fastViews
		waits     = round - 1 - finishes
	)
	src := &catalog.Table{OID: srcOID, Schema: "app", Relname: "src", Name: "app.src", Kind: catalog.KindTable, Persistence: 'p', ReplicaIdentity: true}
	var views []*catalog.View
	for i := range fastViews + 1 {
		name := fmt.Sprintf("v%02d", i)
		views = append(views, &catalog.View{OID: uint32(i + 1), Schema: "app", Relname: name, Name: "app." + name, Sources: []*catalog.Table{src}})
	}
	slow := views[fastViews].Name
	cfg := config.Default()
	cfg.Debounce, cfg.MaxWait, cfg.Workers = 0, 0, fastViews+1
	m := metrics.New(func() bool { return true }, func() bool { return false })
	s := New(Options{Config: cfg, Logger: slog.New(slog.DiscardHandler), Metrics: m, Catalog: catalog.New(views...), Start: 0x100, Confirm: func(pglogrepl.LSN) {}})

	end := pglogrepl.LSN(0x100)
	xid := uint32(0)
	commit := func() {
		xid++
		end += 0x100
		s.receive(streamItem{tx: &replication.Transaction{Xid: xid, CommitLSN: end - 0x10, EndLSN: end, CommitTime: s.now,
			Changes: []replication.RelationChange{{OID: srcOID, Namespace: "app", Name: "src", Rows: 1}}}})
	}
	var running []refresher.Request // the fast views' refreshes handed out
	takeJobs := func() {
		for {
			select {
			case req := <-s.jobs:
				if req.View.Name != slow {
					running = append(running, req)
				}
			default:
				return
			}
		}
	}
	finishOne := func() {
		req := running[0]
		running = running[1:]
		s.finish(result{view: req.View.Name, outcome: refresher.Outcome{LSN: req.LSN, Recorded: true}})
	}
	ask := func(ctx context.Context, view string, lsn pglogrepl.LSN) chan viewAnswer {
		reply := make(chan viewAnswer, 1)
		s.answer(viewQuery{ctx: ctx, view: view, wait: true, lsn: lsn, reply: reply})
		return reply
	}
	iterate := func(event func()) time.Duration {
		start := time.Now()
		s.now = start
		event()
		s.dispatch()
		s.answerWaiters()
		s.confirm(s.watermark.Confirmable())
		took := time.Since(start)
		takeJobs()
		return took
	}

	// The slow view's refresh starts and never finishes; every view's
	// first refresh runs, the fast ones finish.
	iterate(commit)
	for len(running) > 0 {
		iterate(finishOne)
	}
	for range standing {
		ask(context.Background(), slow, end)
	}

	took := make([]time.Duration, 0, b.N)
	replies := make([]chan viewAnswer, 0, waits)
	cancels := make([]context.CancelFunc, 0, waits)
	b.ResetTimer()
	for i := range b.N {
		switch at := i % round; {
		case at == 0:
			took = append(took, iterate(commit))
		case at <= waits:
			ctx, cancel := context.WithCancel(context.Background())
			view := views[at%fastViews].Name
			took = append(took, iterate(func() {
				reply := ask(ctx, view, end)
				if at%10 == 0 {
					cancel() // the client gave up
					return
				}
				replies = append(replies, reply)
			}))
			cancels = append(cancels, cancel)
		default:
			took = append(took, iterate(finishOne))
		}
		if i%round == round-1 {
			b.StopTimer()
			for _, r := range replies {
				select {
				case a := <-r:
					if a.err != nil {
						b.Fatalf("wait answered with %v", a.err)
					}
				default:
					b.Fatal("a wait was not answered once its view was refreshed")
				}
			}
			for _, c := range cancels {
				c()
			}
			replies, cancels = replies[:0], cancels[:0]
			b.StartTimer()
		}
	}
	b.StopTimer()
	slices.Sort(took)
	µs := func(d time.Duration) float64 { return float64(d.Nanoseconds()) / 1e3 }
	b.ReportMetric(µs(took[len(took)/2]), "p50-µs")
	b.ReportMetric(µs(took[len(took)*99/100]), "p99-µs")
	b.ReportMetric(µs(took[len(took)-1]), "max-µs")
}
