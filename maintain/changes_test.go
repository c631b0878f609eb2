package maintain

import (
	"strings"
	"testing"

	"github.com/mvrefresher/mvrefresher/replication"
)

// A plan whose source's key column is plan (of accounts), with the catalog
// saying the old row carries it (REPLICA IDENTITY FULL now).
func accountsPlan() *Plan {
	return &Plan{Sources: map[string]*Source{"shop.accounts": {Name: "shop.accounts", Reads: []string{"plan"}, OldRowCovers: true}}}
}

func texts(vals ...string) []replication.Value {
	out := make([]replication.Value, len(vals))
	for i, v := range vals {
		out[i].Text = v
	}
	return out
}

// TestFollow_TrustsTheReplicaIdentityTheChangeWasWrittenUnder: an UPDATE
// written under REPLICA IDENTITY DEFAULT carries no old row, even when the
// catalog says FULL by the time it is decoded (ALTER TABLE ... REPLICA
// IDENTITY FULL in between): the old group is unknown, so the whole view
// is recomputed.
func TestFollow_TrustsTheReplicaIdentityTheChangeWasWrittenUnder(t *testing.T) {
	columns := []replication.Column{{Name: "id", Key: true}, {Name: "plan"}}
	update := replication.RowImage{Kind: 'U', New: texts("1", "pro")}
	var c Changes
	c.Follow(accountsPlan(), "shop.accounts", replication.RelationChange{Rows: 1, ReplicaIdentity: 'd', Columns: columns, Images: []replication.RowImage{update}})
	if !strings.Contains(c.Full(), "REPLICA IDENTITY DEFAULT when the change was written") {
		t.Fatalf("an UPDATE written under DEFAULT without its old row: %q, want the whole view recomputed", c.Full())
	}

	// Written under FULL: the old row is there, and both groups are named.
	columns[1].Key = true
	update.OldKind, update.Old = 'O', texts("1", "free")
	c = Changes{}
	c.Follow(accountsPlan(), "shop.accounts", replication.RelationChange{Rows: 1, ReplicaIdentity: 'f', Columns: columns, Images: []replication.RowImage{update}})
	if c.Full() != "" || c.Rows() != 2 {
		t.Fatalf("an UPDATE written under FULL: full %q, %d rows; want its old and new rows followed", c.Full(), c.Rows())
	}
}
