/*
** testfixture-hook.c: makes the `litestream` VFS the default VFS inside SQLite's own TCL test
** harness (`testfixture`), for `make sqlite-tests` (see docs/sqlite-testsuite.md).
**
** Linked into testfixture and called through `-DSQLITE_EXTRA_INIT=litestream_test_extra_init`,
** i.e. at the end of every successful sqlite3_initialize(). Tests often run
** `sqlite3_shutdown; ...; sqlite3_initialize`, and each re-initialisation registers `unix` as
** the default again, so the hook re-asserts our VFS every time.
**
** Environment:
**   LITESTREAM_TEST_EXT     path of liblitestream.so. Unset or empty: the hook does nothing and
**                           the binary behaves exactly like the stock testfixture.
**   LITESTREAM_TEST_ENTRY   entry point (default sqlite3_litestream_init).
**   LITESTREAM_TEST_VFS     name of the VFS the extension registers (default litestream).
**   LITESTREAM_TEST_STRICT  "1": abort() when the extension cannot be loaded, instead of
**                           running the test silently on plain `unix`.
**
** The extension is loaded once per process through the ordinary extension loader (so the
** artefact under test is the shipping cdylib). Later calls only re-register the VFS found by
** name: that path allocates no memory, so it cannot fail under SQLite's out-of-memory fault
** injection (tests such as pagerfault-31 re-initialise SQLite inside a malloc-fault loop).
*/
#include <stdio.h>
#include <stdlib.h>

#include "sqlite3.h"

static const char *env_or(const char *name, const char *dflt) {
  const char *v = getenv(name);
  return (v && v[0]) ? v : dflt;
}

static int load_failed(const char *what, const char *detail) {
  const char *strict = getenv("LITESTREAM_TEST_STRICT");
  fprintf(stderr, "litestream_test_extra_init: %s: %s\n", what, detail ? detail : "");
  if (strict && strict[0] == '1') abort();
  return SQLITE_OK;
}

int litestream_test_extra_init(const char *unused) {
  static int loaded = 0;
  const char *ext = getenv("LITESTREAM_TEST_EXT");
  const char *vfs_name = env_or("LITESTREAM_TEST_VFS", "litestream");
  sqlite3_vfs *vfs;
  sqlite3 *db = 0;
  char *err = 0;
  int rc;
  (void)unused;

  if (!ext || !ext[0]) return SQLITE_OK;

  /* Fast path (every re-initialisation): no allocation. */
  vfs = sqlite3_vfs_find(vfs_name);
  if (vfs) return sqlite3_vfs_register(vfs, 1);
  if (loaded) return load_failed("VFS vanished after loading", vfs_name);

  rc = sqlite3_open(":memory:", &db);
  if (rc != SQLITE_OK) {
    sqlite3_close(db);
    return load_failed("cannot open a :memory: database to load the extension",
                       sqlite3_errstr(rc));
  }
  sqlite3_enable_load_extension(db, 1);
  rc = sqlite3_load_extension(
      db, ext, env_or("LITESTREAM_TEST_ENTRY", "sqlite3_litestream_init"), &err);
  if (rc != SQLITE_OK) {
    fprintf(stderr, "litestream_test_extra_init: loading %s failed\n", ext);
    rc = load_failed("load_extension", err ? err : sqlite3_errstr(rc));
    sqlite3_free(err);
    sqlite3_close(db);
    return rc;
  }
  sqlite3_close(db);
  loaded = 1;

  vfs = sqlite3_vfs_find(vfs_name);
  if (!vfs) return load_failed("the extension registered no VFS named", vfs_name);
  return sqlite3_vfs_register(vfs, 1);
}
