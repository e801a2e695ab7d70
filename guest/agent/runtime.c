/* The warm eval runtime: a long-lived language process (python_runtime.py)
 * started at agent start from the runtime config, so its imports are already
 * in memory when the parent VM is snapshotted. The agent talks to it over two
 * pipes that the runtime sees as fds 3 (requests) and 4 (replies); both ways
 * a message is u32le length + bytes. The runtime's first message is "ready"
 * or "failed\n<reason>"; after that each request (the code) gets one reply,
 * which is already the JSON head of the EVAL's OK response. Its stdout is
 * never the channel, so prints cannot corrupt it. EVALs are serialised by
 * eval_mu, which also covers (re)starting, so PING never waits on an eval. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

enum rt_state { RT_NONE, RT_STARTING, RT_READY, RT_FAILED };

int g_runtime_reseed;

static struct {
	pthread_mutex_t mu; /* state, error, child */
	pthread_mutex_t eval_mu;
	enum rt_state state;
	char *error;
	char *kind;
	char **argv;
	char *config_path;
	int to_fd, from_fd;
	struct child *c;
	int was_ready; /* only a runtime that once worked is worth restarting */
} rt = {
	.mu = PTHREAD_MUTEX_INITIALIZER,
	.eval_mu = PTHREAD_MUTEX_INITIALIZER,
	.to_fd = -1,
	.from_fd = -1,
};

static void set_state(enum rt_state st, const char *err)
{
	pthread_mutex_lock(&rt.mu);
	rt.state = st;
	free(rt.error);
	rt.error = err ? strdup(err) : NULL;
	pthread_mutex_unlock(&rt.mu);
	if (err)
		logmsg("eval runtime: %s", err);
}

static void describe_status(int st, char *out, size_t n)
{
	if (WIFEXITED(st))
		snprintf(out, n, "exit status %d", WEXITSTATUS(st));
	else if (WIFSIGNALED(st))
		snprintf(out, n, "killed by signal %d", WTERMSIG(st));
	else
		snprintf(out, n, "status %d", st);
}

/* Under eval_mu. Leaves no process or fd behind; describes how it ended. */
static void rt_stop(char *why, size_t n)
{
	if (rt.to_fd >= 0)
		close(rt.to_fd);
	if (rt.from_fd >= 0)
		close(rt.from_fd);
	rt.to_fd = rt.from_fd = -1;
	pthread_mutex_lock(&rt.mu);
	struct child *c = rt.c;
	rt.c = NULL;
	pthread_mutex_unlock(&rt.mu);
	if (!c)
		return;
	int st = 0;
	if (!child_done(c, NULL))
		kill(c->pid, SIGKILL);
	child_wait(c, &st);
	child_free(c);
	if (why)
		describe_status(st, why, n);
}

static int read_full(int fd, void *buf, size_t n)
{
	uint8_t *p = buf;
	while (n) {
		ssize_t k = read(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

int write_full(int fd, const void *buf, size_t n)
{
	const uint8_t *p = buf;
	while (n) {
		ssize_t k = write(fd, p, n);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			return -1;
		p += k;
		n -= (size_t)k;
	}
	return 0;
}

/* One message from the runtime, NUL-terminated for convenience. */
static char *read_msg(size_t *len)
{
	uint8_t h[4];
	if (read_full(rt.from_fd, h, 4))
		return NULL;
	uint32_t n = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
	if (n > MAX_BODY)
		return NULL;
	char *m = malloc((size_t)n + 1);
	if (!m || read_full(rt.from_fd, m, n)) {
		free(m);
		return NULL;
	}
	m[n] = 0;
	*len = n;
	return m;
}

static void __attribute__((noreturn)) rt_child(int in_fd, int out_fd, const char *path, char **envp)
{
	setsid();
	int devnull = open("/dev/null", O_RDONLY);
	if (devnull >= 0)
		dup2(devnull, 0);
	/* Through fds >= 10 first, so dup2 onto 3/4 never meets itself (which
	 * would leave O_CLOEXEC set). */
	int a = fcntl(in_fd, F_DUPFD, 10), b = fcntl(out_fd, F_DUPFD, 10);
	if (a < 0 || b < 0 || dup2(a, 3) < 0 || dup2(b, 4) < 0)
		_exit(126);
	reset_signals();
	execve(path, rt.argv, envp);
	_exit(127);
}

/* Under eval_mu: starts the runtime and waits for it to announce itself. */
static void rt_start(void)
{
	set_state(RT_STARTING, NULL);
	char path[4096], why[256] = "", *env_cfg = NULL;
	int to[2] = {-1, -1}, from[2] = {-1, -1};
	if (resolve_cmd(rt.argv[0], DEFAULT_PATH, path, sizeof path)) {
		snprintf(why, sizeof why, "runtime command not found: %s", rt.argv[0]);
		set_state(RT_FAILED, why);
		return;
	}
	struct child *c = child_new();
	if (!c || asprintf(&env_cfg, "FORKD_RUNTIME_CONFIG=%s", rt.config_path) < 0 ||
	    pipe2(to, O_CLOEXEC) || pipe2(from, O_CLOEXEC)) {
		set_state(RT_FAILED, "cannot create runtime pipes");
		child_free(c);
		for (int i = 0; i < 2; i++) {
			if (to[i] >= 0)
				close(to[i]);
			if (from[i] >= 0)
				close(from[i]);
		}
		return;
	}
	char *envp[] = {"PATH=" DEFAULT_PATH, "HOME=/root", "PYTHONUNBUFFERED=1", "FORKD_RUNTIME_FDS=3,4",
			env_cfg, NULL};
	reap_lock();
	pid_t pid = fork();
	if (pid == 0)
		rt_child(to[0], from[1], path, envp);
	if (pid > 0)
		child_add_locked(c, pid);
	reap_unlock();
	close(to[0]);
	close(from[1]);
	free(env_cfg);
	rt.to_fd = to[1];
	rt.from_fd = from[0];
	if (pid < 0) {
		child_free(c);
		rt_stop(NULL, 0);
		set_state(RT_FAILED, "cannot fork the runtime");
		return;
	}
	pthread_mutex_lock(&rt.mu);
	rt.c = c;
	pthread_mutex_unlock(&rt.mu);

	size_t len;
	char *msg = read_msg(&len);
	if (msg && strcmp(msg, "ready") == 0) {
		free(msg);
		rt.was_ready = 1;
		set_state(RT_READY, NULL);
		return;
	}
	char status[64] = "";
	rt_stop(status, sizeof status);
	if (msg && strncmp(msg, "failed\n", 7) == 0)
		set_state(RT_FAILED, msg + 7);
	else {
		snprintf(why, sizeof why, "runtime exited before it was ready (%s)", status);
		set_state(RT_FAILED, why);
	}
	free(msg);
}

static void *start_thread(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&rt.eval_mu);
	rt_start();
	pthread_mutex_unlock(&rt.eval_mu);
	return NULL;
}

void runtime_init(const char *config_path)
{
	FILE *f = fopen(config_path, "re");
	if (!f) {
		if (errno != ENOENT)
			logmsg("cannot read %s: %s", config_path, strerror(errno));
		return; /* no runtime: PING says null */
	}
	char text[65536];
	size_t n = fread(text, 1, sizeof text - 1, f);
	fclose(f);
	text[n] = 0;
	char err[200];
	rt.config_path = strdup(config_path);
	if (rtconfig_parse(text, &rt.kind, &rt.argv, err, sizeof err)) {
		char why[300];
		snprintf(why, sizeof why, "bad runtime config %s: %s", config_path, err);
		rt.kind = strdup("unknown");
		set_state(RT_FAILED, why);
		return;
	}
	set_state(RT_STARTING, NULL);
	pthread_t t;
	if (pthread_create(&t, NULL, start_thread, NULL) == 0)
		pthread_detach(t);
	else
		set_state(RT_FAILED, "cannot start runtime thread");
}

void runtime_kill(void)
{
	pthread_mutex_lock(&rt.mu);
	if (rt.c && !child_done(rt.c, NULL))
		kill(rt.c->pid, SIGKILL);
	pthread_mutex_unlock(&rt.mu);
}

/* A runtime that died while idle is only noticed here or at the next EVAL. */
static void check_alive_locked(void)
{
	int st;
	if (rt.state == RT_READY && rt.c && child_done(rt.c, &st)) {
		char why[96], s[64];
		describe_status(st, s, sizeof s);
		snprintf(why, sizeof why, "runtime exited (%s)", s);
		rt.state = RT_FAILED;
		free(rt.error);
		rt.error = strdup(why);
	}
}

void runtime_status_json(struct jbuf *b)
{
	pthread_mutex_lock(&rt.mu);
	if (rt.state == RT_NONE) {
		jb_puts(b, "null");
	} else {
		check_alive_locked();
		static const char *names[] = {"none", "starting", "ready", "failed"};
		jb_puts(b, "{\"kind\":");
		jb_str(b, rt.kind);
		jb_fmt(b, ",\"state\":\"%s\",\"ready\":%s", names[rt.state], rt.state == RT_READY ? "true" : "false");
		if (rt.error) {
			jb_puts(b, ",\"error\":");
			jb_str(b, rt.error);
		}
		jb_puts(b, "}");
	}
	pthread_mutex_unlock(&rt.mu);
}

static enum rt_state get_state(char *err, size_t n)
{
	pthread_mutex_lock(&rt.mu);
	check_alive_locked();
	enum rt_state st = rt.state;
	snprintf(err, n, "%s", rt.error ? rt.error : "");
	pthread_mutex_unlock(&rt.mu);
	return st;
}

void handle_eval(struct req *r)
{
	char err[1024];
	pthread_mutex_lock(&rt.eval_mu);
	enum rt_state st = get_state(err, sizeof err);
	/* The start thread may not have taken eval_mu yet. */
	while (st == RT_STARTING) {
		pthread_mutex_unlock(&rt.eval_mu);
		struct timespec ts = {0, 10 * 1000000L};
		nanosleep(&ts, NULL);
		pthread_mutex_lock(&rt.eval_mu);
		st = get_state(err, sizeof err);
	}
	if (st == RT_NONE) {
		send_error(r, ENOSYS, "this image has no eval runtime (build a recipe with a runtime, e.g. python-numpy)");
		goto out;
	}
	if (st == RT_FAILED && rt.was_ready) {
		/* One restart per EVAL: a runtime that dies every time costs each
		 * caller one start, never a loop. One that never got ready (a
		 * failed import) would only fail the same way again. */
		rt_stop(NULL, 0);
		rt_start();
		st = get_state(err, sizeof err);
	}
	if (st != RT_READY) {
		send_error(r, EIO, "eval runtime is not available: %s", err);
		goto out;
	}
	const struct field *code = req_field(r, F_CODE);
	uint32_t n = code ? code->len : 0;
	size_t len = 0;
	char *reply = NULL;
	/* First eval after a hand-over: tell the runtime to reseed its own
	 * generators (random, numpy), which it seeded in the parent. */
	static const char reseed[] = "\0reseed\n";
	int prefix = __atomic_exchange_n(&g_runtime_reseed, 0, __ATOMIC_ACQ_REL) ? (int)sizeof reseed - 1 : 0;
	uint32_t total = n + (uint32_t)prefix;
	uint8_t h[4] = {(uint8_t)total, (uint8_t)(total >> 8), (uint8_t)(total >> 16), (uint8_t)(total >> 24)};
	if (write_full(rt.to_fd, h, 4) == 0 && (prefix == 0 || write_full(rt.to_fd, reseed, (size_t)prefix) == 0) &&
	    write_full(rt.to_fd, code ? code->val : h, n) == 0)
		reply = read_msg(&len);
	if (!reply || reply[0] != '{') {
		char status[64] = "no status", why[128];
		rt_stop(status, sizeof status);
		snprintf(why, sizeof why, "runtime exited during eval (%s)", status);
		set_state(RT_FAILED, why);
		send_error(r, EIO, "%s", why);
		free(reply);
		goto out;
	}
	chan_send(r->id, r->gen, RS_OK, reply, len, NULL, 0);
	free(reply);
out:
	pthread_mutex_unlock(&rt.eval_mu);
}
