package replication

import (
	"errors"

	"github.com/jackc/pgerrcode"
	"github.com/jackc/pgx/v5/pgconn"
)

// privilegeHint explains the privileges behind an insufficient_privilege
// error, which PostgreSQL reports without saying what would fix it.
func privilegeHint(err error) string {
	if sqlState(err) != pgerrcode.InsufficientPrivilege {
		return ""
	}
	return " (the role needs CREATE on the database to create the publication and must own every source table it adds; see Privileges in docs/operations.md)"
}

// sqlState returns the SQLSTATE of a PostgreSQL error in err's chain, or "".
func sqlState(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}
