/* PING and HYGIENE. After a restore every child shares its parent's clock and
 * RNG state (microvm has no vmgenid), so the host sends the time and fresh
 * entropy right after restore, plus the optional VARY value that tells one
 * child apart from its siblings (exported to execs as FORKD_VARY, with the
 * variant's own ENV variables). The clock
 * is only set by the guest's init (never with --listen or --no-clock): host
 * tests often run as root and must never touch the host's clock. */
#include <errno.h>
#include <fcntl.h>
#include <linux/random.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

static pthread_mutex_t vary_mu = PTHREAD_MUTEX_INITIALIZER;
static char *vary;
/* The variant's environment: `K=V` strings back to back, each NUL-ended. */
static char *vary_env;
static size_t vary_env_len, vary_env_count;

char *vary_dup(void)
{
	pthread_mutex_lock(&vary_mu);
	char *v = vary ? strdup(vary) : NULL;
	pthread_mutex_unlock(&vary_mu);
	return v;
}

char *vary_env_dup(size_t *count)
{
	pthread_mutex_lock(&vary_mu);
	char *block = NULL;
	*count = 0;
	if (vary_env_count && (block = malloc(vary_env_len)) != NULL) {
		memcpy(block, vary_env, vary_env_len);
		*count = vary_env_count;
	}
	pthread_mutex_unlock(&vary_mu);
	return block;
}

/* The ENV fields of a HYGIENE as one block; -1 (error sent) if one is not K=V. */
static int collect_vary_env(struct req *r, char **block, size_t *len, size_t *count)
{
	*block = NULL;
	*len = *count = 0;
	for (size_t i = 0; i < r->nfields; i++) {
		const struct field *f = &r->fields[i];
		if (f->key != F_ENV)
			continue;
		const char *eq = memchr(f->val, '=', f->len);
		if (!eq || eq == (const char *)f->val) {
			send_error(r, EINVAL, "HYGIENE ENV must be KEY=VALUE");
			free(*block);
			return -1;
		}
		char *grown = realloc(*block, *len + f->len + 1);
		if (!grown) {
			send_error(r, ENOMEM, "out of memory");
			free(*block);
			return -1;
		}
		*block = grown;
		memcpy(*block + *len, f->val, f->len);
		(*block)[*len + f->len] = 0;
		*len += f->len + 1;
		(*count)++;
	}
	return 0;
}

void handle_ping(struct req *r)
{
	struct jbuf b = {0};
	jb_fmt(&b, "{\"version\":%d,\"agent\":\"%s\",\"runtime\":", PROTOCOL_VERSION, AGENT_VERSION);
	runtime_status_json(&b);
	jb_fmt(&b, ",\"uptime_ms\":%llu,\"pid\":%d}", (unsigned long long)(now_ms() - g_start_ms), (int)getpid());
	send_ok(r, &b, NULL, 0);
	jb_free(&b);
}

/* Returns 1 credited, 0 mixed in but not credited (no privilege), -errno. */
static int add_entropy(const uint8_t *data, uint32_t len)
{
	int fd = open("/dev/urandom", O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct rand_pool_info *info = malloc(sizeof *info + len + 4);
	if (!info) {
		close(fd);
		return -ENOMEM;
	}
	info->entropy_count = (int)(len * 8);
	info->buf_size = (int)len;
	memcpy(info->buf, data, len);
	int rc = 1;
	if (ioctl(fd, RNDADDENTROPY, info)) {
		rc = -errno;
		/* Unprivileged (host tests): mixing in without credit is allowed. */
		if (rc == -EPERM && !g_opts.init)
			rc = write(fd, data, len) == (ssize_t)len ? 0 : -errno;
	} else if (g_opts.init && !g_opts.listen) {
		/*
		 * Every child restores the parent's CRNG state, and the kernel only
		 * reseeds it from the input pool on its own schedule (up to a minute
		 * later): until then siblings read identical "random" bytes. Force
		 * the reseed now so the entropy just added takes effect at once.
		 */
		if (ioctl(fd, RNDRESEEDCRNG, NULL))
			rc = -errno;
	}
	free(info);
	close(fd);
	return rc;
}

void handle_hygiene(struct req *r)
{
	uint64_t ns = 0;
	int has_time = req_u64(r, F_TIME_NS, &ns);
	if (has_time < 0) {
		send_error(r, EINVAL, "TIME_NS must be decimal nanoseconds");
		return;
	}
	int clock_set = 0, credited = 0;
	if (has_time && g_opts.init && !g_opts.listen && !g_opts.no_clock) {
		struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
		if (clock_settime(CLOCK_REALTIME, &ts)) {
			send_errno(r, errno, "clock_settime", NULL);
			return;
		}
		clock_set = 1;
	}
	const struct field *ent = req_field(r, F_ENTROPY);
	if (ent && ent->len) {
		int rc = add_entropy(ent->val, ent->len);
		if (rc < 0) {
			send_errno(r, -rc, "add entropy", NULL);
			return;
		}
		credited = rc;
		__atomic_store_n(&g_runtime_reseed, 1, __ATOMIC_RELEASE);
	}
	if (req_field(r, F_VARY)) {
		/* A new variant replaces the whole of the old one, its ENV included. */
		char *env, *v;
		size_t env_len, env_count;
		if (collect_vary_env(r, &env, &env_len, &env_count))
			return;
		v = req_str(r, F_VARY);
		pthread_mutex_lock(&vary_mu);
		free(vary);
		vary = v;
		free(vary_env);
		vary_env = env;
		vary_env_len = env_len;
		vary_env_count = env_count;
		pthread_mutex_unlock(&vary_mu);
	}
	struct jbuf b = {0};
	jb_fmt(&b, "{\"clock_set\":%s,\"entropy_credited\":%s}", clock_set ? "true" : "false",
	       credited ? "true" : "false");
	send_ok(r, &b, NULL, 0);
	jb_free(&b);
}
