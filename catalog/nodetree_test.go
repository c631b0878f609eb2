package catalog

import (
	"slices"
	"testing"
)

func TestParseNodeTree(t *testing.T) {
	// Abridged from pg_rewrite.ev_action of a view with now() and a Const.
	src := `({QUERY :commandType 1 :utilityStmt <> :rtable ({RANGETBLENTRY :eref {ALIAS :aliasname t :colnames ("a" "ts")} :rtekind 0 :relid 16388 :selectedCols (b 8 9)}) :jointree {FROMEXPR :fromlist ({RANGETBLREF :rtindex 1}) :quals {OPEXPR :opfuncid 1190 :args ({FUNCEXPR :funcid 2649 :args <> :location 220} {CONST :consttype 1186 :constlen 16 :constbyval false :constisnull false :location 249 :constvalue 16 [ 0 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0 ]})}} :targetList ({TARGETENTRY :expr {FUNCEXPR :funcid 1299 :args <>} :resno 1 :resname last\ refreshed\ at :resjunk false})})`
	v, err := parseNodeTree(src)
	if err != nil {
		t.Fatal(err)
	}
	list, ok := v.([]any)
	if !ok || len(list) != 1 {
		t.Fatalf("top value %#v, want a list of one query", v)
	}
	q := list[0].(*node)
	if q.name != "QUERY" || q.get("utilityStmt") != nil {
		t.Fatalf("query node %+v", q)
	}
	te := q.list("targetList")[0].(*node)
	if te.str("resname") != "last refreshed at" || te.child("expr").str("funcid") != "1299" {
		t.Errorf("target entry %+v", te.fields)
	}
	quals := q.child("jointree").child("quals")
	args := quals.list("args")
	if args[0].(*node).str("funcid") != "2649" || args[1].(*node).str("constvalue") != "0 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0" {
		t.Errorf("quals args %+v %+v", args[0], args[1])
	}
	if cols := q.list("rtable")[0].(*node).child("eref").list("colnames"); len(cols) != 2 || cols[0] != `"a"` {
		t.Errorf("colnames %#v", cols)
	}
	for _, bad := range []string{`({QUERY :a 1`, `({QUERY :a (1 2}`, `{X} extra`} {
		if _, err := parseNodeTree(bad); err == nil {
			t.Errorf("parseNodeTree(%q) accepted a broken tree", bad)
		}
	}
}

func TestTokenize(t *testing.T) {
	got := tokenize(`{CONST :constvalue 4 [ 1 0 0 0 ] :name a\ b\{c\} :x <>}(\\ z)` + "\t\n\\")
	want := []string{"{", "CONST", ":constvalue", "4", "[", "1", "0", "0", "0", "]", ":name", "a b{c}", ":x", "<>", "}", "(", `\`, "z", ")", `\`}
	if !slices.Equal(got, want) {
		t.Fatalf("tokenize:\n got  %q\n want %q", got, want)
	}
}
