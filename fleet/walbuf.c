/* walbuf: a WAL file's appends gathered into WALBUF_BYTES writes (see walbuf.h). */
#include "pullwatch/walbuf.h"

#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

typedef struct WbFile WbFile;
struct WbFile {
        sqlite3_file base;  /* pMethods: wb_db_methods or wb_wal_methods; NULL if not open */
        sqlite3_file *real; /* the default VFS's file, right after this struct */
        WbFile *wal;        /* main database: its WAL file while that is open, or NULL */
        WbFile *db;         /* WAL file: its main database's file, or NULL */
        char *buf;          /* WAL file: WALBUF_BYTES (owned), appends not written yet; NULL:
                             * every write goes straight through */
        size_t len;
        sqlite3_int64 off; /* the file offset of buf[0] */
        int error;         /* a failed write-out nobody was told of yet (SQLITE_OK: none) */
};

#define WB_HEAD ((sizeof(WbFile) + 15) / 16 * 16)

/* The VFS, filled in once by walbuf_register (SQLite keeps a pointer to it). */
static sqlite3_vfs wb_vfs;
static int wb_register_result;

static sqlite3_vfs *parent(sqlite3_vfs *vfs) {
        return vfs->pAppData;
}

/* ------------------------------------------------------------- write-behind ---- */

/* Write out what is buffered. A failure stays in f->error until someone returns it. */
static int wb_flush(WbFile *f) {
        if (!f->len)
                return SQLITE_OK;
        int rc = f->real->pMethods->xWrite(f->real, f->buf, (int) f->len, f->off);
        f->len = 0;
        if (rc != SQLITE_OK && f->error == SQLITE_OK)
                f->error = rc;
        return rc;
}

/* Write out what is buffered; the first failure not returned yet, if any (then cleared). */
static int wb_settle(WbFile *f) {
        (void) wb_flush(f);
        int rc = f->error;
        f->error = SQLITE_OK;
        return rc;
}

/* The main database's side: its WAL's frames out before any step another connection
 * could learn of them by (the wal-index's barrier and locks, the file's locks). */
static void wb_db_flush_wal(sqlite3_file *file) {
        WbFile *f = (WbFile *) file;
        if (f->wal)
                (void) wb_flush(f->wal);
}

/* ------------------------------------------------------------- WAL methods ---- */

static int wal_close(sqlite3_file *file) {
        WbFile *f = (WbFile *) file;
        int rc = wb_settle(f);
        int k = f->real->pMethods->xClose(f->real);
        if (f->db && f->db->wal == f)
                f->db->wal = NULL;
        free(f->buf);
        f->buf = NULL;
        return rc != SQLITE_OK ? rc : k;
}

static int wal_read(sqlite3_file *file, void *p, int amt, sqlite3_int64 off) {
        WbFile *f = (WbFile *) file;
        if (f->error != SQLITE_OK || (f->len && off < f->off + (sqlite3_int64) f->len && off + amt > f->off)) {
                int rc = wb_settle(f);
                if (rc != SQLITE_OK)
                        return rc;
        }
        return f->real->pMethods->xRead(f->real, p, amt, off);
}

static int wal_write(sqlite3_file *file, const void *p, int amt, sqlite3_int64 off) {
        WbFile *f = (WbFile *) file;
        if (!f->buf)
                return f->real->pMethods->xWrite(f->real, p, amt, off);
        if (f->error != SQLITE_OK)
                return wb_settle(f);
        if (f->len && off == f->off + (sqlite3_int64) f->len && f->len + (size_t) amt <= WALBUF_BYTES) {
                memcpy(f->buf + f->len, p, (size_t) amt);
                f->len += (size_t) amt;
                return SQLITE_OK;
        }
        /* not the next byte (the log restarted, a frame rewritten in place) or no room:
         * what is buffered goes first, so that writes reach the file in their order */
        int rc = wb_settle(f);
        if (rc != SQLITE_OK)
                return rc;
        if ((size_t) amt >= WALBUF_BYTES)
                return f->real->pMethods->xWrite(f->real, p, amt, off);
        memcpy(f->buf, p, (size_t) amt);
        f->off = off;
        f->len = (size_t) amt;
        return SQLITE_OK;
}

static int wal_truncate(sqlite3_file *file, sqlite3_int64 size) {
        WbFile *f = (WbFile *) file;
        int rc = wb_settle(f);
        return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int wal_sync(sqlite3_file *file, int flags) {
        WbFile *f = (WbFile *) file;
        int rc = wb_settle(f);
        return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int wal_file_size(sqlite3_file *file, sqlite3_int64 *size) {
        WbFile *f = (WbFile *) file;
        int rc = wb_settle(f);
        return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int wal_file_control(sqlite3_file *file, int op, void *arg) {
        WbFile *f = (WbFile *) file;
        (void) wb_flush(f); /* a failure is the next write's or sync's to return */
        return f->real->pMethods->xFileControl(f->real, op, arg);
}

/* ------------------------------------------------ methods passed through ---- */

#define REAL(file) (((WbFile *) (file))->real)

static int db_close(sqlite3_file *file) {
        WbFile *f = (WbFile *) file;
        if (f->wal) { /* SQLite closes the WAL first; should it not, the WAL forgets us */
                (void) wb_flush(f->wal);
                f->wal->db = NULL;
                f->wal = NULL;
        }
        return f->real->pMethods->xClose(f->real);
}
static int db_read(sqlite3_file *file, void *p, int amt, sqlite3_int64 off) {
        return REAL(file)->pMethods->xRead(REAL(file), p, amt, off);
}
static int db_write(sqlite3_file *file, const void *p, int amt, sqlite3_int64 off) {
        return REAL(file)->pMethods->xWrite(REAL(file), p, amt, off);
}
static int db_truncate(sqlite3_file *file, sqlite3_int64 size) {
        return REAL(file)->pMethods->xTruncate(REAL(file), size);
}
static int db_sync(sqlite3_file *file, int flags) {
        wb_db_flush_wal(file);
        return REAL(file)->pMethods->xSync(REAL(file), flags);
}
static int db_file_size(sqlite3_file *file, sqlite3_int64 *size) {
        return REAL(file)->pMethods->xFileSize(REAL(file), size);
}
static int any_lock(sqlite3_file *file, int lock) {
        wb_db_flush_wal(file);
        return REAL(file)->pMethods->xLock(REAL(file), lock);
}
static int any_unlock(sqlite3_file *file, int lock) {
        wb_db_flush_wal(file);
        return REAL(file)->pMethods->xUnlock(REAL(file), lock);
}
static int any_check_reserved_lock(sqlite3_file *file, int *out) {
        return REAL(file)->pMethods->xCheckReservedLock(REAL(file), out);
}
static int db_file_control(sqlite3_file *file, int op, void *arg) {
        return REAL(file)->pMethods->xFileControl(REAL(file), op, arg);
}
static int any_sector_size(sqlite3_file *file) {
        return REAL(file)->pMethods->xSectorSize(REAL(file));
}
static int any_device_characteristics(sqlite3_file *file) {
        return REAL(file)->pMethods->xDeviceCharacteristics(REAL(file));
}
static int any_shm_map(sqlite3_file *file, int pg, int pgsz, int extend, void volatile **pp) {
        const sqlite3_io_methods *m = REAL(file)->pMethods;
        if (m->iVersion < 2) {
                *pp = NULL;
                return SQLITE_IOERR_SHMMAP;
        }
        return m->xShmMap(REAL(file), pg, pgsz, extend, pp);
}
static int any_shm_lock(sqlite3_file *file, int offset, int n, int flags) {
        wb_db_flush_wal(file);
        const sqlite3_io_methods *m = REAL(file)->pMethods;
        return m->iVersion < 2 ? SQLITE_IOERR_SHMLOCK : m->xShmLock(REAL(file), offset, n, flags);
}
static void any_shm_barrier(sqlite3_file *file) {
        /* between the wal-index header's two copies of a commit: its frames first */
        wb_db_flush_wal(file);
        const sqlite3_io_methods *m = REAL(file)->pMethods;
        if (m->iVersion >= 2)
                m->xShmBarrier(REAL(file));
}
static int any_shm_unmap(sqlite3_file *file, int delete_flag) {
        wb_db_flush_wal(file);
        const sqlite3_io_methods *m = REAL(file)->pMethods;
        return m->iVersion < 2 ? SQLITE_OK : m->xShmUnmap(REAL(file), delete_flag);
}
static int any_fetch(sqlite3_file *file, sqlite3_int64 off, int amt, void **pp) {
        const sqlite3_io_methods *m = REAL(file)->pMethods;
        if (m->iVersion < 3) {
                *pp = NULL;
                return SQLITE_OK;
        }
        return m->xFetch(REAL(file), off, amt, pp);
}
static int any_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p) {
        const sqlite3_io_methods *m = REAL(file)->pMethods;
        return m->iVersion < 3 ? SQLITE_OK : m->xUnfetch(REAL(file), off, p);
}

static const sqlite3_io_methods wb_db_methods = {
        .iVersion = 3,
        .xClose = db_close,
        .xRead = db_read,
        .xWrite = db_write,
        .xTruncate = db_truncate,
        .xSync = db_sync,
        .xFileSize = db_file_size,
        .xLock = any_lock,
        .xUnlock = any_unlock,
        .xCheckReservedLock = any_check_reserved_lock,
        .xFileControl = db_file_control,
        .xSectorSize = any_sector_size,
        .xDeviceCharacteristics = any_device_characteristics,
        .xShmMap = any_shm_map,
        .xShmLock = any_shm_lock,
        .xShmBarrier = any_shm_barrier,
        .xShmUnmap = any_shm_unmap,
        .xFetch = any_fetch,
        .xUnfetch = any_unfetch,
};

static const sqlite3_io_methods wb_wal_methods = {
        .iVersion = 3,
        .xClose = wal_close,
        .xRead = wal_read,
        .xWrite = wal_write,
        .xTruncate = wal_truncate,
        .xSync = wal_sync,
        .xFileSize = wal_file_size,
        .xLock = any_lock,
        .xUnlock = any_unlock,
        .xCheckReservedLock = any_check_reserved_lock,
        .xFileControl = wal_file_control,
        .xSectorSize = any_sector_size,
        .xDeviceCharacteristics = any_device_characteristics,
        .xShmMap = any_shm_map,
        .xShmLock = any_shm_lock,
        .xShmBarrier = any_shm_barrier,
        .xShmUnmap = any_shm_unmap,
        .xFetch = any_fetch,
        .xUnfetch = any_unfetch,
};

/* ------------------------------------------------------------------- VFS ---- */

static int wb_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags) {
        WbFile *f = (WbFile *) file;
        memset(f, 0, sizeof *f);
        f->real = (sqlite3_file *) ((char *) f + WB_HEAD);
        int rc = parent(vfs)->xOpen(parent(vfs), name, f->real, flags, out_flags);
        if (rc != SQLITE_OK) {
                if (f->real->pMethods)
                        f->real->pMethods->xClose(f->real);
                f->base.pMethods = NULL;
                return rc;
        }
        if ((flags & SQLITE_OPEN_WAL) && name) {
                WbFile *db = (WbFile *) sqlite3_database_file_object(name);
                f->buf = malloc(WALBUF_BYTES); /* none: written straight through */
                if (f->buf && db && db->base.pMethods == &wb_db_methods) {
                        f->db = db;
                        db->wal = f;
                }
                f->base.pMethods = &wb_wal_methods;
        } else
                f->base.pMethods = &wb_db_methods;
        return SQLITE_OK;
}

static int wb_delete(sqlite3_vfs *vfs, const char *name, int sync_dir) {
        return parent(vfs)->xDelete(parent(vfs), name, sync_dir);
}
static int wb_access(sqlite3_vfs *vfs, const char *name, int flags, int *out) {
        return parent(vfs)->xAccess(parent(vfs), name, flags, out);
}
static int wb_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out) {
        return parent(vfs)->xFullPathname(parent(vfs), name, n, out);
}
static void *wb_dlopen(sqlite3_vfs *vfs, const char *name) {
        return parent(vfs)->xDlOpen(parent(vfs), name);
}
static void wb_dlerror(sqlite3_vfs *vfs, int n, char *msg) {
        parent(vfs)->xDlError(parent(vfs), n, msg);
}
static void (*wb_dlsym(sqlite3_vfs *vfs, void *h, const char *sym))(void) {
        return parent(vfs)->xDlSym(parent(vfs), h, sym);
}
static void wb_dlclose(sqlite3_vfs *vfs, void *h) {
        parent(vfs)->xDlClose(parent(vfs), h);
}
static int wb_randomness(sqlite3_vfs *vfs, int n, char *out) {
        return parent(vfs)->xRandomness(parent(vfs), n, out);
}
static int wb_sleep(sqlite3_vfs *vfs, int usec) {
        return parent(vfs)->xSleep(parent(vfs), usec);
}
static int wb_current_time(sqlite3_vfs *vfs, double *out) {
        return parent(vfs)->xCurrentTime(parent(vfs), out);
}
static int wb_get_last_error(sqlite3_vfs *vfs, int n, char *out) {
        return parent(vfs)->xGetLastError ? parent(vfs)->xGetLastError(parent(vfs), n, out) : 0;
}
static int wb_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out) {
        return parent(vfs)->xCurrentTimeInt64(parent(vfs), out);
}

static void wb_register_once(void) {
        sqlite3_vfs *p = sqlite3_vfs_find(NULL);
        if (!p) {
                wb_register_result = -ENOSYS;
                return;
        }
        wb_vfs = (sqlite3_vfs){
                .iVersion = p->iVersion >= 2 ? 2 : 1, /* xCurrentTimeInt64; not the system-call hooks */
                .szOsFile = (int) WB_HEAD + p->szOsFile,
                .mxPathname = p->mxPathname,
                .zName = WALBUF_VFS_NAME,
                .pAppData = p,
                .xOpen = wb_open,
                .xDelete = wb_delete,
                .xAccess = wb_access,
                .xFullPathname = wb_full_pathname,
                .xDlOpen = wb_dlopen,
                .xDlError = wb_dlerror,
                .xDlSym = wb_dlsym,
                .xDlClose = wb_dlclose,
                .xRandomness = wb_randomness,
                .xSleep = wb_sleep,
                .xCurrentTime = wb_current_time,
                .xGetLastError = wb_get_last_error,
                .xCurrentTimeInt64 = p->iVersion >= 2 ? wb_current_time_int64 : NULL,
        };
        int rc = sqlite3_vfs_register(&wb_vfs, 0);
        wb_register_result = rc == SQLITE_OK ? 0 : rc == SQLITE_NOMEM ? -ENOMEM : -EIO;
}

int walbuf_register(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        (void) pthread_once(&once, wb_register_once);
        return wb_register_result;
}
