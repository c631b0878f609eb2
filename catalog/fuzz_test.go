package catalog

import "testing"

// FuzzParseNodeTree: the rewrite rule's node tree comes from the server as
// text; a form the parser does not know is an error, never a panic.
func FuzzParseNodeTree(f *testing.F) {
	for _, seed := range []string{
		`({QUERY :commandType 1 :utilityStmt <> :rtable ({RANGETBLENTRY :eref {ALIAS :aliasname t :colnames ("a" "ts")} :rtekind 0 :relid 16388 :selectedCols (b 8 9)}) :targetList ({TARGETENTRY :expr {FUNCEXPR :funcid 1299 :args <>} :resno 1 :resname last\ refreshed\ at :resjunk false})})`,
		`{CONST :consttype 1186 :constlen 16 :constbyval false :constisnull false :location 249 :constvalue 16 [ 0 0 0 0 0 0 0 0 1 0 0 0 0 0 0 0 ]}`,
		`(i 1 2 3)`, `(o 16384)`, `<>`, `"a\"b"`, `({`, `)`, `{X :a`, `[ 1 2`, ``,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = parseNodeTree(s)
	})
}
