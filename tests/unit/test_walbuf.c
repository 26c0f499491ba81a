/* walbuf (fleet/walbuf.c): the WAL's appends gathered, and nothing visible, lost or
 * reordered for it. Beneath walbuf sits a counting VFS made the default before walbuf
 * registers: it counts the write calls that reach WAL files and can fail them. A second
 * connection through the plain "unix" VFS (its own file descriptors) reads what the
 * writer committed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <sqlite3.h>
#include <string.h>

#include "pullwatch/walbuf.h"
#include "tmpdir.h"

/* ------------------------------------------------------ the counting VFS ---- */

typedef struct CountFile {
        sqlite3_file base;
        sqlite3_file *real;
        int is_wal;
} CountFile;

static sqlite3_vfs count_vfs;
static sqlite3_io_methods count_methods;
static unsigned long wal_writes; /* write calls that reached a WAL file */
static int fail_wal_writes;      /* nonzero: WAL writes fail with SQLITE_FULL */

#define CREAL(f) (((CountFile *) (f))->real)
static int c_close(sqlite3_file *f) {
        return CREAL(f)->pMethods->xClose(CREAL(f));
}
static int c_read(sqlite3_file *f, void *p, int n, sqlite3_int64 o) {
        return CREAL(f)->pMethods->xRead(CREAL(f), p, n, o);
}
static int c_write(sqlite3_file *f, const void *p, int n, sqlite3_int64 o) {
        if (((CountFile *) f)->is_wal) {
                wal_writes++;
                if (fail_wal_writes)
                        return SQLITE_FULL;
        }
        return CREAL(f)->pMethods->xWrite(CREAL(f), p, n, o);
}
static int c_truncate(sqlite3_file *f, sqlite3_int64 s) {
        return CREAL(f)->pMethods->xTruncate(CREAL(f), s);
}
static int c_sync(sqlite3_file *f, int fl) {
        return CREAL(f)->pMethods->xSync(CREAL(f), fl);
}
static int c_size(sqlite3_file *f, sqlite3_int64 *s) {
        return CREAL(f)->pMethods->xFileSize(CREAL(f), s);
}
static int c_lock(sqlite3_file *f, int l) {
        return CREAL(f)->pMethods->xLock(CREAL(f), l);
}
static int c_unlock(sqlite3_file *f, int l) {
        return CREAL(f)->pMethods->xUnlock(CREAL(f), l);
}
static int c_reserved(sqlite3_file *f, int *o) {
        return CREAL(f)->pMethods->xCheckReservedLock(CREAL(f), o);
}
static int c_fcntl(sqlite3_file *f, int op, void *a) {
        return CREAL(f)->pMethods->xFileControl(CREAL(f), op, a);
}
static int c_sector(sqlite3_file *f) {
        return CREAL(f)->pMethods->xSectorSize(CREAL(f));
}
static int c_dev(sqlite3_file *f) {
        return CREAL(f)->pMethods->xDeviceCharacteristics(CREAL(f));
}
static int c_shm_map(sqlite3_file *f, int pg, int sz, int ext, void volatile **pp) {
        return CREAL(f)->pMethods->xShmMap(CREAL(f), pg, sz, ext, pp);
}
static int c_shm_lock(sqlite3_file *f, int o, int n, int fl) {
        return CREAL(f)->pMethods->xShmLock(CREAL(f), o, n, fl);
}
static void c_shm_barrier(sqlite3_file *f) {
        CREAL(f)->pMethods->xShmBarrier(CREAL(f));
}
static int c_shm_unmap(sqlite3_file *f, int d) {
        return CREAL(f)->pMethods->xShmUnmap(CREAL(f), d);
}

static int c_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out) {
        sqlite3_vfs *unix_vfs = vfs->pAppData;
        CountFile *f = (CountFile *) file;
        f->real = (sqlite3_file *) ((char *) f + 64);
        f->is_wal = (flags & SQLITE_OPEN_WAL) != 0;
        f->base.pMethods = NULL;
        int rc = unix_vfs->xOpen(unix_vfs, name, f->real, flags, out);
        if (rc == SQLITE_OK)
                f->base.pMethods = &count_methods;
        else if (f->real->pMethods)
                f->real->pMethods->xClose(f->real);
        return rc;
}

/* the counting VFS as the default, then walbuf over it */
static int group_setup(void **state) {
        sqlite3_vfs *u = sqlite3_vfs_find("unix");
        assert_non_null(u);
        _Static_assert(sizeof(CountFile) <= 64, "the real file starts at 64");
        count_methods = (sqlite3_io_methods){
                .iVersion = 2,          .xClose = c_close,      .xRead = c_read,
                .xWrite = c_write,      .xTruncate = c_truncate, .xSync = c_sync,
                .xFileSize = c_size,    .xLock = c_lock,        .xUnlock = c_unlock,
                .xCheckReservedLock = c_reserved, .xFileControl = c_fcntl, .xSectorSize = c_sector,
                .xDeviceCharacteristics = c_dev, .xShmMap = c_shm_map, .xShmLock = c_shm_lock,
                .xShmBarrier = c_shm_barrier, .xShmUnmap = c_shm_unmap};
        count_vfs = *u;
        count_vfs.iVersion = 2;
        count_vfs.zName = "count";
        count_vfs.szOsFile = 64 + u->szOsFile;
        count_vfs.pAppData = u;
        count_vfs.xOpen = c_open;
        count_vfs.pNext = NULL;
        assert_int_equal(sqlite3_vfs_register(&count_vfs, 1), SQLITE_OK);
        assert_int_equal(walbuf_register(), 0);
        assert_int_equal(walbuf_register(), 0); /* idempotent */
        return 0;
}

/* ----------------------------------------------------------------- helpers ---- */

static int frames_committed;
static int wal_hook(void *u, sqlite3 *db, const char *name, int frames) {
        frames_committed = frames;
        return SQLITE_OK;
}

static sqlite3 *open_db(const char *dir, const char *vfs, const char *sync) {
        char path[256], sql[64];
        snprintf(path, sizeof path, "%s/w.db", dir);
        sqlite3 *db = NULL;
        assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, "PRAGMA page_size=16384; PRAGMA journal_mode=WAL", NULL, NULL, NULL),
                         SQLITE_OK);
        snprintf(sql, sizeof sql, "PRAGMA synchronous=%s", sync);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_exec(db, "PRAGMA wal_autocheckpoint=0", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_wal_hook(db, wal_hook, NULL);
        return db;
}

static int64_t one_int(sqlite3 *db, const char *sql) {
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        int64_t v = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
        return v;
}

static void assert_ok(sqlite3 *db) {
        sqlite3_stmt *st = NULL;
        assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(st), SQLITE_ROW);
        assert_string_equal((const char *) sqlite3_column_text(st, 0), "ok");
        sqlite3_finalize(st);
}

/* rows a..b-1: (i, i as 20,000 digits); sum_check counts them, their lengths and values */
static void insert_rows(sqlite3 *db, int a, int b) {
        char sql[160];
        snprintf(sql, sizeof sql,
                 "WITH RECURSIVE n(i) AS (SELECT %d UNION ALL SELECT i + 1 FROM n WHERE i + 1 < %d) INSERT INTO t"
                 " SELECT i, printf('%%020000d', i) FROM n",
                 a, b);
        assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
}

static const char *const sum_check = "SELECT count(*) * 1000000 + sum(length(b)) + sum(CAST(b AS INTEGER)) FROM t";
static int64_t expect_sum(int n) { /* rows 0..n-1 */
        return (int64_t) n * 1000000 + (int64_t) n * 20000 + (int64_t) n * (n - 1) / 2;
}

/* ------------------------------------------------------------------- tests ---- */

/* A transaction's frames reach the WAL a few per write, not as two writes each; what it
 * wrote reads back, whole, from another connection. */
static void test_frames_gathered(void **state) {
        sqlite3 *w = open_db(*state, WALBUF_VFS_NAME, "FULL");
        assert_int_equal(sqlite3_exec(w, "CREATE TABLE t (i INTEGER PRIMARY KEY, b BLOB)", NULL, NULL, NULL),
                         SQLITE_OK);
        wal_writes = 0;
        assert_int_equal(sqlite3_exec(w, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
        insert_rows(w, 0, 300);
        assert_int_equal(sqlite3_exec(w, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        /* ~1.3 pages a row: ~380 frames; unbuffered, SQLite writes each as 2 calls */
        print_message("%d frames, %lu WAL writes\n", frames_committed, wal_writes);
        assert_true(frames_committed >= 300);
        assert_true(wal_writes <= (unsigned long) frames_committed / 5);

        sqlite3 *r = open_db(*state, "unix", "FULL");
        assert_int_equal(one_int(r, sum_check), expect_sum(300));
        assert_ok(r);
        sqlite3_close(r);
        assert_int_equal(sqlite3_close(w), SQLITE_OK);
}

/* Without a sync at commit (synchronous=OFF) the frames are still in the file before
 * another connection can see the commit: the wal-index barrier and locks write them out
 * (this fails when neither does; either alone passes it). */
static void test_visible_without_sync(void **state) {
        sqlite3 *w = open_db(*state, WALBUF_VFS_NAME, "OFF");
        sqlite3 *r = open_db(*state, "unix", "OFF");
        assert_int_equal(sqlite3_exec(w, "CREATE TABLE t (i INTEGER PRIMARY KEY, b BLOB)", NULL, NULL, NULL),
                         SQLITE_OK);
        for (int k = 0; k < 4; k++) {
                insert_rows(w, k * 10, k * 10 + 10); /* 20 frames: some stay in the buffer */
                assert_int_equal(one_int(r, sum_check), expect_sum(k * 10 + 10));
        }
        assert_ok(r);
        sqlite3_close(r);
        assert_int_equal(sqlite3_close(w), SQLITE_OK);
}

/* Pages spilled to the WAL mid-transaction (a cache of 4 pages) and read back in it:
 * some are still in the buffer when read. */
static void test_read_back_in_transaction(void **state) {
        sqlite3 *w = open_db(*state, WALBUF_VFS_NAME, "FULL");
        assert_int_equal(sqlite3_exec(w, "PRAGMA cache_size=4; CREATE TABLE t (i INTEGER PRIMARY KEY, b BLOB)",
                                      NULL, NULL, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_exec(w, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
        for (int k = 0; k < 10; k++) {
                insert_rows(w, k * 20, k * 20 + 20);
                assert_int_equal(one_int(w, sum_check), expect_sum(k * 20 + 20));
        }
        assert_int_equal(sqlite3_exec(w, "UPDATE t SET b = b || 'x' WHERE i % 7 = 0", NULL, NULL, NULL),
                         SQLITE_OK);
        assert_int_equal(sqlite3_exec(w, "COMMIT", NULL, NULL, NULL), SQLITE_OK);
        sqlite3 *r = open_db(*state, "unix", "FULL");
        assert_int_equal(one_int(r, "SELECT count(*) FROM t WHERE b LIKE '%x'"), 29);
        assert_ok(r);
        sqlite3_close(r);
        assert_int_equal(sqlite3_close(w), SQLITE_OK);
}

/* A write that fails when the buffer goes out fails the transaction (SQLITE_FULL, as a
 * direct write would); what was committed before stays, and the next one works. */
static void test_write_failure_fails_commit(void **state) {
        sqlite3 *w = open_db(*state, WALBUF_VFS_NAME, "FULL");
        assert_int_equal(sqlite3_exec(w, "CREATE TABLE t (i INTEGER PRIMARY KEY, b BLOB)", NULL, NULL, NULL),
                         SQLITE_OK);
        insert_rows(w, 0, 5);
        assert_int_equal(sqlite3_exec(w, "BEGIN", NULL, NULL, NULL), SQLITE_OK);
        fail_wal_writes = 1;
        int rc = sqlite3_exec(w, "INSERT INTO t VALUES (5, printf('%020000d', 5))", NULL, NULL, NULL);
        if (rc == SQLITE_OK)
                rc = sqlite3_exec(w, "COMMIT", NULL, NULL, NULL);
        fail_wal_writes = 0;
        assert_int_equal(rc & 0xff, SQLITE_FULL);
        if (!sqlite3_get_autocommit(w))
                assert_int_equal(sqlite3_exec(w, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);

        sqlite3 *r = open_db(*state, "unix", "FULL");
        assert_int_equal(one_int(r, sum_check), expect_sum(5));
        insert_rows(w, 5, 12);
        assert_int_equal(one_int(r, sum_check), expect_sum(12));
        assert_ok(r);
        sqlite3_close(r);
        assert_int_equal(sqlite3_close(w), SQLITE_OK);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_frames_gathered, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_visible_without_sync, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_read_back_in_transaction, setup_dir, teardown_dir),
                cmocka_unit_test_setup_teardown(test_write_failure_fails_commit, setup_dir, teardown_dir),
        };
        return cmocka_run_group_tests(tests, group_setup, NULL);
}
