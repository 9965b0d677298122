/* binds.c: bind, listen, getsockname and accept4, for tests/tests/supervised.rs (issue 12,
 * BIND under the supervisor). Statically linked, so libsocks.so never sees it; run under
 * socks-supervise.
 *
 *   ftp IP FILE          an active-mode FTP download from IP:21 as ftp does it: anonymous
 *                        login, TYPE I, a data socket bound to the control connection's own
 *                        address with port 0, listen, getsockname, PORT with that address,
 *                        RETR FILE, accept4(SOCK_CLOEXEC) (called from a second thread before
 *                        RETR is sent, so that it waits); the file's bytes go to stdout, and
 *                        stderr gets `port=ADDR:PORT peer=ADDR:PORT cloexec=0|1 nonblock=0|1`
 *   ftp IP FILE HOW      the same, with a SIGUSR1 sent to the accepting thread while it waits
 *                        (before RETR), its handler installed with SA_RESTART (HOW `restart`:
 *                        the accept goes on and the download completes) or without (HOW
 *                        `interrupt`: accept4 fails, `accept4=EINTR` on stderr, exit status 3);
 *                        stderr gets `handled=0|1`: whether the handler had run within 5 s;
 *                        HOW `timeout`: no signal, SO_RCVTIMEO of 1 s on the data socket and
 *                        RETR never sent: accept4 fails, `accept4=EAGAIN`, exit status 4
 *   local IP PORT LPORT  a TCP connection to IP:PORT first (so the process has a proxied
 *                        connection), then three listening sockets: bound to 0.0.0.0:LPORT,
 *                        to 127.0.0.1 port 0, and to 0.0.0.0 port 0; prints `specific=`,
 *                        `loopback=` and `wildcard=` with getsockname's answer for each, and
 *                        for the first two `..._accept=ok` after a connection to it over
 *                        loopback was accepted; then a socket bound to 0.0.0.0 port 0 and
 *                        connected to IP:PORT after all, which must echo: `rebound=TEXT`
 *
 * Built by the test with `cc -static -pthread binds.c`. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what) {
    fprintf(stderr, "binds: %s: %s\n", what, strerror(errno));
    exit(1);
}

static struct sockaddr_in address(const char *ip, int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        fprintf(stderr, "binds: bad address %s\n", ip);
        exit(2);
    }
    return a;
}

static const char *shown(const struct sockaddr_in *a) {
    static char buf[4][64];
    static int next;
    char *out = buf[next++ % 4];
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
    snprintf(out, 64, "%s:%d", ip, ntohs(a->sin_port));
    return out;
}

static int connected(const char *ip, int port) {
    struct sockaddr_in a = address(ip, port);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) die("socket");
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) die("connect");
    return s;
}

/* Reads one FTP reply (the last line starts with three digits and a space); returns its
 * code. */
static int reply(int ctrl) {
    char line[1024];
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t got = read(ctrl, &c, 1);
        if (got <= 0) die("read reply");
        if (n < sizeof line - 1) line[n++] = c;
        if (c != '\n') continue;
        line[n] = 0;
        fprintf(stderr, "< %s", line);
        if (n >= 4 && line[3] == ' ') return atoi(line);
        n = 0;
    }
}

static int command(int ctrl, const char *text) {
    char buf[256];
    int len = snprintf(buf, sizeof buf, "%s\r\n", text);
    fprintf(stderr, "> %s\n", text);
    if (write(ctrl, buf, (size_t)len) != len) die("write command");
    return reply(ctrl);
}

struct accepting {
    int data, conn, err;
    struct sockaddr_in peer;
    socklen_t len;
};

static void *accept_thread(void *arg) {
    struct accepting *acc = arg;
    acc->conn = accept4(acc->data, (struct sockaddr *)&acc->peer, &acc->len, SOCK_CLOEXEC);
    acc->err = errno;
    return NULL;
}

static volatile sig_atomic_t handled;

static void on_signal(int sig) {
    (void)sig;
    handled = 1;
}

/* `how`: NULL, "restart" or "interrupt" (see the header). */
static int ftp(const char *ip, const char *file, const char *how) {
    int ctrl = connected(ip, 21);
    if (reply(ctrl) != 220) return 1;
    if (command(ctrl, "USER anonymous") / 100 == 5) return 1;
    command(ctrl, "PASS e2e@inside.test");
    if (command(ctrl, "TYPE I") != 200) return 1;
    struct sockaddr_in local;
    socklen_t len = sizeof local;
    if (getsockname(ctrl, (struct sockaddr *)&local, &len) < 0) die("getsockname ctrl");
    local.sin_port = 0;
    int data = socket(AF_INET, SOCK_STREAM, 0);
    if (data < 0) die("socket");
    if (bind(data, (struct sockaddr *)&local, sizeof local) < 0) die("bind");
    if (listen(data, 1) < 0) die("listen");
    struct sockaddr_in port;
    len = sizeof port;
    if (getsockname(data, (struct sockaddr *)&port, &len) < 0) die("getsockname data");
    unsigned char *ip4 = (unsigned char *)&port.sin_addr;
    unsigned p = ntohs(port.sin_port);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "PORT %u,%u,%u,%u,%u,%u", ip4[0], ip4[1], ip4[2], ip4[3], p >> 8,
             p & 255);
    if (command(ctrl, cmd) != 200) return 1;
    if (how && strcmp(how, "timeout") == 0) {
        /* SO_RCVTIMEO bounds a blocking accept: EAGAIN when it expires, as the kernel's. */
        struct timeval tv = {.tv_sec = 1};
        if (setsockopt(data, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) < 0) die("SO_RCVTIMEO");
        struct sockaddr_in peer;
        socklen_t peer_len = sizeof peer;
        int conn = accept4(data, (struct sockaddr *)&peer, &peer_len, SOCK_CLOEXEC);
        if (conn < 0 && errno == EAGAIN) {
            fprintf(stderr, "accept4=EAGAIN\n");
            command(ctrl, "QUIT");
            return 4;
        }
        fprintf(stderr, "accept4 gave %d (%s)\n", conn, strerror(errno));
        return 1;
    }
    /* accept4 first, in another thread, so that it blocks until the connection comes. */
    struct accepting acc = {.data = data};
    acc.len = sizeof acc.peer;
    pthread_t thread;
    if (pthread_create(&thread, NULL, accept_thread, &acc) != 0) die("pthread_create");
    usleep(300000);
    if (how) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = strcmp(how, "restart") == 0 ? SA_RESTART : 0;
        if (sigaction(SIGUSR1, &sa, NULL) < 0) die("sigaction");
        if (pthread_kill(thread, SIGUSR1) != 0) die("pthread_kill");
        /* The handler runs within a moment (5 s on a loaded machine at most), not when the
         * connection comes. */
        for (int waited = 0; !handled && waited < 500; waited++) usleep(10000);
        fprintf(stderr, "handled=%d\n", (int)handled);
        if (strcmp(how, "interrupt") == 0) {
            pthread_join(thread, NULL);
            if (acc.conn < 0 && acc.err == EINTR) {
                fprintf(stderr, "accept4=EINTR\n");
                command(ctrl, "QUIT");
                return 3;
            }
            fprintf(stderr, "accept4 gave %d (%s)\n", acc.conn, strerror(acc.err));
            return 1;
        }
    }
    snprintf(cmd, sizeof cmd, "RETR %s", file);
    if (command(ctrl, cmd) / 100 != 1) return 1;
    pthread_join(thread, NULL);
    if (acc.conn < 0) {
        errno = acc.err;
        die("accept4");
    }
    int conn = acc.conn;
    struct sockaddr_in peer = acc.peer;
    int cloexec = (fcntl(conn, F_GETFD) & FD_CLOEXEC) != 0;
    int nonblock = (fcntl(conn, F_GETFL) & O_NONBLOCK) != 0;
    close(data);
    char buf[65536];
    for (;;) {
        ssize_t n = read(conn, buf, sizeof buf);
        if (n < 0) die("read data");
        if (n == 0) break;
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) die("write stdout");
    }
    fflush(stdout);
    close(conn);
    int done = reply(ctrl);
    command(ctrl, "QUIT");
    fprintf(stderr, "port=%s peer=%s cloexec=%d nonblock=%d\n", shown(&port), shown(&peer),
            cloexec, nonblock);
    return done == 226 ? 0 : 1;
}

/* A listening socket bound to ip:port; prints NAME=getsockname, and with `self` connects to
 * it over loopback and accepts. */
static void listener(const char *name, const char *ip, int port, int self) {
    struct sockaddr_in a = address(ip, port);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) die("socket");
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(s, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(s, 1) < 0) die("listen");
    struct sockaddr_in got;
    socklen_t len = sizeof got;
    if (getsockname(s, (struct sockaddr *)&got, &len) < 0) die("getsockname");
    printf("%s=%s\n", name, shown(&got));
    if (!self) return;
    int c = connected("127.0.0.1", ntohs(got.sin_port));
    int in = accept4(s, NULL, NULL, SOCK_CLOEXEC);
    if (in < 0) die("accept4");
    printf("%s_accept=ok\n", name);
    close(in);
    close(c);
    close(s);
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "ftp") == 0) return ftp(argv[2], argv[3], NULL);
    if (argc == 5 && strcmp(argv[1], "ftp") == 0) return ftp(argv[2], argv[3], argv[4]);
    if (argc == 5 && strcmp(argv[1], "local") == 0) {
        int c = connected(argv[2], atoi(argv[3]));
        listener("specific", "0.0.0.0", atoi(argv[4]), 1);
        listener("loopback", "127.0.0.1", 0, 1);
        listener("wildcard", "0.0.0.0", 0, 0);
        /* Bound to its own end, port 0, then connected (as `nc -s` or a Go Dialer with a
         * LocalAddr does): an echo round trip. */
        struct sockaddr_in any = address("0.0.0.0", 0), dst = address(argv[2], atoi(argv[3]));
        int r = socket(AF_INET, SOCK_STREAM, 0);
        if (r < 0) die("socket");
        if (bind(r, (struct sockaddr *)&any, sizeof any) < 0) die("bind before connect");
        if (connect(r, (struct sockaddr *)&dst, sizeof dst) < 0) die("connect after bind");
        if (write(r, "rebound", 7) != 7) die("write");
        shutdown(r, SHUT_WR);
        char back[64];
        size_t got = 0;
        for (ssize_t n; got < sizeof back - 1 && (n = read(r, back + got, sizeof back - 1 - got)) > 0;)
            got += (size_t)n;
        back[got] = 0;
        printf("rebound=%s\n", back);
        close(r);
        close(c);
        return 0;
    }
    fprintf(stderr, "usage: binds ftp IP FILE | binds local IP PORT LPORT\n");
    return 2;
}
