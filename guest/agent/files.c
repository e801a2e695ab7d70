/* FILE_READ, FILE_WRITE, FILE_LIST, FILE_STAT, FILE_REMOVE, MKDIR. Contents
 * travel as raw frame bodies, so files are byte-exact; one frame carries at
 * most MAX_BODY bytes, and the host reads bigger files in OFFSET/LENGTH
 * slices and writes them as a write followed by APPENDs. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agent.h"

static char *need_path(struct req *r)
{
	char *p = req_str(r, F_PATH);
	if (!p || !*p) {
		send_error(r, EINVAL, "PATH is required");
		free(p);
		return NULL;
	}
	return p;
}

/* Octal string like "644"; -1 absent, -2 malformed. */
static long req_mode(struct req *r)
{
	char *s = req_str(r, F_MODE);
	if (!s)
		return -1;
	char *end;
	long m = strtol(s, &end, 8);
	int bad = !*s || *end || m < 0 || m > 07777;
	free(s);
	return bad ? -2 : m;
}

static int mkdir_p(const char *path, mode_t mode)
{
	char *buf = strdup(path);
	if (!buf)
		return ENOMEM;
	int err = 0;
	for (char *p = buf + 1;; p++) {
		if (*p != '/' && *p)
			continue;
		char c = *p;
		*p = 0;
		if (mkdir(buf, mode) && errno != EEXIST) {
			err = errno;
			break;
		}
		*p = c;
		if (!c)
			break;
	}
	struct stat st;
	if (!err && stat(path, &st))
		err = errno;
	else if (!err && !S_ISDIR(st.st_mode))
		err = ENOTDIR;
	free(buf);
	return err;
}

static const char *type_name(mode_t m)
{
	if (S_ISREG(m))
		return "file";
	if (S_ISDIR(m))
		return "dir";
	if (S_ISLNK(m))
		return "symlink";
	return "other";
}

static void stat_json(struct jbuf *b, const char *name, const struct stat *st)
{
	jb_puts(b, "{\"name\":");
	jb_str(b, name);
	jb_fmt(b, ",\"type\":\"%s\",\"size\":%lld,\"mode\":%u,\"mtime_ms\":%lld}", type_name(st->st_mode),
	       (long long)st->st_size, (unsigned)(st->st_mode & 07777),
	       (long long)st->st_mtim.tv_sec * 1000 + st->st_mtim.tv_nsec / 1000000);
}

void handle_file_read(struct req *r)
{
	char *path = need_path(r);
	if (!path)
		return;
	uint64_t off = 0, want = MAX_BODY;
	int sliced = req_u64(r, F_OFFSET, &off) > 0;
	if (req_u64(r, F_LENGTH, &want) > 0)
		sliced = 1;
	if (want > MAX_BODY)
		want = MAX_BODY;
	uint8_t *buf = NULL;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st)) {
		send_errno(r, errno, "open", path);
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		send_errno(r, EISDIR, "read", path);
		goto out;
	}
	if (!sliced && S_ISREG(st.st_mode) && (uint64_t)st.st_size > want) {
		send_error(r, EFBIG, "read %s: %lld bytes is more than one frame; read it in slices", path,
			   (long long)st.st_size);
		goto out;
	}
	/* Regular files are sized up front (+1 to see EOF without growing);
	 * /proc and devices report 0 and are read until EOF. */
	size_t limit = (size_t)want, len = 0;
	size_t cap = S_ISREG(st.st_mode) && st.st_size > 0 ? (size_t)st.st_size + 1 : 65536;
	if (cap > limit)
		cap = limit;
	buf = malloc(cap ? cap : 1);
	while (buf && len < limit) {
		if (len == cap) {
			size_t ncap = cap * 2 > limit ? limit : cap * 2;
			uint8_t *nb = realloc(buf, ncap);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
			cap = ncap;
		}
		ssize_t k = sliced ? pread(fd, buf + len, cap - len, (off_t)(off + len))
				   : read(fd, buf + len, cap - len);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			send_errno(r, errno, "read", path);
			goto out;
		}
		if (k == 0)
			break;
		len += (size_t)k;
	}
	if (!buf) {
		send_error(r, ENOMEM, "out of memory reading %s", path);
		goto out;
	}
	struct jbuf b = {0};
	jb_fmt(&b, "{\"size\":%lld,\"offset\":%llu,\"length\":%zu}",
	       sliced ? (long long)st.st_size : (long long)len, (unsigned long long)off, len);
	send_ok(r, &b, buf, len);
	jb_free(&b);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(path);
}

void handle_file_write(struct req *r)
{
	char *path = need_path(r);
	if (!path)
		return;
	const struct field *d = req_field(r, F_DATA);
	long mode = req_mode(r);
	int fd = -1;
	if (mode == -2) {
		send_error(r, EINVAL, "MODE must be octal, e.g. 644");
		goto out;
	}
	if (req_flag(r, F_PARENTS)) {
		char *dup = strdup(path);
		int err = dup ? mkdir_p(dirname(dup), 0755) : ENOMEM;
		free(dup);
		if (err) {
			send_errno(r, err, "mkdir", path);
			goto out;
		}
	}
	int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (req_flag(r, F_APPEND) ? O_APPEND : O_TRUNC);
	fd = open(path, flags, mode >= 0 ? (mode_t)mode : 0644);
	if (fd < 0) {
		send_errno(r, errno, "open", path);
		goto out;
	}
	/* O_CREAT's mode is filtered by umask and ignored for existing files;
	 * an explicit MODE means exactly that mode. */
	if (mode >= 0 && fchmod(fd, (mode_t)mode)) {
		send_errno(r, errno, "chmod", path);
		goto out;
	}
	size_t len = d ? d->len : 0, done = 0;
	while (done < len) {
		ssize_t k = write(fd, d->val + done, len - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			send_errno(r, errno, "write", path);
			goto out;
		}
		done += (size_t)k;
	}
	if (close(fd)) {
		fd = -1;
		send_errno(r, errno, "close", path);
		goto out;
	}
	fd = -1;
	struct jbuf b = {0};
	jb_fmt(&b, "{\"size\":%zu}", len);
	send_ok(r, &b, NULL, 0);
	jb_free(&b);
out:
	if (fd >= 0)
		close(fd);
	free(path);
}

struct entry {
	char *name;
	struct stat st;
};

static int entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct entry *)a)->name, ((const struct entry *)b)->name);
}

void handle_file_list(struct req *r)
{
	char *path = need_path(r);
	if (!path)
		return;
	DIR *d = opendir(path);
	if (!d) {
		send_errno(r, errno, "opendir", path);
		free(path);
		return;
	}
	struct entry *v = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		struct stat st;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW))
			continue; /* vanished while listing */
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			struct entry *nv = realloc(v, cap * sizeof *v);
			if (!nv)
				break;
			v = nv;
		}
		v[n].name = strdup(de->d_name);
		v[n].st = st;
		if (v[n].name)
			n++;
	}
	closedir(d);
	qsort(v, n, sizeof *v, entry_cmp);
	struct jbuf b = {0};
	jb_puts(&b, "{\"entries\":[");
	for (size_t i = 0; i < n; i++) {
		if (i)
			jb_puts(&b, ",");
		stat_json(&b, v[i].name, &v[i].st);
		free(v[i].name);
	}
	jb_puts(&b, "]}");
	send_ok(r, &b, NULL, 0);
	jb_free(&b);
	free(v);
	free(path);
}

void handle_file_stat(struct req *r)
{
	char *path = need_path(r);
	if (!path)
		return;
	struct stat st;
	if (lstat(path, &st)) {
		send_errno(r, errno, "stat", path);
	} else {
		char *dup = strdup(path);
		struct jbuf b = {0};
		stat_json(&b, dup ? basename(dup) : path, &st);
		send_ok(r, &b, NULL, 0);
		jb_free(&b);
		free(dup);
	}
	free(path);
}

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	int rc = flag == FTW_DP ? rmdir(p) : unlink(p);
	return rc && errno != ENOENT ? errno : 0;
}

void handle_file_remove(struct req *r)
{
	char *path = need_path(r);
	if (!path)
		return;
	struct stat st;
	int err = 0;
	if (lstat(path, &st))
		err = errno;
	else if (!S_ISDIR(st.st_mode))
		err = unlink(path) ? errno : 0;
	else if (req_flag(r, F_RECURSIVE))
		err = nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
	else
		err = rmdir(path) ? errno : 0;
	if (err < 0)
		err = errno;
	if (err)
		send_errno(r, err, "remove", path);
	else
		send_ok_empty(r);
	free(path);
}

void handle_mkdir(struct req *r)
{
	char *path = need_path(r);
	if (!path)
		return;
	long mode = req_mode(r);
	int err;
	if (mode == -2) {
		send_error(r, EINVAL, "MODE must be octal, e.g. 755");
		free(path);
		return;
	}
	mode_t m = mode >= 0 ? (mode_t)mode : 0755;
	if (req_flag(r, F_PARENTS))
		err = mkdir_p(path, m);
	else
		err = mkdir(path, m) ? errno : 0;
	if (!err && mode >= 0 && chmod(path, m))
		err = errno;
	if (err)
		send_errno(r, err, "mkdir", path);
	else
		send_ok_empty(r);
	free(path);
}
