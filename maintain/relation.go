package maintain

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// relation is the materialized view Enable converts, or the table Disable
// converts back, as read once it is locked.
type relation struct {
	oid  uint32
	name string // format('%I.%I')
	// definitionView is the name of its definition view, format('%I.%I').
	definitionView     string
	definitionExists   bool
	populated          bool
	ownedByCurrentUser bool
	storage            storage
}

// storage is how a relation is stored, which a table and a materialized
// view share: its storage parameters and tablespace.
type storage struct {
	options    string // "fillfactor='70', ...", or empty
	tablespace string // quoted, or empty for the database's default
}

// clause is storage as it follows CREATE TABLE or CREATE MATERIALIZED VIEW.
func (s storage) clause() string {
	var c string
	if s.options != "" {
		c += " WITH (" + s.options + ")"
	}
	if s.tablespace != "" {
		c += " TABLESPACE " + s.tablespace
	}
	return c
}

// relkindNames says what a relkind is, for refusals.
var relkindNames = map[string]string{
	"r": "a table", "i": "an index", "S": "a sequence", "v": "a view", "m": "a materialized view",
	"c": "a composite type", "f": "a foreign table", "p": "a partitioned table", "I": "a partitioned index",
}

// lockRelation finds name, checks that it is of kind (relkind) and that the
// current role may act as its owner, takes an ACCESS EXCLUSIVE lock on it,
// and reads it.
func lockRelation(ctx context.Context, tx pgx.Tx, name string, kind string) (relation, error) {
	var (
		rel               relation
		relkind           string
		owner             string
		nameLen           int
		actsAsOwner       bool
		currentUserQuoted string
	)
	err := tx.QueryRow(ctx, `
SELECT c.oid, c.relkind::text, format('%I.%I', n.nspname, c.relname), format('%I', r.rolname),
       octet_length(c.relname), pg_has_role(c.relowner, 'USAGE'), r.rolname = current_user, format('%I', current_user)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_roles r ON r.oid = c.relowner
 WHERE c.oid = to_regclass($1)`, name).Scan(&rel.oid, &relkind, &rel.name, &owner, &nameLen, &actsAsOwner, &rel.ownedByCurrentUser, &currentUserQuoted)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return relation{}, fmt.Errorf("%w: there is no relation %s", ErrRefused, name)
	case err != nil:
		return relation{}, fmt.Errorf("look up %s: %w", name, err)
	case relkind != kind:
		return relation{}, fmt.Errorf("%w: %s is %s, not %s", ErrRefused, rel.name, relkindNames[relkind], relkindNames[kind])
	case nameLen > MaxNameLen:
		return relation{}, fmt.Errorf("%w: the name of %s is %d bytes long; the longest that leaves room for the suffix %s is %d",
			ErrRefused, rel.name, nameLen, DefinitionSuffix, MaxNameLen)
	case !actsAsOwner:
		return relation{}, fmt.Errorf("%w: the current role %s is neither the owner of %s nor a member of its owner %s, so it cannot re-create it",
			ErrRefused, currentUserQuoted, rel.name, owner)
	}
	if err := lockByName(ctx, tx, rel.name, kind, owner); err != nil {
		return relation{}, err
	}
	if err := tx.QueryRow(ctx, `
SELECT format('%I.%I', n.nspname, c.relname || '__definition'),
       EXISTS (SELECT FROM pg_class d WHERE d.relnamespace = c.relnamespace AND d.relname = c.relname || '__definition'),
       c.relispopulated,
       coalesce((SELECT string_agg(format('%s=%L', o.option_name, o.option_value), ', ') FROM pg_options_to_table(c.reloptions) o), ''),
       coalesce((SELECT format('%I', t.spcname) FROM pg_tablespace t WHERE t.oid = c.reltablespace), '')
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.oid = $1`, rel.oid).Scan(&rel.definitionView, &rel.definitionExists, &rel.populated, &rel.storage.options, &rel.storage.tablespace); err != nil {
		return relation{}, fmt.Errorf("read %s: %w", rel.name, err)
	}
	return rel, nil
}

// lockByName takes the ACCESS EXCLUSIVE lock the conversion ends up needing
// before it reads anything, so that what it reads stays true. LOCK TABLE
// refuses materialized views; giving one the owner it has takes the same
// lock and changes nothing.
func lockByName(ctx context.Context, tx pgx.Tx, name string, kind string, owner string) error {
	stmt := "LOCK TABLE " + name + " IN ACCESS EXCLUSIVE MODE"
	if kind == "m" {
		stmt = "ALTER MATERIALIZED VIEW " + name + " OWNER TO " + owner
	}
	if _, err := tx.Exec(ctx, stmt); err != nil {
		return fmt.Errorf("lock %s: %w", name, explainLockTimeout(err))
	}
	return nil
}

// column is one column of the converted relation.
type column struct {
	name, quoted string
	// typ is its type, with its collation where that is not the type's.
	typ string
}

func readColumns(ctx context.Context, tx pgx.Tx, oid uint32) ([]column, error) {
	rows, err := tx.Query(ctx, `
SELECT a.attname, format('%I', a.attname),
       format_type(a.atttypid, a.atttypmod)
       || CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
               THEN ' COLLATE ' || format('%I.%I', cn.nspname, co.collname) ELSE '' END
  FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_collation co ON co.oid = a.attcollation LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
 WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attnum`, oid)
	if err != nil {
		return nil, fmt.Errorf("read the columns: %w", err)
	}
	cols, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (column, error) {
		var c column
		return c, r.Scan(&c.name, &c.quoted, &c.typ)
	})
	if err != nil {
		return nil, fmt.Errorf("read the columns: %w", err)
	}
	return cols, nil
}

func columnDefinitions(cols []column) []string {
	defs := make([]string, len(cols))
	for i, c := range cols {
		defs[i] = c.quoted + " " + c.typ
	}
	return defs
}
