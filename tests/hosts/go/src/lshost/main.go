// A Go host writing through the extension with database/sql and mattn/go-sqlite3:
//
//	lshost extension SO DB OTHER ROWS WRITERS   load SO through SQLiteDriver{Extensions}
//	lshost preload   -  DB OTHER ROWS WRITERS   plain driver; LD_PRELOAD supplies the extension
//
// With `extension`, a first in-memory connection loads the extension, which makes `litestream`
// the default VFS because the configuration names DB; the pool then opens DB by its plain
// path. WRITERS goroutines insert ROWS rows each. OTHER is a database the configuration does
// not name. Prints `key=value` lines for the test to check.
package main

import (
	"database/sql"
	"fmt"
	"os"
	"strconv"
	"sync"

	sqlite3 "github.com/mattn/go-sqlite3"
)

func must(err error, what string) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", what, err)
		os.Exit(1)
	}
}

func text(db *sql.DB, query string) string {
	var v sql.NullString
	must(db.QueryRow(query).Scan(&v), query)
	if !v.Valid {
		return "NULL"
	}
	return v.String
}

func main() {
	if len(os.Args) != 7 {
		fmt.Fprintln(os.Stderr, "usage: lshost extension|preload SO DB OTHER ROWS WRITERS")
		os.Exit(2)
	}
	mode, so, dbPath, otherPath := os.Args[1], os.Args[2], os.Args[3], os.Args[4]
	rows, err := strconv.Atoi(os.Args[5])
	must(err, "ROWS")
	writers, err := strconv.Atoi(os.Args[6])
	must(err, "WRITERS")

	driver := "sqlite3"
	if mode == "extension" {
		driver = "sqlite3_litestream"
		sql.Register(driver, &sqlite3.SQLiteDriver{Extensions: []string{so}})
		boot, err := sql.Open(driver, ":memory:")
		must(err, "open :memory:")
		must(boot.Ping(), "load the extension")
		defer boot.Close()
	} else if mode != "preload" {
		fmt.Fprintf(os.Stderr, "unknown mode %q\n", mode)
		os.Exit(2)
	}

	// The busy timeout lets the writer goroutines' connections wait for each other.
	db, err := sql.Open(driver, "file:"+dbPath+"?_busy_timeout=10000&_txlock=immediate")
	must(err, "open "+dbPath)
	db.SetMaxOpenConns(writers)
	_, err = db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, writer INTEGER, v TEXT, b BLOB)")
	must(err, "create table")
	fmt.Printf("sqlite_version=%s\n", text(db, "SELECT sqlite_version()"))

	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < rows; i++ {
				tx, err := db.Begin()
				must(err, "begin")
				_, err = tx.Exec("INSERT INTO t(writer, v, b) VALUES (?, ?, randomblob(200))", w, fmt.Sprintf("w%d row %d", w, i))
				must(err, "insert")
				must(tx.Commit(), "commit")
			}
		}(w)
	}
	wg.Wait()

	conn := db
	fmt.Printf("journal_mode=%s\n", text(conn, "PRAGMA journal_mode"))
	fmt.Printf("checkpoint=%s\n", text(conn, "PRAGMA litestream.checkpoint"))
	fmt.Printf("lag=%s\n", text(conn, "SELECT litestream_lag()"))
	_, err = conn.Exec("INSERT INTO t(writer, v) VALUES (-1, 'after the checkpoint')")
	must(err, "last insert")
	// Go exits without running C atexit handlers, so the extension's final sync at exit never
	// runs: ship what is committed before exiting (otherwise it ships at the next open).
	fmt.Printf("final_checkpoint=%s\n", text(conn, "PRAGMA litestream.checkpoint"))

	other, err := sql.Open(driver, otherPath)
	must(err, "open "+otherPath)
	other.SetMaxOpenConns(1)
	_, err = other.Exec("CREATE TABLE x(a); INSERT INTO x VALUES (1)")
	must(err, "write "+otherPath)
	fmt.Printf("other_journal_mode=%s\n", text(other, "PRAGMA journal_mode"))
	fmt.Printf("other_lag=%s\n", text(other, "SELECT litestream_lag()"))
	must(other.Close(), "close "+otherPath)
	must(db.Close(), "close "+dbPath)
}
