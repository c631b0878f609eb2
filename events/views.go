package events

import "time"

// ViewState is a managed view's freshness as a running daemon serves it on
// its HTTP address: GET /views, /views/{view} and /views/{view}/wait.
type ViewState struct {
	// View is the qualified name as PostgreSQL's format('%I.%I') spells it.
	View string `json:"view"`
	// FreshThrough is a WAL position such that every transaction that
	// committed at or before it and changed one of the view's sources
	// (directly or through a base view) is in the view's last refresh.
	// While nothing is pending it is ReceivedLSN: it advances without
	// refreshes. Absent while the daemon can vouch for no position (its
	// startup refresh of the view has not finished).
	FreshThrough string `json:"fresh_through,omitempty"`
	// ReceivedLSN is how far the replication stream has read.
	ReceivedLSN string `json:"received_lsn"`
	// Pending: a change waits for a refresh of the view or of a view it is
	// built on. PendingChanges counts the changed rows waiting for the
	// view's own refresh; PendingSince is the oldest one's commit time.
	Pending        bool      `json:"pending"`
	PendingChanges int       `json:"pending_changes"`
	PendingSince   time.Time `json:"pending_since,omitzero"`
	// Refreshing: a refresh of the view runs now.
	Refreshing bool `json:"refreshing"`
	// MaxStalenessMS is the view's effective staleness target (absent
	// without one): the tightest of its own max_staleness and what the
	// views built on it impose, so that their cascades finish in time.
	// MaxStalenessFrom names the view whose max_staleness it comes from.
	MaxStalenessMS   float64 `json:"max_staleness_ms,omitzero"`
	MaxStalenessFrom string  `json:"max_staleness_from,omitempty"`
	// DependsOn lists the managed views it is built on.
	DependsOn []string `json:"depends_on"`
	// LastRefresh is the event of the view's last refresh attempt since the
	// daemon started; null before it.
	LastRefresh *Refresh `json:"last_refresh"`
}
