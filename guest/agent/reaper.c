/* Child reaping. One thread owns waitpid(-1): as PID 1 (and, via
 * PR_SET_CHILD_SUBREAPER, under --listen too) orphans are reparented to the
 * agent and must be reaped, and a per-exec waitpid(pid) would race with that.
 * Spawners register a child under reap_lock() around fork(), so a status can
 * never arrive before its owner is known; statuses of unknown pids (orphans)
 * are discarded. Owners wait on the child's eventfd so they can poll() it
 * together with the output pipes. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <poll.h>
#include <unistd.h>

#include "agent.h"

static pthread_mutex_t reap_mu = PTHREAD_MUTEX_INITIALIZER;
static struct child *live;

void reap_lock(void) { pthread_mutex_lock(&reap_mu); }
void reap_unlock(void) { pthread_mutex_unlock(&reap_mu); }

struct child *child_new(void)
{
	struct child *c = calloc(1, sizeof *c);
	if (!c)
		return NULL;
	c->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->efd < 0) {
		free(c);
		return NULL;
	}
	return c;
}

void child_add_locked(struct child *c, pid_t pid)
{
	c->pid = pid;
	c->next = live;
	live = c;
}

static void reap_all(void)
{
	for (;;) {
		int st;
		pid_t pid = waitpid(-1, &st, WNOHANG);
		if (pid <= 0)
			return;
		reap_lock();
		for (struct child **pp = &live; *pp; pp = &(*pp)->next) {
			struct child *c = *pp;
			if (c->pid != pid)
				continue;
			c->status = st;
			c->done = 1;
			*pp = c->next;
			uint64_t one = 1;
			if (write(c->efd, &one, sizeof one) < 0) {
				/* cannot fail for a fresh eventfd; owners also re-check done */
			}
			break;
		}
		reap_unlock();
	}
}

static void *reaper_main(void *arg)
{
	(void)arg;
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	for (;;) {
		/* The timeout is a safety net only: these signals are blocked in
		 * every thread, so they stay pending until taken here. */
		struct timespec ts = {1, 0};
		int sig = sigtimedwait(&set, NULL, &ts);
		if ((sig == SIGTERM || sig == SIGINT) && !g_opts.init)
			agent_shutdown();
		reap_all();
	}
	return NULL;
}

void reaper_start(void)
{
	pthread_t t;
	if (pthread_create(&t, NULL, reaper_main, NULL)) {
		logmsg("cannot start reaper thread");
		exit(1);
	}
	pthread_detach(t);
}

int child_done(struct child *c, int *status)
{
	reap_lock();
	int done = c->done;
	if (done && status)
		*status = c->status;
	reap_unlock();
	return done;
}

void child_wait(struct child *c, int *status)
{
	while (!child_done(c, status)) {
		struct pollfd p = {c->efd, POLLIN, 0};
		poll(&p, 1, 1000);
	}
}

void child_free(struct child *c)
{
	if (!c)
		return;
	close(c->efd);
	free(c);
}
