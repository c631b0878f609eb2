package replication

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// Row changes with their tuples, as pgoutput (protocol version 1) sends them.
func insertMessage(oid uint32, row ...Value) []byte {
	b := binary.BigEndian.AppendUint32([]byte{'I'}, oid)
	return appendTuple(append(b, 'N'), row)
}

// updateMessage sends old only when oldKind is 'K' or 'O'.
func updateMessage(oid uint32, oldKind byte, old, row []Value) []byte {
	b := binary.BigEndian.AppendUint32([]byte{'U'}, oid)
	if oldKind != 0 {
		b = appendTuple(append(b, oldKind), old)
	}
	return appendTuple(append(b, 'N'), row)
}

func deleteMessage(oid uint32, oldKind byte, old ...Value) []byte {
	b := binary.BigEndian.AppendUint32([]byte{'D'}, oid)
	return appendTuple(append(b, oldKind), old)
}

func appendTuple(b []byte, row []Value) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(row)))
	for _, v := range row {
		switch {
		case v.Null:
			b = append(b, 'n')
		case v.Unchanged:
			b = append(b, 'u')
		default:
			b = binary.BigEndian.AppendUint32(append(b, 't'), uint32(len(v.Text)))
			b = append(b, v.Text...)
		}
	}
	return b
}

func text(s string) Value { return Value{Text: s} }

var (
	null      = Value{Null: true}
	unchanged = Value{Unchanged: true}
	// The columns of the relations the tests select, under REPLICA IDENTITY
	// DEFAULT with a primary key on id.
	accountColumns = []Column{{"id", 23, true}, {"name", 25, false}, {"notes", 25, false}}
	accountNames   = []string{"id", "name", "notes"}
)

// feedAll decodes msgs and returns the last transaction they complete.
func feedAll(t *testing.T, d *decoder, msgs ...[]byte) *Transaction {
	t.Helper()
	var tx *Transaction
	for i, m := range msgs {
		got, err := d.decode(m)
		if err != nil {
			t.Fatalf("decode message %d (%q): %v", i, m[0], err)
		}
		if got != nil {
			tx = got
		}
	}
	return tx
}

// selecting keeps the columns names of the relations oids.
func selecting(names []string, oids ...uint32) func(uint32) []string {
	return func(oid uint32) []string {
		if slices.Contains(oids, oid) {
			return names
		}
		return nil
	}
}

func TestDecoder_ImagesOfSelectedRelations(t *testing.T) {
	d := decoder{selected: selecting(accountNames, 16400)}
	tx := feedAll(t, &d,
		begin(0x100),
		relationMessage(16400, "app", "accounts", accountColumns...),
		relationMessage(16500, "app", "events", Column{"id", 20, true}),
		insertMessage(16400, text("1"), text("ann"), null),
		// Not selected: counted, not parsed (this tuple says it has 65535
		// columns and has none).
		[]byte{'I', 0, 0, 0x40, 0x74, 'N', 0xff, 0xff},
		// DEFAULT, no key column changed: no old row.
		updateMessage(16400, 0, nil, []Value{text("1"), text("anne"), unchanged}),
		// The key changed: the old key, the other columns null.
		updateMessage(16400, 'K', []Value{text("1"), null, null}, []Value{text("2"), text("anne"), unchanged}),
		// FULL: the whole old row.
		updateMessage(16400, 'O', []Value{text("2"), text("anne"), null}, []Value{text("2"), text(""), text("x")}),
		deleteMessage(16400, 'K', text("2"), null, null),
		deleteMessage(16400, 'O', text("3"), text("bob"), text("y")),
		commit(0x100, 0x180),
	)
	if tx == nil {
		t.Fatal("no transaction")
	}
	want := []RelationChange{
		{OID: 16400, Namespace: "app", Name: "accounts", Rows: 6, Columns: accountColumns, ReplicaIdentity: 'd', Images: []RowImage{
			{Kind: 'I', New: []Value{text("1"), text("ann"), null}},
			{Kind: 'U', New: []Value{text("1"), text("anne"), unchanged}},
			{Kind: 'U', OldKind: 'K', Old: []Value{text("1"), null, null}, New: []Value{text("2"), text("anne"), unchanged}},
			{Kind: 'U', OldKind: 'O', Old: []Value{text("2"), text("anne"), null}, New: []Value{text("2"), text(""), text("x")}},
			{Kind: 'D', OldKind: 'K', Old: []Value{text("2"), null, null}},
			{Kind: 'D', OldKind: 'O', Old: []Value{text("3"), text("bob"), text("y")}},
		}},
		{OID: 16500, Namespace: "app", Name: "events", Rows: 1},
	}
	if !reflect.DeepEqual(tx.Changes, want) {
		t.Errorf("changes\n%+v, want\n%+v", tx.Changes, want)
	}
}

// The values must not alias the message, whose buffer the connection reuses.
func TestDecoder_ImagesCopyValues(t *testing.T) {
	d := decoder{selected: selecting(accountNames, 16400)}
	msg := insertMessage(16400, text("1"), text("ann"), null)
	feedAll(t, &d, begin(0x100), relationMessage(16400, "app", "accounts", accountColumns...), msg)
	for i := range msg {
		msg[i] = '!'
	}
	tx := feedAll(t, &d, commit(0x100, 0x180))
	if got := tx.Changes[0].Images[0].New; !reflect.DeepEqual(got, []Value{text("1"), text("ann"), null}) {
		t.Errorf("values after the buffer was overwritten: %+v", got)
	}
}

// TestDecoder_ImagesDropLongValues: a value longer than MaxImageValueBytes
// is not kept, so that a transaction's images stay bounded.
func TestDecoder_ImagesDropLongValues(t *testing.T) {
	d := decoder{selected: selecting(accountNames, 16400)}
	long := strings.Repeat("x", MaxImageValueBytes+1)
	edge := strings.Repeat("y", MaxImageValueBytes)
	tx := feedAll(t, &d, begin(0x100), relationMessage(16400, "app", "accounts", accountColumns...),
		insertMessage(16400, text("1"), text(long), text(edge)), commit(0x100, 0x180))
	if got := tx.Changes[0].Images[0].New; !reflect.DeepEqual(got, []Value{text("1"), {Dropped: true}, text(edge)}) {
		t.Errorf("values of %d and %d bytes: kept %+v, want the first dropped", len(long), len(edge), got)
	}
}

func TestDecoder_SelectionIsAskedForEveryRow(t *testing.T) {
	var selected []string
	d := decoder{selected: func(uint32) []string { return selected }}
	tx := feedAll(t, &d, begin(0x100), relationMessage(16400, "app", "accounts", accountColumns...),
		insertMessage(16400, text("1"), text("ann"), null), commit(0x100, 0x180))
	if c := tx.Changes[0]; c.Images != nil || c.Columns != nil || c.ImagesLost != "" {
		t.Errorf("not selected: %+v", c)
	}
	selected = accountNames
	tx = feedAll(t, &d, begin(0x200), insertMessage(16400, text("1"), text("ann"), null), commit(0x200, 0x280))
	if c := tx.Changes[0]; len(c.Images) != 1 || c.ImagesLost != "" {
		t.Errorf("selected since: %+v", c)
	}
	// Selected, no longer selected or keeping other columns in the middle
	// of a transaction: the images would miss rows, or not line up.
	for _, change := range [][2][]string{
		{nil, accountNames}, {accountNames, {}}, {accountNames, {"id", "name"}}, {{"id"}, {"name"}},
	} {
		selected = change[0]
		feedAll(t, &d, begin(0x300), insertMessage(16400, text("1"), text("ann"), null))
		selected = change[1]
		tx = feedAll(t, &d, insertMessage(16400, text("2"), text("bob"), null), commit(0x300, 0x380))
		if c := tx.Changes[0]; c.Images != nil || c.ImagesLost != lostSelectionChanged || c.Rows != 2 {
			t.Errorf("selected %q, then %q: %+v", change[0], change[1], c)
		}
	}
}

// The cap counts the images of every selected relation of a transaction
// together, and starts again at each transaction.
func TestDecoder_ImagesCapPerTransaction(t *testing.T) {
	const first, second, third = 16400, 16401, 16402
	d := decoder{selected: selecting(accountNames, first, second, third)}
	row := func(oid uint32) []byte { return insertMessage(oid, text("1"), text("ann"), null) }
	for _, oid := range []uint32{first, second, third} {
		feedAll(t, &d, relationMessage(oid, "app", fmt.Sprint("accounts_", oid), accountColumns...))
	}
	firstRows := MaxImagesPerTransaction / 2
	for _, past := range []bool{true, false} {
		feedAll(t, &d, begin(0x100))
		for range firstRows {
			feedAll(t, &d, row(first))
		}
		for range MaxImagesPerTransaction - firstRows {
			feedAll(t, &d, row(second))
		}
		if !past {
			tx := feedAll(t, &d, commit(0x100, 0x180))
			for _, c := range tx.Changes {
				if len(c.Images) != c.Rows || c.ImagesLost != "" {
					t.Errorf("at the cap: %s: %d rows, %d images, lost %q", c.Name, c.Rows, len(c.Images), c.ImagesLost)
				}
			}
			continue
		}
		// Past the cap, the images of whichever relation changes next are
		// lost, and so are those of every later change.
		tx := feedAll(t, &d, row(second), row(first), row(third), commit(0x100, 0x180))
		for i, rows := range []int{firstRows + 1, MaxImagesPerTransaction - firstRows + 1, 1} {
			if c := tx.Changes[i]; c.Rows != rows || c.Images != nil || c.ImagesLost != lostOverCap {
				t.Errorf("past the cap: %s: %d rows (want %d), %d images, lost %q", c.Name, c.Rows, rows, len(c.Images), c.ImagesLost)
			}
		}
	}
}

func TestDecoder_ColumnsChangedMidTransaction(t *testing.T) {
	d := decoder{selected: selecting(accountNames, 16400)}
	row := insertMessage(16400, text("1"), text("ann"), null)
	tx := feedAll(t, &d, begin(0x100), relationMessage(16400, "app", "accounts", accountColumns...), row,
		// The same columns again: nothing changed.
		relationMessage(16400, "app", "accounts", accountColumns...), row, commit(0x100, 0x180))
	if c := tx.Changes[0]; len(c.Images) != 2 || c.ImagesLost != "" {
		t.Errorf("same columns: %+v", c)
	}
	for name, changed := range map[string]struct {
		columns []Column
		row     []Value
	}{
		"added":   {append(accountColumns[:3:3], Column{"email", 25, false}), []Value{text("1"), text("ann"), null, text("a@b")}},
		"retyped": {[]Column{{"id", 20, true}, {"name", 25, false}, {"notes", 25, false}}, []Value{text("1"), text("ann"), null}},
		"rekeyed": {[]Column{{"id", 23, true}, {"name", 25, true}, {"notes", 25, false}}, []Value{text("1"), text("ann"), null}},
	} {
		// email is selected before the relation has it: ignored until then.
		d := decoder{selected: selecting(append(accountNames[:3:3], "email"), 16400)}
		tx := feedAll(t, &d, begin(0x100), relationMessage(16400, "app", "accounts", accountColumns...), row,
			relationMessage(16400, "app", "accounts", changed.columns...), insertMessage(16400, changed.row...),
			commit(0x100, 0x180))
		if c := tx.Changes[0]; c.Images != nil || c.ImagesLost != lostColumnsChanged || c.Rows != 2 {
			t.Errorf("%s: %+v", name, c)
		}
		// The next transaction takes images with the new columns.
		tx = feedAll(t, &d, begin(0x200), insertMessage(16400, changed.row...), commit(0x200, 0x280))
		if c := tx.Changes[0]; len(c.Images) != 1 || !reflect.DeepEqual(c.Columns, changed.columns) {
			t.Errorf("%s, next transaction: %+v", name, c)
		}
	}
}

func TestDecoder_RowsThatDoNotFitTheRelation(t *testing.T) {
	d := decoder{selected: selecting(accountNames, 16400, 16401)}
	tx := feedAll(t, &d, begin(0x100), relationMessage(16400, "app", "accounts", accountColumns...),
		insertMessage(16400, text("1"), text("ann")),
		insertMessage(16401, text("1")),
		commit(0x100, 0x180))
	if c := tx.Changes[0]; c.Images != nil || c.ImagesLost != lostColumnCount {
		t.Errorf("a row of 2 columns in a relation of 3: %+v", c)
	}
	if c := tx.Changes[1]; c.Images != nil || c.ImagesLost != lostNoRelation {
		t.Errorf("a row of a relation no Relation message described: %+v", c)
	}
}

func TestDecoder_MalformedRowsOfSelectedRelations(t *testing.T) {
	good := insertMessage(16400, text("1"), text("ann"), null)
	for name, msg := range map[string][]byte{
		"value past the end":  good[:len(good)-3],
		"huge length":         append(binary.BigEndian.AppendUint32([]byte{'I', 0, 0, 0x40, 0x10, 'N', 0, 1, 't'}, 0xfffffff0), 'x'),
		"no tuple":            {'I', 0, 0, 0x40, 0x10, 'N'},
		"binary value":        append(binary.BigEndian.AppendUint32([]byte{'I', 0, 0, 0x40, 0x10, 'N', 0, 1, 'b'}, 1), 'x'),
		"update without new":  appendTuple([]byte{'U', 0, 0, 0x40, 0x10, 'K'}, []Value{text("1"), null, null}),
		"update, X for new":   append(appendTuple([]byte{'U', 0, 0, 0x40, 0x10, 'O'}, []Value{null}), 'X', 0, 1, 'n'),
		"delete of a new row": appendTuple([]byte{'D', 0, 0, 0x40, 0x10, 'N'}, []Value{null}),
	} {
		d := decoder{selected: selecting(accountNames, 16400)}
		feedAll(t, &d, begin(0x100), relationMessage(16400, "app", "accounts", accountColumns...))
		if _, err := d.decode(msg); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
}

// pglogrepl allocates a value's stated length before it reads the value: a
// length the message cannot hold must be refused before.
func TestDecoder_ValueLengthsCheckedBeforeParsing(t *testing.T) {
	d := decoder{selected: selecting(accountNames, 16400)}
	feedAll(t, &d, begin(0x100), relationMessage(16400, "app", "accounts", accountColumns...))
	msg := append(binary.BigEndian.AppendUint32([]byte{'I', 0, 0, 0x40, 0x10, 'N', 0, 3, 't'}, 1<<30), 'x')
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := d.decode(msg)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Error("a value of 1 GiB in a message of 15 bytes decoded without an error")
	}
	if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 1<<20 {
		t.Errorf("decoding a value that claims 1 GiB allocated %d bytes", allocated)
	}
}
