/* forkd-agent entry point: options, process setup, and the reader loop that
 * hands each request to its own detached thread. STDIN and KILL are handled
 * on the reader thread itself (they only queue data or send a signal), which
 * keeps the stdin chunks of one exec in the order they were sent.
 *
 *   forkd-agent [--port PATH | --listen PATH] [--runtime-config FILE]
 *               [--init] [--no-clock]
 *   forkd-agent --relay PORT      (relay.c: a guest port for the host) */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

struct options g_opts = {.port = DEFAULT_PORT, .runtime_config = DEFAULT_RUNTIME_CONFIG};
uint64_t g_start_ms;

uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void logmsg(const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	fprintf(stderr, "forkd-agent: %s\n", line);
}

static void usage(int code)
{
	fprintf(code ? stderr : stdout,
		"usage: forkd-agent [--port PATH | --listen PATH] [--runtime-config FILE] [--init] [--no-clock]\n"
		"  --port PATH            virtio-serial port (default %s)\n"
		"  --listen PATH          serve a unix socket instead (host testing)\n"
		"  --runtime-config FILE  eval runtime config (default %s)\n"
		"  --init                 act as init (implied when PID 1): may set the clock\n"
		"  --no-clock             never set the clock from HYGIENE (--listen never does)\n"
		"       forkd-agent --relay PORT\n"
		"  --relay PORT           relay stdin and stdout to 127.0.0.1:PORT (run by the host through exec)\n",
		DEFAULT_PORT, DEFAULT_RUNTIME_CONFIG);
	exit(code);
}

static void parse_args(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char **dst = NULL;
		if (!strcmp(a, "--port"))
			dst = &g_opts.port;
		else if (!strcmp(a, "--listen"))
			dst = &g_opts.listen;
		else if (!strcmp(a, "--runtime-config"))
			dst = &g_opts.runtime_config;
		else if (!strcmp(a, "--init"))
			g_opts.init = 1;
		else if (!strcmp(a, "--no-clock"))
			g_opts.no_clock = 1;
		else if (!strcmp(a, "--help") || !strcmp(a, "-h"))
			usage(0);
		else
			usage(2);
		if (dst) {
			if (++i >= argc)
				usage(2);
			*dst = argv[i];
		}
	}
	if (getpid() == 1)
		g_opts.init = 1;
}

static void on_sigchld(int sig) { (void)sig; }

void agent_shutdown(void)
{
	exec_kill_all();
	runtime_kill();
	if (g_opts.listen)
		unlink(g_opts.listen);
	_exit(0);
}

static void setup_process(void)
{
	/* Pipes must never land on 0-2: children get them by dup2. */
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF)
			open("/dev/null", O_RDWR);
	signal(SIGPIPE, SIG_IGN);
	/* SIGCHLD (and SIGTERM/SIGINT, for a clean stop outside the VM) are
	 * blocked everywhere and taken by the reaper with sigtimedwait; the
	 * handler only keeps SIGCHLD from being discarded. */
	struct sigaction sa = {.sa_handler = on_sigchld};
	sigaction(SIGCHLD, &sa, NULL);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	/* Outside the VM, orphans of exec'd trees come to us as they would to
	 * PID 1, so both modes reap the same way. */
	if (getpid() != 1)
		prctl(PR_SET_CHILD_SUBREAPER, 1);
}

typedef void (*handler_fn)(struct req *);

struct job {
	handler_fn fn;
	struct req *r;
};

static void *job_main(void *arg)
{
	struct job *j = arg;
	j->fn(j->r);
	req_free(j->r);
	free(j);
	return NULL;
}

static pthread_attr_t thread_attr;

static void run_detached(void *(*fn)(void *), void *arg)
{
	pthread_t t;
	if (pthread_create(&t, &thread_attr, fn, arg))
		fn(arg); /* out of threads: serve it inline rather than drop it */
}

static handler_fn handler_for(uint8_t type)
{
	switch (type) {
	case T_PING: return handle_ping;
	case T_HYGIENE: return handle_hygiene;
	case T_EVAL: return handle_eval;
	case T_FILE_READ: return handle_file_read;
	case T_FILE_WRITE: return handle_file_write;
	case T_FILE_LIST: return handle_file_list;
	case T_FILE_STAT: return handle_file_stat;
	case T_FILE_REMOVE: return handle_file_remove;
	case T_MKDIR: return handle_mkdir;
	default: return NULL;
	}
}

static void dispatch(struct req *r)
{
	if (r->id == 0) {
		send_error(r, EINVAL, "request id must be non-zero");
		req_free(r);
		return;
	}
	if (tlv_parse(r)) {
		send_error(r, EINVAL, "malformed request fields");
		req_free(r);
		return;
	}
	if (r->type == T_STDIN || r->type == T_KILL || r->type == T_CREDIT) {
		if (r->type == T_STDIN)
			exec_stdin(r);
		else if (r->type == T_KILL)
			exec_kill(r);
		else
			exec_credit(r);
		req_free(r);
		return;
	}
	if (r->type == T_EXEC) {
		struct exec *e = exec_register(r);
		if (e)
			run_detached(exec_thread, e);
		else
			req_free(r);
		return;
	}
	handler_fn fn = handler_for(r->type);
	struct job *j = fn ? malloc(sizeof *j) : NULL;
	if (!j) {
		if (fn)
			send_error(r, ENOMEM, "out of memory");
		else
			send_error(r, EINVAL, "unknown request type %u", r->type);
		req_free(r);
		return;
	}
	j->fn = fn;
	j->r = r;
	run_detached(job_main, j);
}

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--relay"))
		return relay_main(argv[2]);
	g_start_ms = now_ms();
	parse_args(argc, argv);
	setup_process();
	pthread_attr_init(&thread_attr);
	pthread_attr_setdetachstate(&thread_attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&thread_attr, 1u << 20);
	reaper_start();
	runtime_init(g_opts.runtime_config);
	chan_open();
	for (;;)
		dispatch(chan_read_frame());
}
