/* walbuf: an SQLite VFS over the default one that gathers a WAL file's appends into
 * WALBUF_BYTES-sized writes (fleet/walbuf.c).
 *
 * SQLite writes a WAL frame as two pwrite()s, its 24-byte header and then its page: the
 * records path (tests/bench/records_ab_bench.sh, 200,000 records on 16 KiB pages) wrote
 * ~250,000 of them, each a system call paid in full on this kind of virtual machine. The
 * frames of a transaction are consecutive, so walbuf keeps them in a buffer and writes
 * it out as one pwrite() when the next write is not the next byte, when the buffer is
 * full, and before anything that reads or depends on what is in the file: a read that
 * overlaps it, xSync (a commit, with synchronous=FULL, syncs the WAL before it becomes
 * visible), xFileSize, xTruncate, xClose, a file control, and — through the main
 * database file — the wal-index's barrier and locks (so that the frames are in the file
 * before any other connection can be told they exist, whatever the sync setting). A
 * write that fails there is remembered and returned by the file's next write, read,
 * sync, truncate or size call: the transaction that made it fails, as with a direct
 * write. Every other file (the main database, journals) is passed straight through. */
#pragma once

#include <stddef.h>

#define WALBUF_VFS_NAME "pullwatch-walbuf"
/* One buffer per open WAL file: 7 frames of 16 KiB. No more: the unix VFS writes at most
 * 128 KiB - 1 bytes a call (seekAndWriteFd() masks the count with 0x1ffff). */
#define WALBUF_BYTES 0x1ffffU

/* Register the VFS (not as the default) over SQLite's default VFS; idempotent and
 * thread-safe. 0, or -ENOSYS when SQLite has no default VFS, -ENOMEM. Open with
 * sqlite3_open_v2(…, WALBUF_VFS_NAME). */
int walbuf_register(void);

