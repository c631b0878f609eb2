// Package replication talks to PostgreSQL's logical replication: it keeps
// the publication in sync with the source tables, creates and reads the
// slot, streams pgoutput transactions to a handler in commit order, and
// confirms to the server only the position the caller says is safe.
package replication

import (
	"context"
	"time"

	"github.com/jackc/pglogrepl"
)

// RelationChange counts what one transaction did to one relation. The
// relation is the one the server sent: a leaf partition, not its root.
type RelationChange struct {
	OID       uint32
	Namespace string
	Name      string
	Rows      int
	Truncated bool
	// Columns are the relation's columns its Images keep (those selected, in
	// the relation's order, the order of the images' values), as the
	// Relation message in force at the first image described them; nil
	// unless an image was taken.
	Columns []Column
	// ReplicaIdentity is the relation's replica identity as that Relation
	// message said: 'd' default, 'n' nothing, 'f' full, 'i' index; 0 unless
	// an image was taken.
	ReplicaIdentity byte
	// Images are the transaction's row changes of a relation selected by
	// Stream.SelectImages, in their order: as many as Rows unless ImagesLost
	// says why not. A TRUNCATE is not among them (Truncated is set, and
	// which images came before it is not told). nil for a relation not
	// selected.
	Images []RowImage
	// ImagesLost says why Images do not hold every row change of a selected
	// relation in this transaction; "" when they do. Images is then nil (its
	// memory freed) and the remaining rows only counted: the transaction
	// changed more than MaxImagesPerTransaction rows of selected relations
	// (all of them together) by this relation's image, the relation's
	// columns or replica identity changed in its middle (DDL, even of a
	// column not kept), the relation became selected, stopped being selected
	// or changed the columns it keeps in its middle, or the server sent rows
	// that do not fit its Relation message.
	ImagesLost string
}

// Transaction is a committed transaction that changed a published table or
// carried a refresh request.
type Transaction struct {
	// Xid is the transaction's (32-bit) id. The server sends a commit once
	// it is flushed, which can be before it is visible to other sessions
	// (synchronous replication waits in between): a refresh covers it only
	// if its snapshot sees Xid.
	Xid        uint32
	CommitLSN  pglogrepl.LSN
	EndLSN     pglogrepl.LSN
	CommitTime time.Time
	Changes    []RelationChange
	// Requests are the contents of transactional logical messages with the
	// prefix MessagePrefix, in the order they were emitted.
	Requests []string
}

// MessagePrefix is the pg_logical_emit_message prefix that asks mvrefresher
// for a refresh.
const MessagePrefix = "mvrefresher"

// Handler receives the stream. Both calls may block; the stream waits, so a
// slow handler slows the walsender instead of buffering without bound.
type Handler interface {
	// Commit is called for every transaction the server sends, in commit
	// order (one with no changes and no requests still moves the position).
	Commit(ctx context.Context, tx *Transaction) error
	// Progress reports a position before which no transaction is in
	// flight, from a keepalive: the server has sent everything it had, so
	// the stream has caught up.
	Progress(ctx context.Context, lsn pglogrepl.LSN) error
}
