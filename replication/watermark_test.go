package replication

import (
	"testing"

	"github.com/jackc/pglogrepl"
)

func TestWatermark_Confirmable(t *testing.T) {
	w := NewWatermark(100)
	if got := w.Confirmable(); got != 100 {
		t.Fatalf("fresh watermark confirms %v, want the start 100", got)
	}
	w.Seen(150) // an idle keepalive
	if got := w.Confirmable(); got != 150 {
		t.Fatalf("idle: confirms %v, want 150", got)
	}

	a := w.Hold(200) // commit at 200 ends at 210
	w.Seen(210)
	b := w.Hold(300)
	w.Seen(310)
	w.Seen(500) // keepalive while work is pending
	if got := w.Confirmable(); got != 200 {
		t.Fatalf("with holds at 200 and 300: confirms %v, want 200 (the oldest pending commit is resent)", got)
	}
	w.Release(b)
	if got := w.Confirmable(); got != 200 {
		t.Fatalf("after releasing the newer hold: confirms %v, want 200", got)
	}
	c := w.Hold(400)
	w.Release(a)
	if got := w.Confirmable(); got != 400 {
		t.Fatalf("after releasing 200 with 400 held: confirms %v, want 400", got)
	}
	w.Release(c)
	w.Release(c) // twice is harmless
	w.Release(0)
	if got := w.Confirmable(); got != 500 {
		t.Fatalf("nothing held: confirms %v, want the newest seen 500", got)
	}
	w.Seen(450) // never backwards
	if got := w.Confirmable(); got != 500 {
		t.Fatalf("after an older Seen: confirms %v, want 500", got)
	}
}

func TestWatermark_ReleaseRecomputesOldest(t *testing.T) {
	w := NewWatermark(0)
	holds := map[pglogrepl.LSN]Hold{}
	for _, lsn := range []pglogrepl.LSN{50, 10, 40, 30, 20} {
		holds[lsn] = w.Hold(lsn)
	}
	w.Seen(1000)
	for _, step := range []struct{ release, want pglogrepl.LSN }{
		{10, 20}, {30, 20}, {20, 40}, {50, 40}, {40, 1000},
	} {
		w.Release(holds[step.release])
		if got := w.Confirmable(); got != step.want {
			t.Fatalf("after releasing %v: confirms %v, want %v", step.release, got, step.want)
		}
	}
	if w.Held() != 0 {
		t.Fatalf("Held() = %d after releasing everything", w.Held())
	}
}
