package sqlite

import (
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update-schema", false, "write testdata/schemaN.golden (N: SchemaVersion) from a new file; review the diff before committing it")

// goldenPath is the expected schema of the current version: written once
// by -update-schema when a migration is added, reviewed, and never
// regenerated for a released version.
func goldenPath() string {
	return filepath.Join("testdata", fmt.Sprintf("schema%d.golden", SchemaVersion))
}

// TestSchemaGolden compares the schema of a new file and of every file of
// an older version that testdata holds, once upgraded, with the golden
// schema of this version (testdata/schemaN.golden). A new file and an
// upgraded one both run migrations, so that comparing them with each other
// cannot see a migration that is wrong for both (an index left out, a
// column of the wrong type): the golden file is the schema as it was
// meant, written down once, as far as schemaOf describes it.
func TestSchemaGolden(t *testing.T) {
	got := strings.Join(schemaOf(t, newFile(t)), "\n") + "\n"
	if *updateGolden {
		if err := os.WriteFile(goldenPath(), []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenPath())
	if err != nil {
		t.Fatalf("%v: a new schema version needs its golden schema (go test -run TestSchemaGolden -update-schema, then review it)", err)
	}
	if got != string(want) {
		t.Errorf("schema of a new file:\n%s\nwant (%s):\n%s", got, goldenPath(), want)
	}
	for _, f := range []struct {
		name string
		from int
	}{{"schema1.db", 1}, {"schema2.db", 2}, {"schema4.db", 4}, {"schema5.db", 5}} {
		t.Run(f.name, func(t *testing.T) {
			openUpgraded(t, f.name, f.from) // compares with the golden schema
		})
	}
}

// newFile returns the path of a new store file, closed.
func newFile(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "s.db")
	s, err := Open(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	return p
}

// checkGolden compares the schema of the database file p with the golden
// schema of this version.
func checkGolden(t *testing.T, p string) {
	t.Helper()
	want, err := os.ReadFile(goldenPath())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(schemaOf(t, p), "\n") + "\n"; got != string(want) {
		t.Errorf("schema of the upgraded file:\n%s\nwant (%s):\n%s", got, goldenPath(), want)
	}
}

// schemaOf describes the schema of the database file p, one line per
// fact, in an order that does not depend on how the file got it: its
// version; whether it has sqlite_sequence (made by the first table with
// AUTOINCREMENT, and kept); each table's kind, AUTOINCREMENT and columns (by name: files of schema 3 exist with two
// physical orders of messages' columns), foreign keys and indexes (those
// of constraints included, with their columns and any partial index's
// condition; an index on expressions by its SQL); and each trigger and
// view's SQL, its white space collapsed. Not compared: CHECK constraints
// and columns' collations, which only a table's SQL holds (its column
// order differs between files); the schema has neither.
func schemaOf(t *testing.T, p string) []string {
	t.Helper()
	db := rawDB(t, p)
	var l []string
	add := func(format string, args ...any) { l = append(l, fmt.Sprintf(format, args...)) }
	var version int
	if err := db.QueryRow(`PRAGMA user_version`).Scan(&version); err != nil {
		t.Fatal(err)
	}
	add("version %d", version)
	each := func(q string, scan func(*sql.Rows) error) {
		t.Helper()
		rows, err := db.Query(q)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		defer rows.Close()
		for rows.Next() {
			if err := scan(rows); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var tables, kinds []string
	var seq int
	if err := db.QueryRow(`SELECT count(*) FROM sqlite_schema WHERE name = 'sqlite_sequence'`).Scan(&seq); err != nil {
		t.Fatal(err)
	}
	add("sqlite_sequence %d", seq)
	each(`SELECT l.name, l.type, l.wr, l.strict, instr(upper(coalesce(s.sql, '')), 'AUTOINCREMENT') > 0
		FROM pragma_table_list l LEFT JOIN sqlite_schema s ON s.name = l.name
		WHERE l.schema = 'main' AND l.name NOT LIKE 'sqlite\_%' ESCAPE '\' ORDER BY l.name`,
		func(r *sql.Rows) error {
			var name, typ string
			var wr, strict, autoinc int
			if err := r.Scan(&name, &typ, &wr, &strict, &autoinc); err != nil {
				return err
			}
			tables = append(tables, name)
			kinds = append(kinds, fmt.Sprintf("%s %s without_rowid=%d strict=%d autoincrement=%d", typ, name, wr, strict, autoinc))
			return nil
		})
	for i, tb := range tables {
		add("%s", kinds[i])
		var cols []string
		each(fmt.Sprintf(`SELECT name, type, "notnull", coalesce(dflt_value, 'NULL'), pk, hidden FROM pragma_table_xinfo(%q)`, tb),
			func(r *sql.Rows) error {
				var name, typ, dflt string
				var notnull, pk, hidden int
				if err := r.Scan(&name, &typ, &notnull, &dflt, &pk, &hidden); err != nil {
					return err
				}
				cols = append(cols, fmt.Sprintf("  column %s.%s %s notnull=%d default=%s pk=%d hidden=%d", tb, name, typ, notnull, dflt, pk, hidden))
				return nil
			})
		slices.Sort(cols)
		l = append(l, cols...)
		each(fmt.Sprintf(`SELECT "table", "from", coalesce("to", ''), on_update, on_delete, "match" FROM pragma_foreign_key_list(%q) ORDER BY "from"`, tb),
			func(r *sql.Rows) error {
				var to, from, toCol, upd, del, match string
				if err := r.Scan(&to, &from, &toCol, &upd, &del, &match); err != nil {
					return err
				}
				add("  foreign key %s.%s -> %s(%s) on update %s on delete %s match %s", tb, from, to, toCol, upd, del, match)
				return nil
			})
		var idx []string
		each(fmt.Sprintf(`SELECT name, "unique", origin, partial FROM pragma_index_list(%q)`, tb),
			func(r *sql.Rows) error {
				var name, origin string
				var unique, partial int
				if err := r.Scan(&name, &unique, &origin, &partial); err != nil {
					return err
				}
				idx = append(idx, fmt.Sprintf("%s unique=%d origin=%s partial=%d", name, unique, origin, partial))
				return nil
			})
		slices.Sort(idx)
		for _, ix := range idx {
			name, _, _ := strings.Cut(ix, " ")
			var cols []string
			each(fmt.Sprintf(`SELECT coalesce(name, '<expr>'), "desc", coll FROM pragma_index_xinfo(%q) WHERE key = 1 ORDER BY seqno`, name),
				func(r *sql.Rows) error {
					var c, coll string
					var desc int
					if err := r.Scan(&c, &desc, &coll); err != nil {
						return err
					}
					cols = append(cols, fmt.Sprintf("%s desc=%d %s", c, desc, coll))
					return nil
				})
			add("  index %s.%s (%s)", tb, ix, strings.Join(cols, ", "))
			var q sql.NullString
			if err := db.QueryRow(`SELECT sql FROM sqlite_schema WHERE type = 'index' AND name = ?`, name).Scan(&q); err != nil && err != sql.ErrNoRows {
				t.Fatal(err)
			}
			if q := squeeze(q.String); strings.Contains(strings.Join(cols, ","), "<expr>") {
				add("    sql %s", q) // the expressions are only in its text
			} else if strings.Contains(strings.ToUpper(q), " WHERE ") {
				add("    where %s", q[strings.LastIndex(strings.ToUpper(q), " WHERE ")+len(" WHERE "):])
			}
		}
	}
	each(`SELECT type, name, sql FROM sqlite_schema WHERE type IN ('trigger', 'view') ORDER BY type, name`,
		func(r *sql.Rows) error {
			var typ, name, q string
			if err := r.Scan(&typ, &name, &q); err != nil {
				return err
			}
			add("%s %s: %s", typ, name, squeeze(q))
			return nil
		})
	return l
}

// squeeze collapses the white space of s.
func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }

// TestSchemaGoldenSeesFaultyMigration: a migration that is wrong for new
// and upgraded files alike (here the last one, which also builds the index
// of a message's changes on the wrong column: every statement still
// prepares, so Open's check passes) gives both the same schema, and only
// the golden schema tells it.
func TestSchemaGoldenSeesFaultyMigration(t *testing.T) {
	last := migrations[SchemaVersion-1]
	migrations[SchemaVersion-1] = last + "\nDROP INDEX changes_msg;\nCREATE INDEX changes_msg ON changes (state);\n"
	t.Cleanup(func() { migrations[SchemaVersion-1] = last })
	fresh := newFile(t)
	up := copyTestdata(t, "schema5.db") // upgraded through the last migration too
	s, err := Open(context.Background(), up)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	got := schemaOf(t, fresh)
	if up := schemaOf(t, up); !slices.Equal(got, up) {
		t.Fatalf("the faulty migration made different schemas:\n%q\n%q", got, up)
	}
	want, err := os.ReadFile(goldenPath())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "\n")+"\n" == string(want) {
		t.Error("the golden schema matches the faulty migration's")
	}
}
