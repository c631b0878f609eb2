package events_test

import (
	"encoding/json"
	"log"

	"github.com/nats-io/nats.go"

	"github.com/mvrefresher/mvrefresher/events"
)

// A cache that drops what it holds for a view as soon as the view has been
// refreshed.
func Example_subscriber() {
	nc, err := nats.Connect(nats.DefaultURL)
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	invalidate := func(view string) { log.Printf("invalidate cached queries on %s", view) }

	// mvrefresher.refreshed.<schema>.<view>; failures go to mvrefresher.failed.>
	_, err = nc.Subscribe("mvrefresher.refreshed.analytics.*", func(m *nats.Msg) {
		var e events.Refresh
		if err := json.Unmarshal(m.Data, &e); err != nil {
			log.Printf("undecodable event: %v", err)
			return
		}
		if e.RowsInserted != nil && *e.RowsInserted == 0 && *e.RowsDeleted == 0 {
			return // refreshed, but nothing changed: the cache is still right
		}
		invalidate(e.View)
	})
	if err != nil {
		log.Fatal(err)
	}
	select {}
}
