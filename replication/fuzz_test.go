package replication

import "testing"

// FuzzDecode feeds the decoder one arbitrary message inside a transaction:
// whatever arrives on the wire (a server bug, a proxy, a protocol change),
// decoding returns an error or a result and never panics.
func FuzzDecode(f *testing.F) {
	for _, seed := range [][]byte{
		begin(0x100), relation(16400, "app", "events"), rowChange('I', 16400), rowChange('U', 16400), rowChange('D', 16400),
		truncate(16400, 16500), message(true, MessagePrefix, "app.mv_x"), message(false, "x", ""), commit(0x100, 0x180),
		{'B'}, {'R', 0, 0}, {'T', 0, 0, 0, 9}, {'M', 1}, {'I'}, {},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, msg []byte) {
		var d decoder
		if _, err := d.decode(begin(0x100)); err != nil {
			t.Fatal(err)
		}
		if _, err := d.decode(relation(16400, "app", "events")); err != nil {
			t.Fatal(err)
		}
		_, _ = d.decode(msg)
		_, _ = d.decode(commit(0x100, 0x180))
	})
}
