package replication

import (
	"reflect"
	"testing"
)

// Images keep the selected columns alone, in the relation's order, with
// the Key flags and replica identity the server wrote the change with.
func TestDecoder_ImagesKeepTheSelectedColumns(t *testing.T) {
	const byDefault, full = 16400, 16401
	columns := []Column{{"id", 23, true}, {"name", 25, false}, {"notes", 25, false}, {"big", 25, false}}
	d := decoder{selected: func(oid uint32) []string {
		switch oid {
		case byDefault:
			// Out of order, and with a column the relation does not have.
			return []string{"notes", "nickname", "id"}
		case full:
			return []string{"name"}
		}
		return nil
	}}
	tx := feedAll(t, &d,
		begin(0x100),
		relationMessage(byDefault, "app", "accounts", columns...),
		identifiedRelationMessage(full, "app", "people", 'f', Column{"id", 23, true}, Column{"name", 25, true}),
		insertMessage(byDefault, text("1"), text("ann"), null, text("big")),
		updateMessage(byDefault, 0, nil, []Value{text("1"), text("anne"), text("n"), unchanged}),
		updateMessage(byDefault, 'K', []Value{text("1"), null, null, null}, []Value{text("2"), text("anne"), text("n"), unchanged}),
		deleteMessage(byDefault, 'K', text("2"), null, null, null),
		updateMessage(full, 'O', []Value{text("1"), text("a")}, []Value{text("1"), text("b")}),
		deleteMessage(full, 'O', text("1"), text("b")),
		commit(0x100, 0x180),
	)
	want := []RelationChange{
		{OID: byDefault, Namespace: "app", Name: "accounts", Rows: 4, ReplicaIdentity: 'd',
			Columns: []Column{{"id", 23, true}, {"notes", 25, false}}, Images: []RowImage{
				{Kind: 'I', New: []Value{text("1"), null}},
				{Kind: 'U', New: []Value{text("1"), text("n")}},
				{Kind: 'U', OldKind: 'K', Old: []Value{text("1"), null}, New: []Value{text("2"), text("n")}},
				{Kind: 'D', OldKind: 'K', Old: []Value{text("2"), null}},
			}},
		{OID: full, Namespace: "app", Name: "people", Rows: 2, ReplicaIdentity: 'f',
			Columns: []Column{{"name", 25, true}}, Images: []RowImage{
				{Kind: 'U', OldKind: 'O', Old: []Value{text("a")}, New: []Value{text("b")}},
				{Kind: 'D', OldKind: 'O', Old: []Value{text("b")}},
			}},
	}
	if !reflect.DeepEqual(tx.Changes, want) {
		t.Errorf("changes\n%+v, want\n%+v", tx.Changes, want)
	}
}

// A row is checked against every column of the relation, not only those
// kept.
func TestDecoder_RowCheckedAgainstTheWholeRelation(t *testing.T) {
	d := decoder{selected: selecting([]string{"id", "name"}, 16400)}
	tx := feedAll(t, &d, begin(0x100), relationMessage(16400, "app", "accounts", accountColumns...),
		insertMessage(16400, text("1"), text("ann")), commit(0x100, 0x180))
	if c := tx.Changes[0]; c.Images != nil || c.ImagesLost != lostColumnCount {
		t.Errorf("a row of the 2 columns kept, in a relation of 3: %+v", c)
	}
}

// A change of the relation loses the images even when the columns kept
// stay the same: the relation's rows no longer read as before.
func TestDecoder_RelationChangedOutsideTheColumnsKept(t *testing.T) {
	row := insertMessage(16400, text("1"), text("ann"), null)
	d := decoder{selected: selecting([]string{"id", "name"}, 16400)}
	tx := feedAll(t, &d, begin(0x100), relationMessage(16400, "app", "accounts", accountColumns...), row,
		// The same relation again: nothing changed.
		relationMessage(16400, "app", "accounts", accountColumns...), row, commit(0x100, 0x180))
	if c := tx.Changes[0]; len(c.Images) != 2 || c.ImagesLost != "" {
		t.Errorf("the same relation again: %+v", c)
	}
	for name, changed := range map[string]struct {
		message []byte
		row     []byte
	}{
		"a column added": {
			relationMessage(16400, "app", "accounts", append(accountColumns[:3:3], Column{"email", 25, false})...),
			insertMessage(16400, text("1"), text("ann"), null, text("a@b")),
		},
		"a column not kept retyped": {
			relationMessage(16400, "app", "accounts", accountColumns[0], accountColumns[1], Column{"notes", 1043, false}),
			row,
		},
		"the replica identity": {identifiedRelationMessage(16400, "app", "accounts", 'i', accountColumns...), row},
	} {
		d := decoder{selected: selecting([]string{"id", "name"}, 16400)}
		tx := feedAll(t, &d, begin(0x100), relationMessage(16400, "app", "accounts", accountColumns...), row,
			changed.message, changed.row, commit(0x100, 0x180))
		if c := tx.Changes[0]; c.Images != nil || c.ImagesLost != lostColumnsChanged || c.Rows != 2 {
			t.Errorf("%s: %+v", name, c)
		}
	}
}
