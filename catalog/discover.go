package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// Querier is what discovery and the refresh log need from a pool or a
// connection.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// DiscoverOptions choose the managed views.
type DiscoverOptions struct {
	// Schemas to manage views in; empty means every non-system schema.
	Schemas []string
	// Enabled reports whether a view (by qualified name) is managed; nil
	// enables all.
	Enabled func(name string) bool
	// Log is the refresh log (nil: none): never a source, so that writing
	// it cannot trigger a refresh.
	Log interface {
		Is(schema, relname string) bool
	}
}

type relation struct {
	oid                          uint32
	schema, relname, name        string
	kind, persistence, replident byte
	populated, hasPK, uniqueIdx  bool
	hasReplIdentIndex            bool   // an index marked by REPLICA IDENTITY USING INDEX
	canRefresh                   bool   // owner, or MAINTAIN on PostgreSQL 17
	owner                        string // quoted as an identifier where needed
	ownerIsSuperuser             bool
	// definition is the plain view holding the definition of a table
	// maintained incrementally (see Maintained), 0 for any other relation.
	definition uint32
	marker     string
}

// UsableUniqueIndexSQL tells whether the relation c (an SQL expression on
// pg_class c) has a unique index
// REFRESH ... CONCURRENTLY can use. It mirrors is_usable_unique_index in
// PostgreSQL's matview.c: valid, immediate, non-partial, btree, on plain
// columns.
const UsableUniqueIndexSQL = `EXISTS (
         SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
         JOIN pg_am am ON am.oid = ic.relam
         WHERE i.indrelid = c.oid AND i.indisunique AND i.indimmediate AND i.indisvalid
           AND i.indpred IS NULL AND am.amname = 'btree' AND i.indnatts > 0
           AND 0 <> ALL (i.indkey::int2[]))`

// relationsSQL reads every relation a view can depend on. A primary key or
// replica identity index counts only as PostgreSQL's relcache counts it
// (RelationGetIndexList): immediate, valid, not partial. A DEFERRABLE key
// identifies no rows for logical replication.
const relationsSQL = `
SELECT c.oid, n.nspname, c.relname, format('%I.%I', n.nspname, c.relname),
       c.relkind::text, c.relpersistence::text, c.relreplident::text, c.relispopulated,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary
                 AND i.indimmediate AND i.indisvalid AND i.indpred IS NULL),
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident
                 AND i.indimmediate AND i.indisvalid AND i.indpred IS NULL),
       c.relkind = 'm' AND ` + UsableUniqueIndexSQL + `,
       pg_has_role(c.relowner, 'USAGE') OR CASE WHEN current_setting('server_version_num')::int >= 170000
         THEN has_table_privilege(c.oid, 'MAINTAIN') ELSE false END,
       quote_ident(pg_get_userbyid(c.relowner)),
       coalesce((SELECT r.rolsuper FROM pg_roles r WHERE r.oid = c.relowner), false),
       coalesce(d.oid, 0), coalesce(obj_description(d.oid, 'pg_class'), '')
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class d ON c.relkind = 'r' AND d.relnamespace = c.relnamespace AND d.relkind = 'v'
  AND d.relname = c.relname || '` + MaintainedDefinitionSuffix + `'
  AND starts_with(coalesce(obj_description(d.oid, 'pg_class'), ''), '` + MaintainedMarkerPrefix + `')
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname !~ '^pg_toast'`

// dependenciesSQL reads what each view's and materialized view's query
// references: pg_depend entries of its rewrite rule.
const dependenciesSQL = `
SELECT DISTINCT r.ev_class, d.refobjid
FROM pg_rewrite r
JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid <> r.ev_class`

const partitionsSQL = `
SELECT c.oid, array(SELECT a.relid FROM pg_partition_ancestors(c.oid) a)::oid[]
FROM pg_class c WHERE c.relispartition AND c.relkind IN ('r', 'p')`

// Discover reads the catalog and returns the managed views, their sources
// and how changes route to them.
func Discover(ctx context.Context, q Querier, opts DiscoverOptions) (*Catalog, error) {
	// One snapshot for all the queries: a view dropped or created between
	// two of them would be read half (a view without its dependencies),
	// and look like another view.
	if pool, ok := q.(txBeginner); ok {
		tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
		if err != nil {
			return nil, fmt.Errorf("discover: begin: %w", err)
		}
		defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // read only: nothing to lose
		q = tx
	}
	b := builder{tables: map[uint32]*Table{}, opts: opts}
	if err := q.QueryRow(ctx, "SELECT quote_ident(current_user), current_setting('server_version_num')::int / 10000").Scan(&b.role, &b.serverMajor); err != nil {
		return nil, fmt.Errorf("discover: read the role and the server version: %w", err)
	}
	rels, err := queryRelations(ctx, q)
	if err != nil {
		return nil, err
	}
	deps, err := queryOIDPairs(ctx, q, dependenciesSQL)
	if err != nil {
		return nil, fmt.Errorf("discover view dependencies: %w", err)
	}
	ancestors, err := queryAncestors(ctx, q)
	if err != nil {
		return nil, err
	}
	b.rels, b.deps, b.ancestors = rels, deps, ancestors
	return b.build(), nil
}

type txBeginner interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

func queryRelations(ctx context.Context, q Querier) (map[uint32]*relation, error) {
	rows, err := q.Query(ctx, relationsSQL)
	if err != nil {
		return nil, fmt.Errorf("discover relations: %w", err)
	}
	defer rows.Close()
	rels := map[uint32]*relation{}
	var kind, persistence, replident string
	for rows.Next() {
		r := &relation{}
		if err := rows.Scan(&r.oid, &r.schema, &r.relname, &r.name, &kind, &persistence, &replident, &r.populated, &r.hasPK, &r.hasReplIdentIndex, &r.uniqueIdx, &r.canRefresh, &r.owner, &r.ownerIsSuperuser, &r.definition, &r.marker); err != nil {
			return nil, fmt.Errorf("discover relations: %w", err)
		}
		r.kind, r.persistence, r.replident = kind[0], persistence[0], replident[0]
		rels[r.oid] = r
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("discover relations: %w", err)
	}
	return rels, nil
}

func queryOIDPairs(ctx context.Context, q Querier, sql string) (map[uint32][]uint32, error) {
	rows, err := q.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	pairs := map[uint32][]uint32{}
	var from, to uint32
	for rows.Next() {
		if err := rows.Scan(&from, &to); err != nil {
			return nil, err
		}
		pairs[from] = append(pairs[from], to)
	}
	return pairs, rows.Err()
}

func queryAncestors(ctx context.Context, q Querier) (map[uint32][]uint32, error) {
	rows, err := q.Query(ctx, partitionsSQL)
	if err != nil {
		return nil, fmt.Errorf("discover partitions: %w", err)
	}
	defer rows.Close()
	out := map[uint32][]uint32{}
	for rows.Next() {
		var oid uint32
		var anc []uint32
		if err := rows.Scan(&oid, &anc); err != nil {
			return nil, fmt.Errorf("discover partitions: %w", err)
		}
		out[oid] = anc
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("discover partitions: %w", err)
	}
	return out, nil
}

// PartitionAncestors returns a partition's ancestors, itself first, for a
// relation that appeared after discovery. It returns nil for a relation that
// is not a partition (or no longer exists).
func PartitionAncestors(ctx context.Context, q Querier, oid uint32) ([]uint32, error) {
	var anc []uint32
	err := q.QueryRow(ctx, `SELECT CASE WHEN c.relispartition
		THEN array(SELECT a.relid FROM pg_partition_ancestors(c.oid) a)::oid[] END
		FROM pg_class c WHERE c.oid = $1`, oid).Scan(&anc)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("read partition ancestors of relation %d: %w", oid, err)
	}
	return anc, nil
}

type builder struct {
	rels      map[uint32]*relation
	deps      map[uint32][]uint32
	ancestors map[uint32][]uint32
	tables    map[uint32]*Table
	opts      DiscoverOptions
	// role is the role discovering (current_user, quoted where needed),
	// which refreshes the views; serverMajor the PostgreSQL major version.
	role        string
	serverMajor int
	// edges are what each relation walked reads directly: the graph of
	// `mvrefresher graph`, plain views in between included.
	edges map[string][]Edge
}

func (b *builder) managedCandidate(r *relation) bool {
	if r.kind != KindMatview && r.definition == 0 {
		return false
	}
	if len(b.opts.Schemas) > 0 && !slices.Contains(b.opts.Schemas, r.schema) {
		return false
	}
	return b.opts.Enabled == nil || b.opts.Enabled(r.name)
}

// table returns the Table for a relation, with its publication root and
// replica identity worked out.
func (b *builder) table(oid uint32) *Table {
	if t, ok := b.tables[oid]; ok {
		return t
	}
	r := b.rels[oid]
	t := &Table{OID: oid, Schema: r.schema, Relname: r.relname, Name: r.name, Kind: r.kind, Persistence: r.persistence}
	b.tables[oid] = t
	t.Publish = t
	if anc := b.ancestors[oid]; len(anc) > 1 {
		if root, ok := b.rels[anc[len(anc)-1]]; ok {
			t.Publish = b.table(root.oid)
		}
	}
	t.ReplicaIdentity = b.replicaIdentity(oid)
	if r.kind == KindPartitioned && !r.hasPK && t.Publish == t {
		// A partition created later under a root without a key may have no
		// replica identity either, and publishing the root would publish it
		// at once, making the application's UPDATE and DELETE on it fail.
		// So the leaves are published one by one, each once checked.
		t.PublishLeaves = true
		for _, leaf := range b.leaves(oid) {
			t.Leaves = append(t.Leaves, b.table(leaf))
		}
	}
	return t
}

// replicaIdentity: for a partitioned table, every leaf below it counts,
// because changes are published (and UPDATE/DELETE checked) per leaf. A key
// on the root is not enough: a leaf can be set to REPLICA IDENTITY NOTHING.
func (b *builder) replicaIdentity(oid uint32) bool {
	r := b.rels[oid]
	if r.kind != KindPartitioned {
		return leafIdentity(r)
	}
	for _, leaf := range b.leaves(oid) {
		if !leafIdentity(b.rels[leaf]) {
			return false
		}
	}
	return true
}

// leaves lists the plain tables in the partition tree below oid, sorted.
func (b *builder) leaves(oid uint32) []uint32 {
	var out []uint32
	for leaf, anc := range b.ancestors {
		if lr := b.rels[leaf]; lr != nil && lr.kind == KindTable && slices.Contains(anc, oid) {
			out = append(out, leaf)
		}
	}
	slices.Sort(out)
	return out
}

// leafIdentity mirrors CheckCmdReplicaIdentity: FULL, or an index to
// identify rows by (the primary key for DEFAULT, the marked index for
// USING INDEX; a USING INDEX whose index was dropped identifies nothing).
func leafIdentity(r *relation) bool {
	switch r.replident {
	case 'f':
		return true
	case 'i':
		return r.hasReplIdentIndex
	case 'd':
		return r.hasPK
	}
	return false
}

// reads walks a view's query through plain views and collects the tables
// and materialized views it reads; query is the view's own (a maintained
// table's is its definition view's), and the graph shows them read by the
// view.
func (b *builder) reads(view *relation, query uint32) (tables []uint32, matviews []uint32) {
	seen := map[uint32]bool{query: true}
	var walk func(uint32)
	walk = func(o uint32) {
		for _, ref := range b.deps[o] {
			if seen[ref] {
				continue
			}
			seen[ref] = true
			r := b.rels[ref]
			if r == nil {
				continue
			}
			if o == query {
				b.addEdge(r, view)
			} else if from := b.rels[o]; from != nil {
				b.addEdge(r, from)
			}
			switch r.kind {
			case KindView:
				walk(ref)
			case KindMatview:
				matviews = append(matviews, ref)
			case KindTable:
				if r.definition != 0 {
					matviews = append(matviews, ref) // maintained: a view, not a source
				} else {
					tables = append(tables, ref)
				}
			case KindPartitioned, KindForeign:
				tables = append(tables, ref)
			}
		}
	}
	walk(query)
	return tables, matviews
}

func (b *builder) addEdge(from, to *relation) {
	if b.edges == nil {
		b.edges = map[string][]Edge{}
	}
	b.edges[to.name] = append(b.edges[to.name], Edge{From: from.name, FromKind: from.kind, To: to.name, ToKind: to.kind})
}

func (b *builder) build() *Catalog {
	c := &Catalog{
		Views:      map[string]*View{},
		readers:    map[uint32][]string{},
		ancestors:  map[uint32][]uint32{},
		dependents: map[string][]string{},
	}
	type candidate struct {
		view     *View
		matviews []uint32
	}
	var candidates []candidate
	for _, r := range b.rels {
		if !b.managedCandidate(r) {
			continue
		}
		v := &View{OID: r.oid, Schema: r.schema, Relname: r.relname, Name: r.name, Populated: r.populated, UniqueIndex: r.uniqueIdx}
		query := r.oid
		if r.definition != 0 {
			v.Maintained = &Maintained{Definition: r.definition, Marker: r.marker}
			v.Populated, query = true, r.definition
		}
		tables, matviews := b.reads(r, query)
		excluded := false
		if !r.canRefresh {
			excluded = true
			c.Excluded = append(c.Excluded, Problem{v.Name, "not-owner", b.notOwnerMessage(r)})
		}
		for _, oid := range tables {
			rel := b.rels[oid]
			if b.opts.Log != nil && b.opts.Log.Is(rel.schema, rel.relname) {
				c.Warnings = append(c.Warnings, Problem{v.Name, "reads-refresh-log", "reads the refresh log table " + rel.name + ": its writes are not treated as changes"})
				continue
			}
			t := b.table(oid)
			v.Sources = append(v.Sources, t)
			switch {
			case !t.Streamable():
				c.Warnings = append(c.Warnings, Problem{v.Name, "unlogged-source", "reads " + t.Name + ", which is unlogged, temporary or foreign: its changes never reach the WAL, so they never trigger a refresh"})
			case !t.Publish.ReplicaIdentity:
				excluded = true
				c.Excluded = append(c.Excluded, Problem{v.Name, "no-replica-identity", noReplicaIdentityMessage(v.Name, t.Publish)})
			}
		}
		if !excluded {
			candidates = append(candidates, candidate{v, matviews})
		}
	}
	for _, cand := range candidates {
		c.Views[cand.view.Name] = cand.view
	}
	for _, cand := range candidates {
		v := cand.view
		for _, oid := range cand.matviews {
			name := b.rels[oid].name
			if _, managed := c.Views[name]; managed {
				v.Bases = append(v.Bases, name)
				c.dependents[name] = append(c.dependents[name], v.Name)
			} else {
				v.Unmanaged = append(v.Unmanaged, name)
				c.Warnings = append(c.Warnings, Problem{v.Name, "unmanaged-base", "reads materialized view " + name + ", which mvrefresher does not manage: its refreshes do not trigger one of " + v.Name})
			}
		}
		for _, t := range v.Sources {
			c.readers[t.OID] = append(c.readers[t.OID], v.Name)
		}
		slices.Sort(v.Bases)
	}
	c.tables = b.tables
	c.edges = b.edges
	for oid, anc := range b.ancestors {
		for _, a := range anc {
			if _, read := c.readers[a]; read {
				c.ancestors[oid] = anc
				break
			}
		}
	}
	c.index()
	return c
}

func noReplicaIdentityMessage(view string, t *Table) string {
	return fmt.Sprintf("reads %s, which has no replica identity: publishing it would make the application's UPDATE and DELETE on it fail, so the view is not managed. "+
		"Fix: add a primary key (ALTER TABLE %s ADD PRIMARY KEY (...)), or ALTER TABLE %s REPLICA IDENTITY FULL (or USING INDEX a unique index), or disable the view (views: {%s: {enabled: false}})",
		t.Name, t.Name, t.Name, view)
}

// AnyRows reports whether any of the tables holds a row. Tables dropped
// meanwhile count as empty.
func AnyRows(ctx context.Context, q Querier, oids []uint32) (bool, error) {
	for _, oid := range oids {
		var name *string
		if err := q.QueryRow(ctx, "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = $1", oid).Scan(&name); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				continue
			}
			return false, fmt.Errorf("read relation %d: %w", oid, err)
		}
		var any bool
		if err := q.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM ONLY "+*name+")").Scan(&any); err != nil {
			return false, fmt.Errorf("look for rows in %s: %w", *name, err)
		}
		if any {
			return true, nil
		}
	}
	return false, nil
}

// notOwnerMessage says why the role cannot refresh r and how to let it:
// membership in the owner role, unless the owner is a superuser (the
// bootstrap superuser, typically), whose membership would make the role
// one; then a new owner, or the MAINTAIN privilege from PostgreSQL 17 on.
func (b *builder) notOwnerMessage(r *relation) string {
	var fixes []string
	if b.serverMajor >= 17 {
		fixes = append(fixes, fmt.Sprintf("GRANT MAINTAIN ON %s TO %s", r.name, b.role))
	}
	if r.ownerIsSuperuser {
		fixes = append(fixes, fmt.Sprintf("ALTER MATERIALIZED VIEW %s OWNER TO %s (or to another role that is not a superuser and that %s is a member of; "+
			"granting %s to %s would make it a superuser)", r.name, b.role, b.role, r.owner, b.role))
	} else {
		fixes = append(fixes, fmt.Sprintf("GRANT %s TO %s", r.owner, b.role),
			fmt.Sprintf("ALTER MATERIALIZED VIEW %s OWNER TO %s", r.name, b.role))
	}
	return fmt.Sprintf("is owned by %s, and REFRESH needs ownership (PostgreSQL 17: the MAINTAIN privilege), so the view is not managed. Fix: %s, or disable the view",
		r.owner, strings.Join(fixes, ", or "))
}
