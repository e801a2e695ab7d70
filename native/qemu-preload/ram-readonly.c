/*
 * forkd-qemu-preload: loaded into every confined QEMU with LD_PRELOAD.
 *
 * A child maps its snapshot's RAM file MAP_PRIVATE (copy-on-write per page),
 * but QEMU 7.2's memory-backend-file always opens mem-path O_RDWR unless
 * readonly=on, which also makes guest RAM read-only (rom=off, which fixes
 * that, arrived in QEMU 8.2). A confined QEMU runs as a uid that may only
 * read the snapshot, so that open would fail; and it must not succeed,
 * because a QEMU that can write the RAM file can poison every later child.
 *
 * So the one path named by FORKD_RAM_READONLY is opened O_RDONLY instead.
 * mmap(PROT_READ|PROT_WRITE, MAP_PRIVATE) of a read-only descriptor is
 * allowed by the kernel, so the guest keeps writable private RAM while the
 * file stays untouchable. Nothing else is changed.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

static int readonly_flags(const char *path, int flags) {
  const char *ram = getenv("FORKD_RAM_READONLY");
  if (ram && path && strcmp(path, ram) == 0 && (flags & O_ACCMODE) == O_RDWR)
    return (flags & ~O_ACCMODE) | O_RDONLY;
  return flags;
}

static mode_t mode_arg(int flags, va_list ap) {
  return (flags & (O_CREAT | O_TMPFILE)) ? va_arg(ap, mode_t) : 0;
}

int open64(const char *path, int flags, ...) {
  static int (*real)(const char *, int, ...);
  if (!real) real = (int (*)(const char *, int, ...))dlsym(RTLD_NEXT, "open64");
  va_list ap;
  va_start(ap, flags);
  mode_t mode = mode_arg(flags, ap);
  va_end(ap);
  return real(path, readonly_flags(path, flags), mode);
}

int open(const char *path, int flags, ...) __attribute__((alias("open64")));

/* The fortified entry point: QEMU's file_ram_open() compiles to this one. */
int __open64_2(const char *path, int flags) {
  static int (*real)(const char *, int);
  if (!real) real = (int (*)(const char *, int))dlsym(RTLD_NEXT, "__open64_2");
  return real(path, readonly_flags(path, flags));
}
