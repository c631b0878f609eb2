package replication

import "testing"

// FuzzDecode feeds the decoder one arbitrary message inside a transaction
// (its row changes of relations with even OIDs are decoded in full):
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
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		// Even OIDs are selected (16400 among them): a mutated OID takes
		// either path.
		d := decoder{selected: func(oid uint32) bool { return oid%2 == 0 }}
		if _, err := d.decode(begin(0x100)); err != nil {
			t.Fatal(err)
		}
		if _, err := d.decode(relationMessage(16400, "app", "events", accountColumns...)); err != nil {
			t.Fatal(err)
		}
		_, _ = d.decode(msg)
		_, _ = d.decode(commit(0x100, 0x180))
	})
}
