/* The host channel: framing over either the virtio-serial port (in a VM) or a
 * listening unix socket (--listen, for host tests).
 *
 * The port outlives every host: a snapshot freezes the agent in poll(), and a
 * restored child gets a brand-new host socket. While no host is attached the
 * port reports POLLHUP and read() returns 0, so the reader waits and retries
 * instead of exiting. Each (re)connection bumps `gen`; replies tagged with an
 * older generation are dropped because whoever asked is gone and the new host
 * must never see ids it did not send. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "agent.h"

static struct {
	int listen_mode;
	int lfd;
	int fd;
	int host_present; /* port mode: last poll saw no POLLHUP */
	uint64_t gen;
	pthread_mutex_t wmu; /* whole frames only; guards fd and gen */
} ch = {.lfd = -1, .fd = -1, .gen = 1, .wmu = PTHREAD_MUTEX_INITIALIZER};

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) && errno == EINTR) {
	}
}

/* Without udev (a busybox initramfs) there is no /dev/virtio-ports symlink;
 * sysfs still names each port, so find ours there. */
static int find_port_by_name(const char *want, char *out, size_t outlen)
{
	DIR *d = opendir("/sys/class/virtio-ports");
	if (!d)
		return -1;
	struct dirent *e;
	int found = -1;
	while ((e = readdir(d)) && found) {
		if (e->d_name[0] == '.')
			continue;
		char p[512], name[128] = "";
		snprintf(p, sizeof p, "/sys/class/virtio-ports/%s/name", e->d_name);
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t n = read(fd, name, sizeof name - 1);
		close(fd);
		if (n <= 0)
			continue;
		name[n] = 0;
		name[strcspn(name, "\n")] = 0;
		if (strcmp(name, want) == 0) {
			snprintf(out, outlen, "/dev/%s", e->d_name);
			found = 0;
		}
	}
	closedir(d);
	return found;
}

static void open_port(void)
{
	int warned = 0;
	for (;;) {
		const char *path = g_opts.port;
		char alt[300];
		if (access(path, F_OK) && strncmp(path, "/dev/virtio-ports/", 18) == 0 &&
		    find_port_by_name(path + 18, alt, sizeof alt) == 0)
			path = alt;
		ch.fd = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
		if (ch.fd >= 0) {
			logmsg("serving on %s", path);
			return;
		}
		if (!warned++)
			logmsg("waiting for %s: %s", g_opts.port, strerror(errno));
		sleep_ms(50);
	}
}

static void open_listen(void)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(g_opts.listen) >= sizeof sa.sun_path) {
		logmsg("socket path too long: %s", g_opts.listen);
		exit(2);
	}
	strcpy(sa.sun_path, g_opts.listen);
	ch.lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	unlink(g_opts.listen);
	if (ch.lfd < 0 || bind(ch.lfd, (struct sockaddr *)&sa, sizeof sa) || listen(ch.lfd, 4)) {
		logmsg("listen %s: %s", g_opts.listen, strerror(errno));
		exit(2);
	}
	logmsg("listening on %s", g_opts.listen);
}

void chan_open(void)
{
	ch.listen_mode = g_opts.listen != NULL;
	if (ch.listen_mode)
		open_listen();
	else
		open_port();
}

static void disconnect(void)
{
	pthread_mutex_lock(&ch.wmu);
	ch.gen++;
	if (ch.listen_mode) {
		close(ch.fd);
		ch.fd = -1;
	}
	ch.host_present = 0;
	pthread_mutex_unlock(&ch.wmu);
}

/* Blocks until a host is attached and (port mode) has sent something. */
static void wait_host(void)
{
	if (ch.listen_mode) {
		while (ch.fd < 0) {
			int fd = accept4(ch.lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0) {
				if (errno != EINTR)
					sleep_ms(5);
				continue;
			}
			pthread_mutex_lock(&ch.wmu);
			ch.fd = fd;
			pthread_mutex_unlock(&ch.wmu);
		}
		return;
	}
	/*
	 * With no host attached a virtio port polls and reads as "hung up" at
	 * once, so there is nothing to block on: back off from 1 ms to 100 ms.
	 * Under TCG every guest wake-up costs host CPU, and a held sandbox with
	 * nobody attached should cost next to none.
	 */
	int backoff_ms = 1;
	for (;;) {
		struct pollfd p = {ch.fd, POLLIN, 0};
		if (poll(&p, 1, 1000) < 0)
			continue;
		/* A port with no host reports POLLIN too (reads return 0 at once),
		 * so the hang-up must be checked first or this loop spins. */
		if (p.revents & (POLLHUP | POLLERR)) {
			/*
			 * Not disconnect(): a virtio port's open/close events travel on
			 * the control queue, unordered with data. After a restore the
			 * parent's stale "host closed" can be processed after the new
			 * host's first request was read, and bumping the generation then
			 * would silently drop that request's reply. A port is never
			 * really reconnected mid-stream, so its generation only changes
			 * on resync (garbage on the stream).
			 */
			ch.host_present = 0;
			sleep_ms(backoff_ms);
			if (backoff_ms < 100)
				backoff_ms *= 2;
		} else if (p.revents & POLLIN) {
			return;
		} else {
			ch.host_present = 1;
		}
	}
}

/* Reads exactly n bytes; -1 means the host went away mid-way. */
static int read_full(void *buf, size_t n)
{
	uint8_t *p = buf;
	while (n) {
		if (!ch.listen_mode) {
			struct pollfd pf = {ch.fd, POLLIN, 0};
			if (poll(&pf, 1, -1) < 0)
				continue;
			if (!(pf.revents & POLLIN))
				return -1;
		}
		ssize_t k = read(ch.fd, p, n);
		if (k > 0) {
			p += k;
			n -= (size_t)k;
		} else if (k == 0) {
			return -1;
		} else if (errno != EINTR && errno != EAGAIN) {
			return -1;
		}
	}
	ch.host_present = 1;
	return 0;
}

/* The byte stream can no longer be trusted to be at a frame boundary. A
 * socket is simply dropped; the port cannot be, so discard input until the
 * host has been quiet for a moment. */
static void resync(void)
{
	if (ch.listen_mode) {
		disconnect();
		return;
	}
	uint8_t scratch[4096];
	for (;;) {
		struct pollfd p = {ch.fd, POLLIN, 0};
		int n = poll(&p, 1, 100);
		if (n == 0 || !(p.revents & POLLIN))
			break;
		if (read(ch.fd, scratch, sizeof scratch) <= 0)
			break;
	}
	disconnect();
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
	p[2] = (uint8_t)(v >> 16);
	p[3] = (uint8_t)(v >> 24);
}

static void send_raw_error(uint32_t id, uint64_t gen, int err, const char *msg)
{
	struct req r = {.id = id, .gen = gen};
	send_error(&r, err, "%s", msg);
}

struct req *chan_read_frame(void)
{
	for (;;) {
		wait_host();
		uint64_t gen = ch.gen;
		uint8_t hdr[9];
		if (read_full(hdr, 4)) {
			disconnect();
			continue;
		}
		uint32_t len = le32(hdr);
		if (len < 5) {
			send_raw_error(0, gen, EPROTO, "frame shorter than its header");
			resync();
			continue;
		}
		if (read_full(hdr + 4, 5)) {
			disconnect();
			continue;
		}
		uint32_t id = le32(hdr + 4);
		if (len > MAX_FRAME) {
			send_raw_error(id, gen, EMSGSIZE, "frame longer than 16 MiB");
			resync();
			continue;
		}
		struct req *r = calloc(1, sizeof *r);
		uint32_t plen = len - 5;
		uint8_t *payload = malloc(plen ? plen : 1);
		if (!r || !payload) {
			free(r);
			free(payload);
			send_raw_error(id, gen, ENOMEM, "out of memory for frame");
			resync();
			continue;
		}
		if (read_full(payload, plen)) {
			free(r);
			free(payload);
			disconnect();
			continue;
		}
		r->id = id;
		r->type = hdr[8];
		r->gen = gen;
		r->payload = payload;
		r->len = plen;
		return r;
	}
}

/* How long a reply waits for a host that seems gone. A port's open/close
 * events travel on the control queue, unordered with data: a restored child
 * can see a stale "host closed" right after it read the new host's request,
 * with "host open" close behind. Dropping the reply then would leave that
 * host waiting for an answer that never comes. */
#define HOST_GONE_GRACE_MS 2000

/* Waits for the port to take more bytes; 0 = go on, -1 = host gone. */
static int wait_writable(uint64_t *gone_since_ms)
{
	struct pollfd p = {ch.fd, POLLOUT, 0};
	if (poll(&p, 1, 200) < 0)
		return 0;
	if ((p.revents & (POLLHUP | POLLERR)) && !(p.revents & POLLOUT)) {
		if (ch.listen_mode)
			return -1;
		uint64_t now = now_ms();
		if (!*gone_since_ms)
			*gone_since_ms = now;
		if (now - *gone_since_ms >= HOST_GONE_GRACE_MS)
			return -1;
		sleep_ms(5);
		return 0;
	}
	*gone_since_ms = 0;
	return 0;
}

void chan_send(uint32_t id, uint64_t gen, uint8_t type, const char *head, size_t head_len,
	       const void *body, size_t body_len)
{
	if (FRAME_OVERHEAD + head_len + body_len > MAX_FRAME) {
		send_raw_error(id, gen, EMSGSIZE, "response larger than 16 MiB");
		return;
	}
	uint8_t hdr[13];
	put32(hdr, (uint32_t)(FRAME_OVERHEAD + head_len + body_len));
	put32(hdr + 4, id);
	hdr[8] = type;
	put32(hdr + 9, (uint32_t)head_len);
	struct iovec iov[3] = {
		{hdr, sizeof hdr},
		{(void *)head, head_len},
		{(void *)body, body_len},
	};
	struct iovec *v = iov;
	int cnt = body_len ? 3 : 2;

	uint64_t gone_since_ms = 0;
	pthread_mutex_lock(&ch.wmu);
	if (gen != ch.gen || ch.fd < 0)
		goto out;
	while (cnt > 0) {
		ssize_t n = writev(ch.fd, v, cnt);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN && wait_writable(&gone_since_ms) == 0)
				continue;
			break; /* host gone: the reader notices and reconnects */
		}
		while (cnt > 0 && (size_t)n >= v->iov_len) {
			n -= (ssize_t)v->iov_len;
			v++;
			cnt--;
		}
		if (cnt > 0) {
			v->iov_base = (uint8_t *)v->iov_base + n;
			v->iov_len -= (size_t)n;
		}
	}
out:
	pthread_mutex_unlock(&ch.wmu);
}

void send_ok_empty(const struct req *r)
{
	struct jbuf empty = {0};
	send_ok(r, &empty, NULL, 0);
}

void send_ok(const struct req *r, const struct jbuf *head, const void *body, size_t body_len)
{
	if (head->oom) {
		send_error(r, ENOMEM, "out of memory building response");
		return;
	}
	chan_send(r->id, r->gen, RS_OK, head->p ? head->p : "{}", head->p ? head->len : 2, body, body_len);
}

void send_error(const struct req *r, int err, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	struct jbuf b = {0};
	const char *code = err ? strerrorname_np(err) : NULL;
	jb_fmt(&b, "{\"errno\":%d,\"code\":", err);
	jb_str(&b, code);
	jb_puts(&b, ",\"message\":");
	jb_str(&b, msg);
	jb_puts(&b, "}");
	if (!b.oom)
		chan_send(r->id, r->gen, RS_ERROR, b.p, b.len, NULL, 0);
	jb_free(&b);
}

void send_errno(const struct req *r, int err, const char *what, const char *path)
{
	if (path)
		send_error(r, err, "%s %s: %s", what, path, strerrordesc_np(err));
	else
		send_error(r, err, "%s: %s", what, strerrordesc_np(err));
}
