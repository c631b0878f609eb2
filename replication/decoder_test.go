package replication

import (
	"encoding/binary"
	"reflect"
	"testing"
)

// pgoutput protocol version 1 messages, built by hand.
func begin(finalLSN uint64) []byte {
	b := []byte{'B'}
	b = binary.BigEndian.AppendUint64(b, finalLSN)
	b = binary.BigEndian.AppendUint64(b, 0) // commit time
	return binary.BigEndian.AppendUint32(b, 7)
}

func commit(commitLSN, endLSN uint64) []byte {
	b := []byte{'C', 0}
	b = binary.BigEndian.AppendUint64(b, commitLSN)
	b = binary.BigEndian.AppendUint64(b, endLSN)
	return binary.BigEndian.AppendUint64(b, 0)
}

func relationMessage(oid uint32, ns, name string, columns ...Column) []byte {
	return identifiedRelationMessage(oid, ns, name, 'd', columns...)
}

// identifiedRelationMessage describes a relation of the replica identity
// identity, whose Key columns are flagged.
func identifiedRelationMessage(oid uint32, ns, name string, identity byte, columns ...Column) []byte {
	b := []byte{'R'}
	b = binary.BigEndian.AppendUint32(b, oid)
	b = append(append(b, ns...), 0)
	b = append(append(b, name...), 0)
	b = append(b, identity)
	b = binary.BigEndian.AppendUint16(b, uint16(len(columns)))
	for _, c := range columns {
		var flags byte
		if c.Key {
			flags = 1
		}
		b = append(b, flags)
		b = append(append(b, c.Name...), 0)
		b = binary.BigEndian.AppendUint32(b, c.TypeOID)
		b = binary.BigEndian.AppendUint32(b, 0xffffffff) // typmod -1
	}
	return b
}

func rowChange(kind byte, oid uint32) []byte {
	b := []byte{kind}
	b = binary.BigEndian.AppendUint32(b, oid)
	// A new tuple of one text column: 'N', 1 column, 't', len 1, "x".
	b = append(b, 'N')
	b = binary.BigEndian.AppendUint16(b, 1)
	b = append(b, 't')
	b = binary.BigEndian.AppendUint32(b, 1)
	return append(b, 'x')
}

func truncate(oids ...uint32) []byte {
	b := []byte{'T'}
	b = binary.BigEndian.AppendUint32(b, uint32(len(oids)))
	b = append(b, 0)
	for _, o := range oids {
		b = binary.BigEndian.AppendUint32(b, o)
	}
	return b
}

func message(transactional bool, prefix, content string) []byte {
	b := []byte{'M', 0}
	if transactional {
		b[1] = 1
	}
	b = binary.BigEndian.AppendUint64(b, 0)
	b = append(append(b, prefix...), 0)
	b = binary.BigEndian.AppendUint32(b, uint32(len(content)))
	return append(b, content...)
}

func TestDecoder_AssemblesTransactions(t *testing.T) {
	var d decoder
	feed := func(msgs ...[]byte) *Transaction {
		t.Helper()
		var tx *Transaction
		for _, m := range msgs {
			got, err := d.decode(m)
			if err != nil {
				t.Fatalf("decode %q: %v", m[0], err)
			}
			if got != nil {
				tx = got
			}
		}
		return tx
	}
	tx := feed(
		begin(0x100),
		relationMessage(16400, "app", "events_2026"),
		rowChange('I', 16400), rowChange('I', 16400), rowChange('U', 16400),
		relationMessage(16500, "app", "accounts"),
		rowChange('D', 16500),
		truncate(16600),
		message(true, "mvrefresher", "app.mv_x"),
		message(true, "other", "ignored"),
		commit(0x100, 0x180),
	)
	if tx == nil || tx.CommitLSN != 0x100 || tx.EndLSN != 0x180 || tx.Xid != 7 {
		t.Fatalf("transaction: %+v", tx)
	}
	want := []RelationChange{
		{OID: 16400, Namespace: "app", Name: "events_2026", Rows: 3},
		{OID: 16500, Namespace: "app", Name: "accounts", Rows: 1},
		{OID: 16600, Truncated: true},
	}
	if !reflect.DeepEqual(tx.Changes, want) {
		t.Errorf("changes %+v, want %+v", tx.Changes, want)
	}
	if len(tx.Requests) != 1 || tx.Requests[0] != "app.mv_x" {
		t.Errorf("requests %q, want only the mvrefresher one", tx.Requests)
	}
	if d.inTransaction() {
		t.Error("still in a transaction after its commit")
	}
	// A non-transactional message outside a transaction is not a request.
	if tx := feed(message(false, "mvrefresher", "app.mv_x")); tx != nil {
		t.Errorf("a non-transactional message made a transaction: %+v", tx)
	}
}
