/* EXEC, STDIN, KILL and CREDIT. Each exec gets its own session (setsid) so a
 * timeout or KILL reaches the whole process tree through its process group.
 * Output is streamed as it arrives; with a WINDOW the host bounds how many
 * bytes may be unacknowledged, and past it the pipes are not read until a
 * CREDIT comes, so the process blocks on a full pipe instead of the host
 * buffering without limit. STDIN frames are queued by the reader thread in
 * arrival order and fed to the pipe by a per-exec writer thread, so a child
 * that never reads its stdin cannot stall the channel. An exec is registered
 * under its request id before its thread starts, so a STDIN or KILL that
 * follows immediately always finds it. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent.h"

/* After the main process exits, how long to keep draining pipes that a
 * backgrounded descendant still holds open. */
#define DRAIN_MS 200

struct chunk {
	struct chunk *next;
	size_t len;
	uint8_t data[];
};

struct exec {
	struct exec *next;
	struct req *r;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct chunk *qh, *qt; /* stdin not yet written */
	int close_req;         /* close stdin once the queue drains */
	int stdin_dead;        /* child closed its end; drop further data */
	int finished;          /* process gone; writer gives up */
	pid_t pid;             /* also the process group; 0 until exec'd */
	int pending_sig;       /* KILL that arrived before the exec happened */
	int in_fd;
	uint64_t window;       /* unacknowledged output allowed; 0 = no flow control */
	uint64_t acked;        /* output bytes the host has credited */
	int credit_fd;         /* eventfd: a CREDIT (or an abandon) arrived */
	int abandon;           /* SIGKILLed: stop forwarding output */
};

static pthread_mutex_t ex_mu = PTHREAD_MUTEX_INITIALIZER;
static struct exec *execs;

static struct exec *find_locked(uint32_t id)
{
	for (struct exec *e = execs; e; e = e->next)
		if (e->r->id == id)
			return e;
	return NULL;
}

/* Caller holds e->mu. */
static void enqueue(struct exec *e, const uint8_t *data, size_t len)
{
	if (e->close_req || e->stdin_dead || len == 0)
		return;
	struct chunk *c = malloc(sizeof *c + len);
	if (!c)
		return;
	c->next = NULL;
	c->len = len;
	memcpy(c->data, data, len);
	if (e->qt)
		e->qt->next = c;
	else
		e->qh = c;
	e->qt = c;
	pthread_cond_broadcast(&e->cv);
}

struct exec *exec_register(struct req *r)
{
	struct exec *e = calloc(1, sizeof *e);
	if (!e) {
		send_error(r, ENOMEM, "out of memory");
		return NULL;
	}
	e->r = r;
	e->in_fd = -1;
	e->credit_fd = -1;
	if (req_u64(r, F_WINDOW, &e->window) <= 0)
		e->window = 0;
	if (e->window && (e->credit_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		send_errno(r, errno, "eventfd", NULL);
		free(e);
		return NULL;
	}
	pthread_mutex_init(&e->mu, NULL);
	pthread_cond_init(&e->cv, NULL);
	const struct field *in = req_field(r, F_STDIN);
	if (in)
		enqueue(e, in->val, in->len);
	if (!req_flag(r, F_STDIN_OPEN))
		e->close_req = 1;
	pthread_mutex_lock(&ex_mu);
	if (find_locked(r->id)) {
		pthread_mutex_unlock(&ex_mu);
		send_error(r, EEXIST, "an exec with id %u is still running", r->id);
		if (e->credit_fd >= 0)
			close(e->credit_fd);
		pthread_mutex_destroy(&e->mu);
		pthread_cond_destroy(&e->cv);
		free(e->qh);
		free(e);
		return NULL;
	}
	e->next = execs;
	execs = e;
	pthread_mutex_unlock(&ex_mu);
	return e;
}

static void unregister(struct exec *e)
{
	pthread_mutex_lock(&ex_mu);
	for (struct exec **pp = &execs; *pp; pp = &(*pp)->next)
		if (*pp == e) {
			*pp = e->next;
			break;
		}
	pthread_mutex_unlock(&ex_mu);
}

static void exec_free(struct exec *e)
{
	for (struct chunk *c = e->qh, *n; c; c = n) {
		n = c->next;
		free(c);
	}
	if (e->credit_fd >= 0)
		close(e->credit_fd);
	pthread_mutex_destroy(&e->mu);
	pthread_cond_destroy(&e->cv);
	req_free(e->r);
	free(e);
}

static void wake_pump(struct exec *e)
{
	if (e->credit_fd >= 0) {
		uint64_t one = 1;
		(void)!write(e->credit_fd, &one, sizeof one);
	}
}

void exec_stdin(struct req *r)
{
	const struct field *d = req_field(r, F_DATA);
	pthread_mutex_lock(&ex_mu);
	struct exec *e = find_locked(r->id);
	if (e) {
		pthread_mutex_lock(&e->mu);
		if (!d || d->len == 0) {
			e->close_req = 1;
			pthread_cond_broadcast(&e->cv);
		} else {
			enqueue(e, d->val, d->len);
		}
		pthread_mutex_unlock(&e->mu);
	}
	pthread_mutex_unlock(&ex_mu);
	if (!e)
		send_error(r, ESRCH, "no running exec with id %u", r->id);
}

void exec_kill(struct req *r)
{
	uint64_t sig = SIGKILL;
	if (req_u64(r, F_SIGNAL, &sig) < 0 || sig < 1 || sig >= (uint64_t)NSIG) {
		send_error(r, EINVAL, "bad SIGNAL");
		return;
	}
	pthread_mutex_lock(&ex_mu);
	struct exec *e = find_locked(r->id);
	if (e) {
		if (e->pid > 0)
			kill(-e->pid, (int)sig);
		else
			e->pending_sig = (int)sig;
		if (sig == SIGKILL) {
			/* Whoever killed it wants no more output: a pump held back by
			 * its window must not wait for credit that will never come. */
			pthread_mutex_lock(&e->mu);
			e->abandon = 1;
			pthread_mutex_unlock(&e->mu);
			wake_pump(e);
		}
	}
	pthread_mutex_unlock(&ex_mu);
	if (!e)
		send_error(r, ESRCH, "no running exec with id %u", r->id);
}

/* CREDIT travels under an id of its own (TARGET names the exec) and has no
 * reply: an agent that predates it answers with an ERROR the host ignores. */
void exec_credit(struct req *r)
{
	uint64_t target = 0, n = 0;
	if (req_u64(r, F_TARGET, &target) <= 0 || req_u64(r, F_LENGTH, &n) <= 0 || target > UINT32_MAX)
		return;
	pthread_mutex_lock(&ex_mu);
	struct exec *e = find_locked((uint32_t)target);
	if (e) {
		pthread_mutex_lock(&e->mu);
		e->acked += n;
		pthread_mutex_unlock(&e->mu);
		wake_pump(e);
	}
	pthread_mutex_unlock(&ex_mu);
}

void exec_kill_all(void)
{
	pthread_mutex_lock(&ex_mu);
	for (struct exec *e = execs; e; e = e->next)
		if (e->pid > 0)
			kill(-e->pid, SIGKILL);
	pthread_mutex_unlock(&ex_mu);
}

int resolve_cmd(const char *cmd, const char *path_env, char *out, size_t outlen)
{
	if (strchr(cmd, '/')) {
		snprintf(out, outlen, "%s", cmd);
		return 0;
	}
	if (!*cmd)
		return ENOENT;
	const char *p = path_env;
	while (p) {
		const char *colon = strchr(p, ':');
		size_t dl = colon ? (size_t)(colon - p) : strlen(p);
		if ((size_t)snprintf(out, outlen, "%.*s/%s", (int)dl, dl ? p : ".", cmd) < outlen) {
			struct stat st;
			if (stat(out, &st) == 0 && S_ISREG(st.st_mode) && access(out, X_OK) == 0)
				return 0;
		}
		p = colon ? colon + 1 : NULL;
	}
	return ENOENT;
}

/* Between fork and execve only async-signal-safe calls: the parent has other
 * threads whose locks the child inherits in an unknown state. */
static void __attribute__((noreturn))
child_exec(const int fds[4], const char *cwd, const char *path, char **argv, char **envp)
{
	setsid();
	if (dup2(fds[0], 0) < 0 || dup2(fds[1], 1) < 0 || dup2(fds[2], 2) < 0)
		goto fail;
	if (cwd && chdir(cwd))
		goto fail;
	reset_signals();
	execve(path, argv, envp);
fail:;
	int err = errno;
	if (write(fds[3], &err, sizeof err) < 0) {
		/* nothing left to report to */
	}
	_exit(127);
}

/* argv and envp for the child; everything malloc'd before fork. */
struct spawn {
	char **argv;
	char **envp;
	size_t nenv;
	char *cwd;
	char *vary_env;
	char *variant_env; /* vary_env_dup's block, pointed into by envp */
	char path[4096];
};

static void spawn_free(struct spawn *s)
{
	free(s->argv);
	free(s->envp);
	free(s->cwd);
	free(s->variant_env);
	free(s->vary_env);
}

static void env_set(struct spawn *s, char *kv)
{
	size_t klen = strcspn(kv, "=") + 1;
	for (size_t i = 0; i < s->nenv; i++)
		if (strncmp(s->envp[i], kv, klen) == 0) {
			s->envp[i] = kv;
			return;
		}
	s->envp[s->nenv++] = kv;
	s->envp[s->nenv] = NULL;
}

/* Fills s from the request; on failure the error has been sent. Strings point
 * into the request payload, which outlives the child's execve: the payload
 * is NUL-free, so fields are copied into one NUL-terminated arena. */
static int spawn_prepare(struct req *r, struct spawn *s, char **arena)
{
	size_t nargs = 0, nenv = 0, total = 0;
	for (size_t i = 0; i < r->nfields; i++) {
		const struct field *f = &r->fields[i];
		if (f->key == F_ARG)
			nargs++;
		if (f->key == F_ENV)
			nenv++;
		if (f->key == F_ARG || f->key == F_ENV || f->key == F_SHELL)
			total += f->len + 1;
	}
	const struct field *shell = req_field(r, F_SHELL);
	if (!shell && nargs == 0) {
		send_error(r, EINVAL, "EXEC needs ARG or SHELL");
		return -1;
	}
	size_t nvariant = 0;
	s->variant_env = vary_env_dup(&nvariant);
	char *a = *arena = malloc(total + 1);
	s->argv = calloc((shell ? 3 : nargs) + 1, sizeof(char *));
	s->envp = calloc(nenv + nvariant + 4, sizeof(char *));
	if (!a || !s->argv || !s->envp) {
		send_error(r, ENOMEM, "out of memory");
		return -1;
	}
	s->envp[s->nenv++] = "PATH=" DEFAULT_PATH;
	s->envp[s->nenv++] = "HOME=/root";
	/* The variant's variables, which the request's own ENV may override. */
	for (char *kv = s->variant_env; nvariant--; kv += strlen(kv) + 1)
		env_set(s, kv);
	size_t ai = 0;
	if (shell) {
		s->argv[ai++] = "/bin/sh";
		s->argv[ai++] = "-c";
	}
	for (size_t i = 0; i < r->nfields; i++) {
		const struct field *f = &r->fields[i];
		if (f->key != F_ARG && f->key != F_ENV && f->key != F_SHELL)
			continue;
		memcpy(a, f->val, f->len);
		a[f->len] = 0;
		if (f->key == F_ENV) {
			if (!strchr(a, '=') || a[0] == '=') {
				send_error(r, EINVAL, "ENV must be KEY=VALUE: %s", a);
				return -1;
			}
			env_set(s, a);
		} else if (f->key == F_SHELL ? f == shell : !shell) {
			s->argv[ai++] = a;
		}
		a += f->len + 1;
	}
	char *vary = vary_dup();
	if (vary) {
		if (asprintf(&s->vary_env, "FORKD_VARY=%s", vary) > 0)
			env_set(s, s->vary_env);
		else
			s->vary_env = NULL;
		free(vary);
	}
	s->cwd = req_str(r, F_CWD);
	const char *path_env = DEFAULT_PATH;
	for (size_t i = 0; i < s->nenv; i++)
		if (strncmp(s->envp[i], "PATH=", 5) == 0)
			path_env = s->envp[i] + 5;
	/* The agent itself (`--relay`) lives at a different path in a foreign
	 * root; the forked child still is the agent until it calls execve. */
	if (!strcmp(s->argv[0], AGENT_SELF)) {
		strcpy(s->path, "/proc/self/exe");
		return 0;
	}
	int err = resolve_cmd(s->argv[0], path_env, s->path, sizeof s->path);
	if (err) {
		send_error(r, err, "command not found: %s", s->argv[0]);
		return -1;
	}
	return 0;
}

static void pipe_close(int p[2])
{
	for (int i = 0; i < 2; i++)
		if (p[i] >= 0)
			close(p[i]);
	p[0] = p[1] = -1;
}

static int write_stdin_chunk(struct exec *e, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t k = write(e->in_fd, p, n);
		if (k > 0) {
			p += k;
			n -= (size_t)k;
			continue;
		}
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0 && errno == EAGAIN) {
			struct pollfd pf = {e->in_fd, POLLOUT, 0};
			poll(&pf, 1, 100);
			pthread_mutex_lock(&e->mu);
			int fin = e->finished;
			pthread_mutex_unlock(&e->mu);
			if (fin)
				return -1;
			continue;
		}
		return -1; /* EPIPE: the child closed stdin */
	}
	return 0;
}

static void *stdin_main(void *arg)
{
	struct exec *e = arg;
	for (;;) {
		pthread_mutex_lock(&e->mu);
		while (!e->qh && !e->close_req && !e->finished)
			pthread_cond_wait(&e->cv, &e->mu);
		struct chunk *c = e->finished ? NULL : e->qh;
		if (c) {
			e->qh = c->next;
			if (!e->qh)
				e->qt = NULL;
		}
		pthread_mutex_unlock(&e->mu);
		if (!c)
			break;
		int rc = write_stdin_chunk(e, c->data, c->len);
		free(c);
		if (rc) {
			pthread_mutex_lock(&e->mu);
			e->stdin_dead = 1;
			pthread_mutex_unlock(&e->mu);
			break;
		}
	}
	close(e->in_fd);
	return NULL;
}

static void send_exit(struct req *r, int status, int timed_out)
{
	struct jbuf b = {0};
	int code = 0, sig = 0;
	if (WIFEXITED(status)) {
		code = WEXITSTATUS(status);
	} else if (WIFSIGNALED(status)) {
		sig = WTERMSIG(status);
		code = 128 + sig;
	}
	jb_fmt(&b, "{\"exit_code\":%d,\"signal\":", code);
	const char *abbr = sig ? sigabbrev_np(sig) : NULL;
	if (!sig)
		jb_puts(&b, "null");
	else if (abbr)
		jb_fmt(&b, "\"SIG%s\"", abbr);
	else
		jb_fmt(&b, "%d", sig);
	jb_fmt(&b, ",\"timed_out\":%s}", timed_out ? "true" : "false");
	if (!b.oom)
		chan_send(r->id, r->gen, RS_EXIT, b.p, b.len, NULL, 0);
	jb_free(&b);
}

/* How many output bytes may be read now: the window's room (CHUNK_MAX at
 * most), 0 while the host has not caught up, -1 once abandoned. */
static ssize_t output_room(struct exec *e, uint64_t sent)
{
	pthread_mutex_lock(&e->mu);
	uint64_t acked = e->acked;
	int abandon = e->abandon;
	pthread_mutex_unlock(&e->mu);
	if (abandon)
		return -1;
	if (!e->window)
		return CHUNK_MAX;
	uint64_t out = sent > acked ? sent - acked : 0;
	if (out >= e->window)
		return 0;
	uint64_t room = e->window - out;
	return room < CHUNK_MAX ? (ssize_t)room : CHUNK_MAX;
}

/* Streams output until the process has exited and its pipes are drained;
 * returns the wait status. */
static int pump(struct exec *e, struct child *c, int outfd, int errfd, int *timed_out)
{
	uint64_t timeout = 0;
	req_u64(e->r, F_TIMEOUT_MS, &timeout);
	uint64_t deadline = timeout ? now_ms() + timeout : 0, exit_at = 0, sent = 0;
	int fds[2] = {outfd, errfd}, exited = 0, status = 0;
	uint8_t *buf = malloc(CHUNK_MAX);
	if (!buf) {
		kill(-e->pid, SIGKILL);
		child_wait(c, &status);
		return status;
	}
	while (fds[0] >= 0 || fds[1] >= 0 || !exited) {
		uint64_t now = now_ms();
		ssize_t room = output_room(e, sent);
		if (room < 0) {
			if (!exited)
				kill(-e->pid, SIGKILL);
			for (int i = 0; i < 2; i++)
				if (fds[i] >= 0) {
					close(fds[i]);
					fds[i] = -1;
				}
			if (!exited) {
				child_wait(c, &status);
				exited = 1;
			}
			break;
		}
		/* Held back by the window: the drain period starts once output flows again. */
		if (exited && room == 0)
			exit_at = now;
		if (exited && now >= exit_at + DRAIN_MS)
			break;
		if (deadline && !exited && !*timed_out && now >= deadline) {
			kill(-e->pid, SIGKILL);
			*timed_out = 1;
		}
		/* A timed-out command's held-back output is dropped, not waited for. */
		if (*timed_out && room == 0 && exited)
			break;
		int wait = -1;
		if (deadline && !exited && !*timed_out)
			wait = (int)(deadline - now);
		if (exited && room > 0)
			wait = (int)(exit_at + DRAIN_MS - now);
		struct pollfd pf[4];
		int n = 0, idx[4];
		for (int i = 0; i < 2 && room > 0; i++)
			if (fds[i] >= 0) {
				idx[n] = i;
				pf[n++] = (struct pollfd){fds[i], POLLIN, 0};
			}
		if (!exited) {
			idx[n] = 2;
			pf[n++] = (struct pollfd){c->efd, POLLIN, 0};
		}
		if (e->credit_fd >= 0) {
			idx[n] = 3;
			pf[n++] = (struct pollfd){e->credit_fd, POLLIN, 0};
		}
		if (poll(pf, (nfds_t)n, wait) < 0)
			continue;
		for (int j = 0; j < n; j++) {
			if (!pf[j].revents)
				continue;
			int i = idx[j];
			if (i == 3) {
				uint64_t v;
				(void)!read(e->credit_fd, &v, sizeof v);
				continue;
			}
			if (i == 2) {
				if (child_done(c, &status)) {
					exited = 1;
					exit_at = now_ms();
				}
				continue;
			}
			ssize_t k = read(fds[i], buf, (size_t)room);
			if (k > 0) {
				sent += (uint64_t)k;
				chan_send(e->r->id, e->r->gen, i ? RS_STDERR : RS_STDOUT, "{}", 2, buf, (size_t)k);
				room = output_room(e, sent);
				if (room <= 0)
					break;
			} else if (k == 0 || (errno != EINTR && errno != EAGAIN)) {
				close(fds[i]);
				fds[i] = -1;
			}
		}
	}
	for (int i = 0; i < 2; i++)
		if (fds[i] >= 0)
			close(fds[i]);
	free(buf);
	return status;
}

void *exec_thread(void *arg)
{
	struct exec *e = arg;
	struct req *r = e->r;
	struct spawn s = {0};
	char *arena = NULL;
	int pin[2] = {-1, -1}, pout[2] = {-1, -1}, perr[2] = {-1, -1}, perrno[2] = {-1, -1};
	struct child *c = NULL;
	pthread_t writer;
	int have_writer = 0;

	if (spawn_prepare(r, &s, &arena))
		goto out;
	c = child_new();
	if (!c || pipe2(pin, O_CLOEXEC) || pipe2(pout, O_CLOEXEC) || pipe2(perr, O_CLOEXEC) ||
	    pipe2(perrno, O_CLOEXEC)) {
		send_errno(r, c ? errno : ENOMEM, "exec", s.argv[0]);
		goto out;
	}
	reap_lock();
	pid_t pid = fork();
	if (pid == 0) {
		int fds[4] = {pin[0], pout[1], perr[1], perrno[1]};
		child_exec(fds, s.cwd, s.path, s.argv, s.envp);
	}
	if (pid > 0)
		child_add_locked(c, pid);
	reap_unlock();
	if (pid < 0) {
		send_errno(r, errno, "fork", NULL);
		goto out;
	}
	close(pin[0]);
	close(pout[1]);
	close(perr[1]);
	close(perrno[1]);
	pin[0] = pout[1] = perr[1] = perrno[1] = -1;

	/* The error pipe closes on a successful execve, which is also after
	 * setsid(): only now is the process group safe to signal. */
	int child_err = 0;
	ssize_t k;
	do
		k = read(perrno[0], &child_err, sizeof child_err);
	while (k < 0 && errno == EINTR);
	if (k > 0) {
		child_wait(c, NULL);
		if (child_err == ENOENT && s.cwd && access(s.cwd, F_OK))
			send_errno(r, child_err, "chdir", s.cwd);
		else
			send_errno(r, child_err, "exec", s.argv[0]);
		goto out;
	}

	pthread_mutex_lock(&ex_mu);
	e->pid = pid;
	if (e->pending_sig)
		kill(-pid, e->pending_sig);
	pthread_mutex_unlock(&ex_mu);

	fcntl(pin[1], F_SETFL, O_NONBLOCK);
	e->in_fd = pin[1];
	pin[1] = -1;
	if (pthread_create(&writer, NULL, stdin_main, e) == 0)
		have_writer = 1;
	else
		close(e->in_fd);

	int timed_out = 0;
	int status = pump(e, c, pout[0], perr[0], &timed_out);
	pout[0] = perr[0] = -1;
	send_exit(r, status, timed_out);
out:
	/* EXIT goes out before the exec leaves the registry, so a late STDIN's
	 * ERROR can only follow it, never be mistaken for a failed start. */
	unregister(e);
	pthread_mutex_lock(&e->mu);
	e->finished = 1;
	pthread_cond_broadcast(&e->cv);
	pthread_mutex_unlock(&e->mu);
	if (have_writer)
		pthread_join(writer, NULL);
	pipe_close(pin);
	pipe_close(pout);
	pipe_close(perr);
	pipe_close(perrno);
	child_free(c);
	spawn_free(&s);
	free(arena);
	exec_free(e);
	return NULL;
}

void reset_signals(void)
{
	struct sigaction sa = {.sa_handler = SIG_DFL};
	for (int s = 1; s < NSIG; s++)
		sigaction(s, &sa, NULL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
}
