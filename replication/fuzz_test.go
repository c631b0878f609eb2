package replication

import "testing"

// FuzzDecode feeds the decoder one arbitrary message inside a transaction
// (its row changes of relations with even OIDs are decoded, all their
// columns kept or some):
// whatever arrives on the wire (a server bug, a proxy, a protocol change),
// decoding returns an error or a result and never panics.
func FuzzDecode(f *testing.F) {
	for _, seed := range [][]byte{
		begin(0x100), relationMessage(16400, "app", "events", accountColumns...), rowChange('I', 16401), rowChange('U', 16401), rowChange('D', 16401),
		truncate(16400, 16500), message(true, MessagePrefix, "app.mv_x"), message(false, "x", ""), commit(0x100, 0x180),
		{'B'}, {'R', 0, 0}, {'T', 0, 0, 0, 9}, {'M', 1}, {'I'}, {},
		// Row changes of the selected relation, whose tuples are parsed.
		insertMessage(16400, text("1"), null, unchanged),
		updateMessage(16400, 0, nil, []Value{text("1"), null, unchanged}),
		updateMessage(16400, 'K', []Value{text("1"), null, null}, []Value{text("2"), text("x"), unchanged}),
		updateMessage(16400, 'O', []Value{text("1"), text("x"), null}, []Value{text("2"), text("x"), unchanged}),
		deleteMessage(16400, 'K', text("1"), null, null), deleteMessage(16400, 'O', text("1"), text("x"), null),
		// Of the relation whose images keep some columns.
		updateMessage(16402, 'O', []Value{text("1"), text("x"), null}, []Value{text("2"), text("x"), unchanged}),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		// Even OIDs are selected, 16400 with all its columns and 16402
		// with some: a mutated OID takes any path.
		d := decoder{selected: func(oid uint32) []string {
			switch oid % 4 {
			case 0:
				return accountNames
			case 2:
				return []string{"notes", "id"}
			}
			return nil
		}}
		for _, m := range [][]byte{
			begin(0x100),
			relationMessage(16400, "app", "events", accountColumns...),
			identifiedRelationMessage(16402, "app", "people", 'f', Column{"id", 23, true}, Column{"name", 25, true}, Column{"notes", 25, true}),
		} {
			if _, err := d.decode(m); err != nil {
				t.Fatal(err)
			}
		}
		_, _ = d.decode(msg)
		_, _ = d.decode(commit(0x100, 0x180))
	})
}
