/* Shared declarations for forkd-agent: the wire constants of
 * docs/agent-protocol.md, the request record each worker thread owns, and the
 * entry points of its files:
 *   main.c     options, process setup, the reader loop (one thread per
 *              request), shutdown, logging and the clock helper
 *   chan.c     the host channel: framing over the virtio-serial port or a
 *              --listen socket, connection generations, OK/ERROR replies
 *   tlv.c      request payload fields, parsed before any work starts
 *   json.c     the JSON writer for response heads (jbuf) and the reader of
 *              the runtime config
 *   reaper.c   the one waitpid(-1) thread, handing statuses to spawners
 *   exec.c     EXEC, STDIN, KILL, CREDIT: sessions, streamed output, windows
 *   files.c    FILE_READ, FILE_WRITE, FILE_LIST, FILE_STAT, FILE_REMOVE, MKDIR
 *   runtime.c  EVAL on the warm language runtime, over two pipes
 *   hygiene.c  PING and HYGIENE: clock, entropy and VARY after a restore
 * Every fd the agent opens is O_CLOEXEC so that children only ever
 * hold the pipes meant for them (EOF detection depends on it). */
#ifndef FORKD_AGENT_H
#define FORKD_AGENT_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AGENT_VERSION "0.1.0"
#define PROTOCOL_VERSION 2
#define MAX_FRAME (16u << 20)          /* length field limit */
#define FRAME_OVERHEAD 9u              /* id + type + head_len */
#define CHUNK_MAX (64u << 10)          /* exec output per frame */
#define MAX_BODY (MAX_FRAME - 64u * 1024u) /* room left for the JSON head */
#define DEFAULT_PORT "/dev/virtio-ports/forkd.agent"
#define DEFAULT_RUNTIME_CONFIG "/etc/forkd/runtime.json"
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

enum req_type {
	T_PING = 1, T_HYGIENE, T_EXEC, T_STDIN, T_KILL, T_EVAL, T_FILE_READ,
	T_FILE_WRITE, T_FILE_LIST, T_FILE_STAT, T_FILE_REMOVE, T_MKDIR, T_CREDIT,
};
enum resp_type { RS_OK = 128, RS_ERROR, RS_STDOUT, RS_STDERR, RS_EXIT };
enum field_key {
	F_ARG = 1, F_SHELL, F_ENV, F_CWD, F_STDIN, F_TIMEOUT_MS, F_CODE, F_PATH,
	F_DATA, F_MODE, F_APPEND, F_PARENTS, F_RECURSIVE, F_SIGNAL, F_TIME_NS,
	F_ENTROPY, F_VARY, F_STDIN_OPEN, F_OFFSET, F_LENGTH, F_WINDOW, F_TARGET,
};

struct field {
	uint8_t key;
	uint32_t len;
	const uint8_t *val;
};

/* One request frame; owned by whichever thread handles it. `gen` is the
 * connection generation it arrived on: replies to an older generation are
 * dropped because the host that asked is gone. */
struct req {
	uint32_t id;
	uint8_t type;
	uint64_t gen;
	uint8_t *payload;
	uint32_t len;
	struct field *fields;
	size_t nfields;
};

struct options {
	const char *port;
	const char *listen;
	const char *runtime_config;
	int init;     /* PID 1 duties: reap orphans, may set the clock */
	int no_clock; /* never touch CLOCK_REALTIME */
};
extern struct options g_opts;
extern uint64_t g_start_ms;
/* Set by HYGIENE: the next EVAL asks the runtime to reseed its generators. */
extern int g_runtime_reseed;

/* json.c: growable JSON text (jbuf). Allocation failure is sticky and checked once. */
struct jbuf {
	char *p;
	size_t len, cap;
	int oom;
};
void jb_raw(struct jbuf *b, const char *s, size_t n);
void jb_puts(struct jbuf *b, const char *s);
void jb_fmt(struct jbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void jb_str(struct jbuf *b, const char *s); /* quoted; NULL -> null */
void jb_strn(struct jbuf *b, const char *s, size_t n);
void jb_free(struct jbuf *b);

/* json.c: just enough JSON to read the runtime config. */
int rtconfig_parse(const char *text, char **kind, char ***argv, char *err, size_t errlen);

/* tlv.c: request fields. */
int tlv_parse(struct req *r);
const struct field *req_field(const struct req *r, uint8_t key);
char *req_str(const struct req *r, uint8_t key);          /* malloc'd or NULL */
int req_u64(const struct req *r, uint8_t key, uint64_t *out); /* 1 present, 0 absent, -1 bad */
int req_flag(const struct req *r, uint8_t key);
void req_free(struct req *r);

/* chan.c: the host channel (virtio port or listening socket). */
void chan_open(void);
struct req *chan_read_frame(void);
void chan_send(uint32_t id, uint64_t gen, uint8_t type, const char *head, size_t head_len,
	       const void *body, size_t body_len);
void send_ok(const struct req *r, const struct jbuf *head, const void *body, size_t body_len);
/* OK with an empty head ({}). */
void send_ok_empty(const struct req *r);
/* exec.c: in a forked child before execve, default signal dispositions, nothing blocked. */
void reset_signals(void);
void send_error(const struct req *r, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void send_errno(const struct req *r, int err, const char *what, const char *path);

/* reaper.c: the only caller of waitpid; hands statuses to whoever spawned. */
struct child {
	pid_t pid;
	int status;
	int done;
	int efd; /* eventfd, readable once done */
	struct child *next;
};
void reaper_start(void);
struct child *child_new(void);
void reap_lock(void);
void reap_unlock(void);
void child_add_locked(struct child *c, pid_t pid);
int child_done(struct child *c, int *status);
void child_wait(struct child *c, int *status);
void child_free(struct child *c);

/* exec.c */
struct exec;
struct exec *exec_register(struct req *r);
void *exec_thread(void *arg);
void exec_stdin(struct req *r);
void exec_kill(struct req *r);
void exec_credit(struct req *r);
int resolve_cmd(const char *cmd, const char *path_env, char *out, size_t outlen);

/* files.c */
void handle_file_read(struct req *r);
void handle_file_write(struct req *r);
void handle_file_list(struct req *r);
void handle_file_stat(struct req *r);
void handle_file_remove(struct req *r);
void handle_mkdir(struct req *r);

/* runtime.c */
void runtime_init(const char *config_path);
void runtime_status_json(struct jbuf *b);
void handle_eval(struct req *r);

/* hygiene.c */
void handle_ping(struct req *r);
void handle_hygiene(struct req *r);
char *vary_dup(void); /* current VARY value or NULL */
/* The variant's ENV as NUL-ended `K=V` strings back to back (count in *count), or NULL. */
char *vary_env_dup(size_t *count);

/* main.c: SIGTERM outside the VM; leaves no process or socket behind
 * (exec_kill_all is in exec.c, runtime_kill in runtime.c). */
void agent_shutdown(void) __attribute__((noreturn));
void exec_kill_all(void);
/* runtime.c: writes all of buf to a blocking fd; -1 on error or EOF. */
int write_full(int fd, const void *buf, size_t n);
/* relay.c: `forkd-agent --relay PORT`, run by the host through EXEC with
 * this as its first argument, which names the agent's own binary. */
#define AGENT_SELF "@forkd-agent"
int relay_main(const char *port_text);
void runtime_kill(void);

/* main.c */
uint64_t now_ms(void);
void logmsg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
