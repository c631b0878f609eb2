// Package catalog knows the materialized views from PostgreSQL's catalog:
// the views to manage, the tables they read (through plain views) and the
// views they are built on, how a change to a table routes to them, and the
// checks of `mvrefresher check`.
package catalog

import (
	"slices"
	"sort"
)

// Relation kinds from pg_class.relkind.
const (
	KindTable       = 'r'
	KindPartitioned = 'p'
	KindView        = 'v'
	KindMatview     = 'm'
	KindForeign     = 'f'
)

// Table is a table a managed view reads.
type Table struct {
	OID     uint32
	Schema  string
	Relname string
	// Name is format('%I.%I', schema, relname).
	Name        string
	Kind        byte
	Persistence byte // p permanent, u unlogged, t temporary
	// Publish is the table the publication must contain for changes to this
	// one to be streamed: itself, or the root of its partition tree.
	Publish *Table
	// ReplicaIdentity is false when an UPDATE or DELETE on the table (on any
	// leaf, for a partitioned table) would fail once it is published.
	ReplicaIdentity bool
	// PublishLeaves is set for a partition root without a primary key: the
	// publication contains its Leaves instead of the root, so that a
	// partition created later is published only once discovery has checked
	// its replica identity.
	PublishLeaves bool
	Leaves        []*Table
}

// Streamable reports whether changes to the table reach the WAL as rows:
// unlogged, temporary and foreign tables never do.
func (t *Table) Streamable() bool {
	return (t.Kind == KindTable || t.Kind == KindPartitioned) && t.Persistence == 'p'
}

// View is a managed materialized view.
type View struct {
	OID     uint32
	Schema  string
	Relname string
	// Name is format('%I.%I', schema, relname), the key everywhere.
	Name      string
	Populated bool
	// UniqueIndex: the view has an index REFRESH ... CONCURRENTLY can use.
	UniqueIndex bool
	// Sources are the tables the view reads, through plain views.
	Sources []*Table
	// Bases are the managed materialized views it reads, directly or through
	// plain views; it must be refreshed after them.
	Bases []string
	// Unmanaged are materialized views it reads that are not managed: their
	// refreshes never show up in the WAL.
	Unmanaged []string
	// Maintained is set for a view maintained incrementally: a table (OID
	// is the table's) whose definition is a plain view next to it.
	Maintained *Maintained
}

// Maintained is how the catalog knows a table maintained incrementally:
// the plain view <name>__definition next to it, whose comment starts with
// MaintainedMarkerPrefix.
type Maintained struct {
	Definition uint32 // the definition view's OID
	Marker     string // its comment
}

// MaintainedDefinitionSuffix names a maintained table's definition view,
// and MaintainedMarkerPrefix starts its comment.
const (
	MaintainedDefinitionSuffix = "__definition"
	MaintainedMarkerPrefix     = "mvrefresher incremental "
)

// ChangesOutsideTheStream reports whether the view's sources can change
// without a row change in the WAL: a partitioned source gains rows when a
// filled table is attached and loses them when a partition is detached or
// dropped, which only discovery notices.
func (v *View) ChangesOutsideTheStream() bool {
	return slices.ContainsFunc(v.Sources, func(t *Table) bool { return t.Kind == KindPartitioned })
}

// SourceNames lists the names of the view's sources.
func (v *View) SourceNames() []string {
	names := make([]string, len(v.Sources))
	for i, t := range v.Sources {
		names[i] = t.Name
	}
	return names
}

// Same reports whether o is the same view as v with the same dependencies:
// a view dropped and created again under its name (a new OID), or whose
// plain views in between now read other tables, is another view, whose
// earlier changes were routed elsewhere.
func (v *View) Same(o *View) bool {
	return v.OID == o.OID && slices.Equal(v.Bases, o.Bases) && slices.Equal(v.sourceOIDs(), o.sourceOIDs())
}

func (v *View) sourceOIDs() []uint32 {
	oids := make([]uint32, len(v.Sources))
	for i, t := range v.Sources {
		oids[i] = t.OID
	}
	slices.Sort(oids)
	return oids
}

// Problem is a reason a view cannot be managed safely.
type Problem struct {
	View    string
	Code    string
	Message string
}

// Catalog is what discovery found: the managed views and how changes to
// tables reach them.
type Catalog struct {
	Views map[string]*View
	// Excluded views could not be managed; each has at least one problem.
	Excluded []Problem
	// Warnings do not stop a view from being managed.
	Warnings []Problem

	tables     map[uint32]*Table   // sources and their partition roots
	readers    map[uint32][]string // table OID -> views reading it
	ancestors  map[uint32][]uint32 // partition OID -> its ancestors, itself first
	dependents map[string][]string // view -> managed views reading it
	byRelname  map[[2]string]any   // {schema, relname} -> *View or *Table, for Lookup
	edges      map[string][]Edge   // relation -> what it reads directly (discovery only)
}

// New makes a catalog of views known without reading a server: each view's
// Sources and Bases are given, and a source without a Publish table
// publishes itself (a plain table).
func New(views ...*View) *Catalog {
	c := &Catalog{
		Views:      map[string]*View{},
		tables:     map[uint32]*Table{},
		readers:    map[uint32][]string{},
		ancestors:  map[uint32][]uint32{},
		dependents: map[string][]string{},
	}
	for _, v := range views {
		c.Views[v.Name] = v
		for _, b := range v.Bases {
			c.dependents[b] = append(c.dependents[b], v.Name)
		}
		for _, t := range v.Sources {
			if t.Publish == nil {
				t.Publish = t
			}
			c.tables[t.OID] = t
			c.readers[t.OID] = append(c.readers[t.OID], v.Name)
		}
	}
	c.index()
	return c
}

// index sorts the routes and builds Lookup's index, once the views and
// tables are in.
func (c *Catalog) index() {
	for _, names := range c.readers {
		slices.Sort(names)
	}
	for _, names := range c.dependents {
		slices.Sort(names)
	}
	c.indexRelnames()
}

// Dependents lists the managed views that read view directly or through
// plain views: they must be refreshed after it.
func (c *Catalog) Dependents(view string) []string { return c.dependents[view] }

// TransitiveBases lists every managed view that must not be pending or
// running when view starts.
func (c *Catalog) TransitiveBases(view string) []string {
	var out []string
	var walk func(string)
	walk = func(name string) {
		v := c.Views[name]
		if v == nil {
			return
		}
		for _, b := range v.Bases {
			if !slices.Contains(out, b) {
				out = append(out, b)
				walk(b)
			}
		}
	}
	walk(view)
	sort.Strings(out)
	return out
}

// WithDependents returns views and every view depending on them, directly
// or not, each once, in the order met: a refresh owed by a base is owed by
// its dependents too.
func (c *Catalog) WithDependents(views ...string) []string {
	var out []string
	var add func(string)
	add = func(v string) {
		if slices.Contains(out, v) {
			return
		}
		out = append(out, v)
		for _, dep := range c.Dependents(v) {
			add(dep)
		}
	}
	for _, v := range views {
		add(v)
	}
	return out
}

// TransitiveDependents lists every view depending on view, directly or not.
func (c *Catalog) TransitiveDependents(view string) []string {
	return c.WithDependents(view)[1:]
}

// PublishedTables lists the tables the publication must contain: the
// streamable sources of managed views (partition roots for partitions, or
// the root's leaves for a root without a key).
func (c *Catalog) PublishedTables() []*Table {
	seen := map[uint32]bool{}
	var out []*Table
	add := func(t *Table) {
		if !seen[t.OID] {
			seen[t.OID] = true
			out = append(out, t)
		}
	}
	for _, v := range c.Views {
		for _, s := range v.Sources {
			switch {
			case !s.Streamable():
			case s.Publish.PublishLeaves:
				for _, leaf := range s.Publish.Leaves {
					add(leaf)
				}
			default:
				add(s.Publish)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Names lists the managed views, sorted.
func (c *Catalog) Names() []string {
	names := make([]string, 0, len(c.Views))
	for n := range c.Views {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Route lists the views a change to relation oid affects and the name of the
// source to report (a partition reports its root). known is false for a
// relation discovery did not see: a partition created since, or a table no
// managed view reads.
func (c *Catalog) Route(oid uint32) (views []string, source string, known bool) {
	if anc, ok := c.ancestors[oid]; ok {
		views, source = c.RouteAncestors(anc)
		return views, source, true
	}
	t, ok := c.tables[oid]
	if !ok {
		return nil, "", false
	}
	return c.readers[oid], t.Publish.Name, true
}

// Partitions lists the partitions discovery saw below table oid.
func (c *Catalog) Partitions(oid uint32) []uint32 {
	var out []uint32
	for p, anc := range c.ancestors {
		if p != oid && slices.Contains(anc, oid) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// Knows reports whether discovery saw relation oid: Route's known, without
// the routing.
func (c *Catalog) Knows(oid uint32) bool {
	_, partition := c.ancestors[oid]
	_, table := c.tables[oid]
	return partition || table
}

// RouteAncestors is Route for a partition given its ancestors, itself first.
func (c *Catalog) RouteAncestors(ancestors []uint32) (views []string, source string) {
	for _, a := range ancestors {
		if t, ok := c.tables[a]; ok {
			source = t.Publish.Name
		}
		for _, v := range c.readers[a] {
			if !slices.Contains(views, v) {
				views = append(views, v)
			}
		}
	}
	return views, source
}

// Lookup finds a managed view or a source table by schema and name.
func (c *Catalog) Lookup(schema, relname string) (*View, *Table) {
	switch r := c.byRelname[[2]string{schema, relname}].(type) {
	case *View:
		return r, nil
	case *Table:
		return nil, r
	}
	return nil, nil
}

// indexRelnames builds Lookup's index; a view wins over a table by its name.
func (c *Catalog) indexRelnames() {
	c.byRelname = make(map[[2]string]any, len(c.Views)+len(c.tables))
	for _, t := range c.tables {
		c.byRelname[[2]string{t.Schema, t.Relname}] = t
	}
	for _, v := range c.Views {
		c.byRelname[[2]string{v.Schema, v.Relname}] = v
	}
}

// PartitionChange is a partitioned source whose partitions differ from an
// earlier discovery's.
type PartitionChange struct {
	Table          *Table
	Readers        []string
	Added, Removed []uint32
}

// PartitionChanges compares the partitions of every partitioned source with
// prev's. DETACH, DROP and ATTACH of a partition change what a view reads
// without any row change in the WAL.
func (c *Catalog) PartitionChanges(prev *Catalog) []PartitionChange {
	now, before := c.partitionSets(), prev.partitionSets()
	var out []PartitionChange
	for oid, t := range c.tables {
		if t.Kind != KindPartitioned || prev.tables[oid] == nil || slices.Equal(now[oid], before[oid]) {
			continue
		}
		pc := PartitionChange{Table: t, Readers: c.readers[oid]}
		for _, p := range now[oid] {
			if !slices.Contains(before[oid], p) {
				pc.Added = append(pc.Added, p)
			}
		}
		for _, p := range before[oid] {
			if !slices.Contains(now[oid], p) {
				pc.Removed = append(pc.Removed, p)
			}
		}
		out = append(out, pc)
	}
	return out
}

// partitionSets maps each partitioned table to its partitions, sorted.
func (c *Catalog) partitionSets() map[uint32][]uint32 {
	sets := map[uint32][]uint32{}
	for oid, anc := range c.ancestors {
		for _, a := range anc[1:] {
			sets[a] = append(sets[a], oid)
		}
	}
	for _, s := range sets {
		slices.Sort(s)
	}
	return sets
}
