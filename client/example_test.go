package client_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/mvrefresher/mvrefresher/client"
)

// An application writes, then reads a view that includes its write: it
// waits for the daemon to have refreshed the view through its commit.
func Example() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, "postgres://app@db/analytics")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "INSERT INTO core.fact_events (event_type, amount) VALUES ('purchase', 42)"); err != nil {
		log.Fatal(err)
	}
	// After the commit: covers it, synchronous or not.
	var lsn pglogrepl.LSN
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()").Scan(&lsn); err != nil {
		log.Fatal(err)
	}
	mvr := client.New("http://127.0.0.1:9188", nil)
	st, err := mvr.Wait(ctx, "analytics.mv_revenue_summary", lsn, 5*time.Second)
	if err != nil {
		log.Fatalf("%v (the view is fresh through %q)", err, st.FreshThrough)
	}
	var revenue float64
	if err := conn.QueryRow(ctx, "SELECT sum(revenue) FROM analytics.mv_revenue_summary").Scan(&revenue); err != nil {
		log.Fatal(err)
	}
	fmt.Println("revenue, this purchase included:", revenue)
}
