/* `forkd-agent --relay PORT`: one TCP connection to the guest's own loopback
 * port, its bytes on stdout and stdin's bytes sent to it. The host runs this
 * through EXEC to reach a server inside the guest (a browser's CDP endpoint)
 * without giving the guest any network: exec's output credit holds the
 * server back when the host reads slowly, and a full socket holds stdin.
 * stdin's end half-closes the connection; the server's end ends the relay.
 * Exit status: 0 after a clean close, 2 when nothing listens on the port,
 * 1 on any other failure (with a line on stderr). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent.h"

static int connect_loopback(unsigned port)
{
	struct sockaddr_in v4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct sockaddr_in6 v6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
	v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	v6.sin6_addr = in6addr_loopback;
	const struct sockaddr *addrs[2] = {(const struct sockaddr *)&v4, (const struct sockaddr *)&v6};
	const socklen_t lens[2] = {sizeof v4, sizeof v6};
	int err = ECONNREFUSED;
	for (int i = 0; i < 2; i++) {
		int fd = socket(addrs[i]->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			err = errno;
			continue;
		}
		if (connect(fd, addrs[i], lens[i]) == 0)
			return fd;
		err = errno;
		close(fd);
	}
	errno = err;
	return -1;
}

int relay_main(const char *port_text)
{
	char *end;
	unsigned long port = strtoul(port_text, &end, 10);
	if (!*port_text || *end || port < 1 || port > 65535) {
		fprintf(stderr, "forkd-agent: --relay needs a port from 1 to 65535, got %s\n", port_text);
		return 1;
	}
	int sock = connect_loopback((unsigned)port);
	if (sock < 0) {
		fprintf(stderr, "forkd-agent: connect to port %lu: %s\n", port, strerror(errno));
		return errno == ECONNREFUSED ? 2 : 1;
	}
	char buf[64 * 1024];
	int stdin_open = 1;
	for (;;) {
		struct pollfd fds[2] = {{sock, POLLIN, 0}, {0, (short)(stdin_open ? POLLIN : 0), 0}};
		if (poll(fds, stdin_open ? 2 : 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		if (fds[0].revents) {
			ssize_t k = read(sock, buf, sizeof buf);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0)
				return k == 0 ? 0 : 1;
			if (write_full(1, buf, (size_t)k))
				return 1;
		}
		if (stdin_open && fds[1].revents) {
			ssize_t k = read(0, buf, sizeof buf);
			if (k < 0 && errno == EINTR)
				continue;
			if (k <= 0) {
				stdin_open = 0;
				shutdown(sock, SHUT_WR);
			} else if (write_full(sock, buf, (size_t)k)) {
				return 1;
			}
		}
	}
}
