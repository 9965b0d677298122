/* ownresolver: a program with its own DNS client, for tests/tests/own_resolvers.rs. It sends
 * DNS queries to SERVER:53 itself, in the socket patterns real resolvers use, and prints one
 * line per pattern: "PATTERN: ADDRESS from SOURCE" (the A record it got and where the answer
 * came from), or "PATTERN: FAIL why". Not here: anything the library does (this program knows
 * nothing of it).
 *
 * usage: ownresolver SERVER-IPV4 NAME PATTERN...
 * patterns: connect (connect, getpeername, send, poll, recvfrom), sendto (unconnected sendto
 * and recvfrom), unspec (sendto, then connect AF_UNSPEC, which frees the port, then sendto
 * again), signalnested (a timer's handler sends a query while the program waits in recv
 * inside the library: the sendto's result), mmsg (sendmmsg of an A and an MX query, recvmmsg of both), epoll
 * (non-blocking, EAGAIN before the answer, epoll_wait), thirdparty (a datagram from another
 * socket to a connected one is never read; the query sent with writev), v6 (an IPv6 socket connected to the IPv4-mapped
 * server), tcp and tcp6 (DNS over TCP on an IPv4 or IPv6 socket: non-blocking connect
 * completed through epoll, getpeername, a query whose length and message go in separate
 * writes, a second one with writev on the same connection, each answer read as it comes;
 * "tcp: fds N -> M" counts /proc/self/fd before the socket and after its close), tcpfork (a
 * blocking TCP connection, then fork: the child asks on the inherited connection and on one
 * of its own, then the parent on both of its), tcpdup (a query on a dup of the connection,
 * the original closed, another on the dup, its getpeername), readv (after a forged answer
 * from a third party: readv, preadv2 at offset -1, and read/recv/recvfrom as a program built
 * with _FORTIFY_SOURCE calls them; the forged answer is never read), spurious (a forged
 * answer makes the socket readable: a non-blocking recv says EAGAIN, a blocking one waits for
 * the real answer, sent 300 ms later by a child on the same socket), reused (the socket
 * closed unseen by the library, a new one on its number reads a datagram from anyone), many (100 queries and answers
 * on one connected socket, for counting system calls). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *server_ip;
static const char *name;

/* A query for NAME of type QTYPE with id ID into BUF; its length. */
static int build_query(unsigned char *buf, unsigned short id, unsigned short qtype) {
    int at = 12;
    memset(buf, 0, 12);
    buf[0] = id >> 8;
    buf[1] = id & 0xff;
    buf[2] = 0x01; /* RD */
    buf[5] = 1;    /* QDCOUNT */
    const char *p = name;
    while (*p) {
        const char *dot = strchr(p, '.');
        int len = dot ? (int)(dot - p) : (int)strlen(p);
        buf[at++] = len;
        memcpy(buf + at, p, len);
        at += len;
        p += len + (dot ? 1 : 0);
    }
    buf[at++] = 0;
    buf[at++] = qtype >> 8;
    buf[at++] = qtype & 0xff;
    buf[at++] = 0;
    buf[at++] = 1;
    return at;
}

/* The first A record of answer MSG (LEN bytes) to query ID into OUT ("none" without one,
 * "rcode N" for an error); -1 when it is not an answer to ID. */
static int read_answer(const unsigned char *msg, int len, unsigned short id, char *out, size_t n) {
    if (len < 12 || ((msg[0] << 8) | msg[1]) != id || !(msg[2] & 0x80))
        return -1;
    int rcode = msg[3] & 0x0f, ancount = (msg[6] << 8) | msg[7], at = 12;
    if (rcode) {
        snprintf(out, n, "rcode %d", rcode);
        return 0;
    }
    while (at < len && msg[at]) at += msg[at] + 1;
    at += 5;
    for (int i = 0; i < ancount && at + 12 <= len; i++) {
        if ((msg[at] & 0xc0) == 0xc0) at += 2;
        else { while (at < len && msg[at]) at += msg[at] + 1; at++; }
        int type = (msg[at] << 8) | msg[at + 1], rdlen = (msg[at + 8] << 8) | msg[at + 9];
        at += 10;
        if (type == 1 && rdlen == 4 && at + 4 <= len) {
            inet_ntop(AF_INET, msg + at, out, n);
            return 0;
        }
        at += rdlen;
    }
    snprintf(out, n, "none");
    return 0;
}

static void show(const struct sockaddr_storage *ss, char *out, size_t n) {
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *s = (const void *)ss;
        inet_ntop(AF_INET, &s->sin_addr, ip, sizeof ip);
        port = ntohs(s->sin_port);
        snprintf(out, n, "%s:%d", ip, port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *s = (const void *)ss;
        inet_ntop(AF_INET6, &s->sin6_addr, ip, sizeof ip);
        port = ntohs(s->sin6_port);
        snprintf(out, n, "[%s]:%d", ip, port);
    } else {
        snprintf(out, n, "family %d", ss->ss_family);
    }
}

static struct sockaddr_in server4(void) {
    struct sockaddr_in s = {.sin_family = AF_INET, .sin_port = htons(53)};
    inet_pton(AF_INET, server_ip, &s.sin_addr);
    return s;
}

static int fail(const char *pattern, const char *why) {
    printf("%s: FAIL %s (errno %d %s)\n", pattern, why, errno, strerror(errno));
    return 1;
}

/* Waits up to 5 s for FD to be readable, then receives one answer to ID and prints it. */
static int receive(const char *pattern, int fd, unsigned short id) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1) return fail(pattern, "poll: no answer");
    unsigned char buf[1500];
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof from;
    int n = recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen);
    if (n < 0) return fail(pattern, "recvfrom");
    char addr[64], source[80];
    if (read_answer(buf, n, id, addr, sizeof addr) < 0) return fail(pattern, "not the answer");
    show(&from, source, sizeof source);
    printf("%s: %s from %s\n", pattern, addr, source);
    return 0;
}

static int pattern_connect(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in s = server4();
    if (connect(fd, (void *)&s, sizeof s) != 0) return fail("connect", "connect");
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    char shown[80];
    if (getpeername(fd, (void *)&peer, &len) != 0) return fail("connect", "getpeername");
    show(&peer, shown, sizeof shown);
    printf("connect: peer %s\n", shown);
    struct sockaddr_storage own;
    len = sizeof own;
    if (getsockname(fd, (void *)&own, &len) != 0) return fail("connect", "getsockname");
    show(&own, shown, sizeof shown);
    printf("connect: own %s\n", shown);
    unsigned char q[300];
    int qlen = build_query(q, 0x1111, 1);
    if (send(fd, q, qlen, 0) != qlen) return fail("connect", "send");
    int rc = receive("connect", fd, 0x1111);
    close(fd);
    return rc;
}

static int pattern_sendto(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in s = server4();
    unsigned char q[300];
    int qlen = build_query(q, 0x2222, 1);
    if (sendto(fd, q, qlen, 0, (void *)&s, sizeof s) != qlen) return fail("sendto", "sendto");
    int rc = receive("sendto", fd, 0x2222);
    close(fd);
    return rc;
}

/* An unconnected socket asks, is disconnected (connect AF_UNSPEC: a port the socket did not
   bind itself is freed), and asks again: the second answer must reach it too. */
static int pattern_unspec(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in s = server4();
    unsigned char q[300];
    int qlen = build_query(q, 0x2323, 1);
    if (sendto(fd, q, qlen, 0, (void *)&s, sizeof s) != qlen) return fail("unspec", "sendto");
    if (receive("unspec", fd, 0x2323) != 0) return 1;
    struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    if (connect(fd, &unspec, sizeof unspec) != 0) return fail("unspec", "connect AF_UNSPEC");
    qlen = build_query(q, 0x2424, 1);
    if (sendto(fd, q, qlen, 0, (void *)&s, sizeof s) != qlen) return fail("unspec", "sendto");
    int rc = receive("unspec", fd, 0x2424);
    close(fd);
    return rc;
}

/* A query sent and its answer read inside a signal handler (raised while the program, not
   the library, was running): answered as anywhere else. */
static volatile int signal_rc = -1;
static void on_signal(int sig) {
    (void)sig;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in s = server4();
    unsigned char q[300];
    int qlen = build_query(q, 0x5555, 1);
    if (sendto(fd, q, qlen, 0, (void *)&s, sizeof s) != qlen) {
        signal_rc = fail("signal", "sendto");
    } else {
        signal_rc = receive("signal", fd, 0x5555);
    }
    close(fd);
}

static int pattern_signal(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    if (sigaction(SIGUSR1, &sa, NULL) != 0) return fail("signal", "sigaction");
    raise(SIGUSR1);
    return signal_rc;
}

/* 100 queries on one connected socket, each answer read with recv: for counting the system
   calls a receive costs (strace -c). */
static int pattern_many(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in s = server4();
    if (connect(fd, (void *)&s, sizeof s) != 0) return fail("many", "connect");
    unsigned char q[300], buf[1500];
    char addr[64] = "";
    for (int i = 0; i < 100; i++) {
        int qlen = build_query(q, 0x7000 + i, 1);
        if (send(fd, q, qlen, 0) != qlen) return fail("many", "send");
        int n = recv(fd, buf, sizeof buf, 0);
        if (n < 0 || read_answer(buf, n, 0x7000 + i, addr, sizeof addr) < 0)
            return fail("many", "not the answer");
    }
    printf("many: %s (100 answers)\n", addr);
    close(fd);
    return 0;
}

/* A query sent from a signal handler that interrupted the library: a timer fires while the
   program waits in recv on its (virtually connected) DNS socket, which is inside the library's
   receive hook. The handler's sendto of a query cannot be read there (no heap): it must fail
   with EAGAIN, and nothing may be sent. */
static volatile int nested_sent = 0, nested_errno = 0;
static void on_timer(int sig) {
    (void)sig;
    int saved = errno;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in s = server4();
    unsigned char q[300];
    int qlen = build_query(q, 0x5656, 1);
    nested_sent = sendto(fd, q, qlen, 0, (void *)&s, sizeof s);
    nested_errno = errno;
    close(fd);
    errno = saved;
}

static int pattern_signalnested(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in s = server4();
    if (connect(fd, (void *)&s, sizeof s) != 0) return fail("signalnested", "connect");
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_timer; /* no SA_RESTART: the recv ends with EINTR */
    if (sigaction(SIGALRM, &sa, NULL) != 0) return fail("signalnested", "sigaction");
    struct timeval limit = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    unsigned char buf[1500];
    int n = -1, recv_errno = 0;
    /* Until the timer interrupts the recv itself (EINTR; a machine so slow that it fires
       before the recv began lets the recv time out instead, and the timer is set again). */
    for (int tries = 0; tries < 3 && recv_errno != EINTR; tries++) {
        struct itimerval timer = {.it_value = {.tv_usec = 200000}};
        setitimer(ITIMER_REAL, &timer, NULL);
        n = recv(fd, buf, sizeof buf, 0);
        recv_errno = errno;
        if (n >= 0) break;
    }
    signal(SIGALRM, SIG_DFL);
    if (n >= 0) return fail("signalnested", "recv read something");
    printf("signalnested: recv %s, the handler's sendto %d %s\n",
           recv_errno == EINTR ? "EINTR" : strerror(recv_errno), nested_sent,
           nested_sent < 0 ? (nested_errno == EAGAIN ? "EAGAIN" : strerror(nested_errno)) : "sent");
    close(fd);
    return 0;
}

static int pattern_mmsg(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in s = server4();
    unsigned char q[2][300];
    struct iovec iov[2];
    struct mmsghdr m[2];
    memset(m, 0, sizeof m);
    for (int i = 0; i < 2; i++) {
        iov[i].iov_base = q[i];
        iov[i].iov_len = build_query(q[i], 0x3330 + i, i == 0 ? 1 : 15);
        m[i].msg_hdr.msg_iov = &iov[i];
        m[i].msg_hdr.msg_iovlen = 1;
        m[i].msg_hdr.msg_name = &s;
        m[i].msg_hdr.msg_namelen = sizeof s;
    }
    if (sendmmsg(fd, m, 2, 0) != 2) return fail("mmsg", "sendmmsg");
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1) return fail("mmsg", "poll: no answer");
    usleep(100000);
    unsigned char r[2][1500];
    struct sockaddr_storage from[2];
    struct iovec riov[2];
    memset(m, 0, sizeof m);
    for (int i = 0; i < 2; i++) {
        riov[i].iov_base = r[i];
        riov[i].iov_len = sizeof r[i];
        m[i].msg_hdr.msg_iov = &riov[i];
        m[i].msg_hdr.msg_iovlen = 1;
        m[i].msg_hdr.msg_name = &from[i];
        m[i].msg_hdr.msg_namelen = sizeof from[i];
    }
    int got = recvmmsg(fd, m, 2, MSG_DONTWAIT, NULL);
    if (got != 2) return fail("mmsg", "recvmmsg: not two answers");
    for (int i = 0; i < 2; i++) {
        char addr[64], source[80];
        if (read_answer(r[i], m[i].msg_len, 0x3330 + i, addr, sizeof addr) < 0)
            return fail("mmsg", "not the answer");
        show(&from[i], source, sizeof source);
        printf("mmsg: %s %s from %s\n", i == 0 ? "A" : "MX", addr, source);
    }
    close(fd);
    return 0;
}

static int pattern_epoll(void) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in s = server4();
    if (connect(fd, (void *)&s, sizeof s) != 0) return fail("epoll", "connect");
    unsigned char buf[1500];
    if (recv(fd, buf, sizeof buf, 0) != -1 || errno != EAGAIN)
        return fail("epoll", "recv before the query must be EAGAIN");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    unsigned char q[300];
    int qlen = build_query(q, 0x4444, 1);
    if (write(fd, q, qlen) != qlen) return fail("epoll", "write");
    struct epoll_event out;
    if (epoll_wait(ep, &out, 1, 5000) != 1) return fail("epoll", "epoll_wait: no answer");
    int n = read(fd, buf, sizeof buf);
    char addr[64];
    if (n < 0 || read_answer(buf, n, 0x4444, addr, sizeof addr) < 0)
        return fail("epoll", "read: not the answer");
    printf("epoll: %s by read\n", addr);
    if (recv(fd, buf, sizeof buf, 0) != -1 || errno != EAGAIN)
        return fail("epoll", "recv after the answer must be EAGAIN");
    close(ep);
    close(fd);
    return 0;
}

static int pattern_thirdparty(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in s = server4();
    if (connect(fd, (void *)&s, sizeof s) != 0) return fail("thirdparty", "connect");
    struct sockaddr_in own;
    socklen_t len = sizeof own;
    getsockname(fd, (void *)&own, &len);
    own.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int other = socket(AF_INET, SOCK_DGRAM, 0);
    if (sendto(other, "intruder", 8, 0, (void *)&own, sizeof own) != 8)
        return fail("thirdparty", "the third party's sendto");
    usleep(100000);
    unsigned char q[300];
    int qlen = build_query(q, 0x5555, 1);
    /* In two pieces with writev: the header, then the question. */
    struct iovec two[2] = {{q, 12}, {q + 12, qlen - 12}};
    if (writev(fd, two, 2) != qlen) return fail("thirdparty", "writev");
    unsigned char buf[1500];
    int n = recv(fd, buf, sizeof buf, 0);
    char addr[64];
    if (n < 0 || read_answer(buf, n, 0x5555, addr, sizeof addr) < 0)
        return fail("thirdparty", "the first datagram read is not the answer");
    if (recv(fd, buf, sizeof buf, MSG_DONTWAIT) != -1 || errno != EAGAIN)
        return fail("thirdparty", "something else was left to read");
    printf("thirdparty: %s, the intruder never read\n", addr);
    close(other);
    close(fd);
    return 0;
}

/* A forged answer to query ID (an A record 6.6.6.6), sent to FD's own address (127.0.0.1 for
   a wildcard one) from another socket, as an attacker on the host would; waits until it has
   arrived. */
static int forge(const char *pattern, int fd, unsigned short id) {
    struct sockaddr_in own;
    socklen_t len = sizeof own;
    if (getsockname(fd, (void *)&own, &len) != 0) return fail(pattern, "getsockname");
    if (own.sin_addr.s_addr == htonl(INADDR_ANY)) own.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    unsigned char forged[320];
    int flen = build_query(forged, id, 1);
    static const unsigned char record[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 6, 6, 6, 6};
    forged[2] |= 0x80; /* QR: an answer */
    forged[7] = 1;     /* ANCOUNT */
    memcpy(forged + flen, record, sizeof record);
    flen += sizeof record;
    int other = socket(AF_INET, SOCK_DGRAM, 0);
    int sent = sendto(other, forged, flen, 0, (void *)&own, sizeof own);
    close(other);
    if (sent != flen) return fail(pattern, "the forger's sendto");
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 2000) != 1) return fail(pattern, "the forged answer never arrived");
    return 0;
}

/* After reading an answer: nothing else may be waiting (the forged one above all). */
static int nothing_left(const char *pattern, int fd) {
    unsigned char buf[1500];
    if (recv(fd, buf, sizeof buf, MSG_DONTWAIT) != -1 || errno != EAGAIN)
        return fail(pattern, "something else was left to read");
    return 0;
}

/* Prints PATTERN's answer to ID in BUF (N bytes, -1 for a failed read), from SOURCE if any. */
static int show_answer(const char *pattern, const unsigned char *buf, int n, unsigned short id,
                       const struct sockaddr_storage *source) {
    char addr[64], from[80];
    if (n < 0) return fail(pattern, "the read");
    if (read_answer(buf, n, id, addr, sizeof addr) < 0) return fail(pattern, "not the answer");
    if (!strcmp(addr, "6.6.6.6")) {
        printf("%s: FORGED answer read\n", pattern);
        return 1;
    }
    if (source) {
        show(source, from, sizeof from);
        printf("%s: %s from %s\n", pattern, addr, from);
    } else {
        printf("%s: %s\n", pattern, addr);
    }
    return 0;
}

/* Every way to read a datagram that the other patterns do not use, each after a forged answer
   from a third party has arrived on the connected socket: readv, preadv2 at the current
   position (offset -1, a readv with flags), and read, recv and recvfrom with a length the
   compiler cannot check, which a program built with _FORTIFY_SOURCE calls as __read_chk,
   __recv_chk and __recvfrom_chk. */
static int pattern_readv(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in s = server4();
    if (connect(fd, (void *)&s, sizeof s) != 0) return fail("readv", "connect");
    static const char *ways[] = {"readv", "preadv2", "read_chk", "recv_chk", "recvfrom_chk"};
    int failed = 0;
    for (int i = 0; i < 5; i++) {
        const char *way = ways[i];
        unsigned short id = 0x6100 + i;
        if (forge(way, fd, id) != 0) return 1;
        unsigned char q[300], buf[1500];
        int qlen = build_query(q, id, 1);
        if (send(fd, q, qlen, 0) != qlen) return fail(way, "send");
        volatile size_t room = sizeof buf; /* not a constant: the _chk variants */
        struct iovec two[2] = {{buf, 12}, {buf + 12, sizeof buf - 12}};
        struct sockaddr_storage from;
        socklen_t fromlen = sizeof from;
        int n, rc;
        switch (i) {
        case 0: n = readv(fd, two, 2); rc = show_answer(way, buf, n, id, NULL); break;
        case 1: n = preadv2(fd, two, 2, -1, 0); rc = show_answer(way, buf, n, id, NULL); break;
        case 2: n = read(fd, buf, room); rc = show_answer(way, buf, n, id, NULL); break;
        case 3: n = recv(fd, buf, room, 0); rc = show_answer(way, buf, n, id, NULL); break;
        default:
            n = recvfrom(fd, buf, room, 0, (void *)&from, &fromlen);
            rc = show_answer(way, buf, n, id, &from);
        }
        if (rc == 0) rc = nothing_left(way, fd);
        if (rc != 0) { /* the next way starts on an empty socket */
            failed = 1;
            while (recv(fd, buf, sizeof buf, MSG_DONTWAIT) >= 0) {}
        }
    }
    close(fd);
    return failed;
}

static long ms_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* A forged answer from a third party makes the connected socket readable for poll (the kernel
   does not know the socket is connected). A non-blocking receive then says EAGAIN (and poll
   has nothing more to report); a blocking one keeps waiting, here for the answer to a query a
   child process sends on the same socket 300 ms later. */
static int pattern_spurious(void) {
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in s = server4();
    if (connect(fd, (void *)&s, sizeof s) != 0) return fail("spurious", "connect");
    if (forge("spurious", fd, 0x7171) != 0) return 1;
    unsigned char q[300], buf[1500];
    int n = recv(fd, buf, sizeof buf, 0);
    if (n >= 0) return show_answer("spurious", buf, n, 0x7171, NULL) | 1;
    if (errno != EAGAIN) return fail("spurious", "non-blocking recv: not EAGAIN");
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 200) != 0) return fail("spurious", "still readable after the drop");
    int qlen = build_query(q, 0x7171, 1);
    if (send(fd, q, qlen, 0) != qlen) return fail("spurious", "send");
    if (poll(&p, 1, 2000) != 1) return fail("spurious", "poll: no answer");
    n = recv(fd, buf, sizeof buf, 0);
    printf("spurious: non-blocking EAGAIN, then\n");
    if (show_answer("spurious", buf, n, 0x7171, NULL) != 0) return 1;
    close(fd);

    fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (connect(fd, (void *)&s, sizeof s) != 0) return fail("spurious", "connect");
    struct timeval limit = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    if (forge("spurious", fd, 0x7272) != 0) return 1;
    qlen = build_query(q, 0x7272, 1);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        usleep(300000);
        _exit(send(fd, q, qlen, 0) == qlen ? 0 : 1);
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    n = recv(fd, buf, sizeof buf, 0);
    long waited = ms_since(&t0);
    int status = 1;
    waitpid(pid, &status, 0);
    if (n < 0) return fail("spurious", "blocking recv");
    printf("spurious: blocking waited %ld ms, then\n", waited);
    int rc = show_answer("spurious", buf, n, 0x7272, NULL);
    close(fd);
    return rc | !WIFEXITED(status) | WEXITSTATUS(status);
}

/* The DNS socket is closed where the library cannot see it (fclose of an fdopen'd stream closes
   the descriptor inside glibc), and a new UDP socket takes its number: the new socket is the
   program's own, so a datagram from anyone reaches it (the old socket's filter must not). */
static int pattern_reused(void) {
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in s = server4();
    if (connect(fd, (void *)&s, sizeof s) != 0) return fail("reused", "connect");
    fclose(fdopen(fd, "r+"));
    int again = socket(AF_INET, SOCK_DGRAM, 0);
    if (again != fd) return fail("reused", "the number was not reused");
    /* Bound and asked with raw system calls: no call of the library's sees the new socket
       before the receive. */
    struct sockaddr_in own = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof own;
    if (syscall(SYS_bind, again, &own, sizeof own) != 0) return fail("reused", "bind");
    syscall(SYS_getsockname, again, &own, &len);
    struct timeval limit = {.tv_sec = 2};
    setsockopt(again, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    int other = socket(AF_INET, SOCK_DGRAM, 0);
    if (sendto(other, "hello", 5, 0, (void *)&own, sizeof own) != 5)
        return fail("reused", "the other socket's sendto");
    char buf[16] = "";
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof from;
    int n = recvfrom(again, buf, sizeof buf - 1, 0, (void *)&from, &fromlen);
    if (n != 5 || memcmp(buf, "hello", 5)) return fail("reused", "the datagram never came");
    printf("reused: %s read on the new socket\n", buf);
    close(other);
    close(again);
    return 0;
}

static int pattern_v6(void) {
    int fd = socket(AF_INET6, SOCK_DGRAM, 0);
    struct sockaddr_in6 s = {.sin6_family = AF_INET6, .sin6_port = htons(53)};
    char mapped[64];
    snprintf(mapped, sizeof mapped, "::ffff:%s", server_ip);
    inet_pton(AF_INET6, mapped, &s.sin6_addr);
    if (connect(fd, (void *)&s, sizeof s) != 0) return fail("v6", "connect");
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    char shown[80];
    if (getpeername(fd, (void *)&peer, &len) != 0) return fail("v6", "getpeername");
    show(&peer, shown, sizeof shown);
    printf("v6: peer %s\n", shown);
    unsigned char q[300];
    int qlen = build_query(q, 0x6666, 1);
    if (send(fd, q, qlen, 0) != qlen) return fail("v6", "send");
    int rc = receive("v6", fd, 0x6666);
    close(fd);
    return rc;
}

/* How many descriptors this process has open. */
static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d) return -1;
    while (readdir(d)) n++;
    closedir(d);
    return n - 3; /* ".", ".." and the directory's own */
}

/* Waits (epoll, 5 s) for EVENTS on FD. */
static int wait_epoll(int fd, unsigned events) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = events, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    int n = epoll_wait(ep, &ev, 1, 5000);
    close(ep);
    return n == 1 ? 0 : -1;
}

/* Reads exactly LEN bytes from non-blocking FD into BUF, waiting with epoll. */
static int read_all(int fd, unsigned char *buf, int len) {
    int got = 0;
    while (got < len) {
        int n = read(fd, buf + got, len - got);
        if (n > 0) got += n;
        else if (n == 0) { errno = ECONNRESET; return -1; }
        else if (errno != EAGAIN || wait_epoll(fd, EPOLLIN) != 0) return -1;
    }
    return 0;
}

/* One framed answer to ID on TCP socket FD, printed as "PATTERN: ADDRESS (query N)". */
static int tcp_answer(const char *pattern, int fd, unsigned short id, int n) {
    unsigned char len[2], msg[65536];
    if (read_all(fd, len, 2) != 0) return fail(pattern, "reading the length");
    int mlen = (len[0] << 8) | len[1];
    if (read_all(fd, msg, mlen) != 0) return fail(pattern, "reading the answer");
    char addr[64];
    if (read_answer(msg, mlen, id, addr, sizeof addr) < 0) return fail(pattern, "not the answer");
    printf("%s: %s (query %d)\n", pattern, addr, n);
    return 0;
}

static int pattern_tcp(int v6) {
    const char *pattern = v6 ? "tcp6" : "tcp";
    int before = count_fds();
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_storage ss = {0};
    socklen_t sslen;
    if (v6) {
        struct sockaddr_in6 *s = (void *)&ss;
        char mapped[64];
        snprintf(mapped, sizeof mapped, "::ffff:%s", server_ip);
        s->sin6_family = AF_INET6;
        s->sin6_port = htons(53);
        inet_pton(AF_INET6, mapped, &s->sin6_addr);
        sslen = sizeof *s;
    } else {
        struct sockaddr_in s = server4();
        memcpy(&ss, &s, sizeof s);
        sslen = sizeof s;
    }
    int rc = connect(fd, (void *)&ss, sslen);
    if (rc != 0 && errno != EINPROGRESS) return fail(pattern, "connect");
    if (wait_epoll(fd, EPOLLOUT) != 0) return fail(pattern, "epoll: never writable");
    int error = -1;
    socklen_t elen = sizeof error;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &elen);
    if (error != 0) { errno = error; return fail(pattern, "connect (SO_ERROR)"); }
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    char shown[80];
    if (getpeername(fd, (void *)&peer, &len) != 0) return fail(pattern, "getpeername");
    show(&peer, shown, sizeof shown);
    printf("%s: peer %s\n", pattern, shown);
    unsigned char q[300], framed[2];
    int qlen = build_query(q, 0x3131, 1);
    framed[0] = qlen >> 8;
    framed[1] = qlen & 0xff;
    /* The length alone, then the message: one query in two writes. */
    if (write(fd, framed, 2) != 2) return fail(pattern, "write (length)");
    if (send(fd, q, qlen, 0) != qlen) return fail(pattern, "send (message)");
    if (tcp_answer(pattern, fd, 0x3131, 1) != 0) return 1;
    /* A second query on the same connection, in one writev. */
    qlen = build_query(q, 0x3232, 1);
    framed[0] = qlen >> 8;
    framed[1] = qlen & 0xff;
    struct iovec iov[2] = {{framed, 2}, {q, qlen}};
    if (writev(fd, iov, 2) != qlen + 2) return fail(pattern, "writev");
    if (tcp_answer(pattern, fd, 0x3232, 2) != 0) return 1;
    close(fd);
    printf("%s: fds %d -> %d\n", pattern, before, count_fds());
    return 0;
}

/* A blocking TCP connection to SERVER:53 (IPv4); -1 on failure. */
static int tcp_connect(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in s = server4();
    if (connect(fd, (void *)&s, sizeof s) != 0) { close(fd); return -1; }
    return fd;
}

/* One query with id ID on TCP socket FD (one write), its answer printed by tcp_answer. */
static int tcp_query(const char *pattern, int fd, unsigned short id, int n) {
    unsigned char q[302];
    int qlen = build_query(q + 2, id, 1);
    q[0] = qlen >> 8;
    q[1] = qlen & 0xff;
    if (write(fd, q, qlen + 2) != qlen + 2) return fail(pattern, "write");
    int flags = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, flags | O_NONBLOCK);
    int rc = tcp_answer(pattern, fd, id, n);
    fcntl(fd, F_SETFL, flags);
    return rc;
}

static int pattern_tcpfork(void) {
    int fd = tcp_connect();
    if (fd < 0) return fail("tcpfork", "connect");
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        int rc = tcp_query("tcpfork: child inherited", fd, 0x4141, 1);
        int own = tcp_connect();
        if (own < 0) return fail("tcpfork: child", "connect");
        rc |= tcp_query("tcpfork: child own", own, 0x4242, 2);
        fflush(stdout);
        _exit(rc);
    }
    int status = 1;
    waitpid(pid, &status, 0);
    int rc = tcp_query("tcpfork: parent inherited", fd, 0x4343, 3);
    int own = tcp_connect();
    if (own < 0) return fail("tcpfork: parent", "connect");
    rc |= tcp_query("tcpfork: parent own", own, 0x4444, 4);
    close(own);
    close(fd);
    return rc | !WIFEXITED(status) | WEXITSTATUS(status);
}

static int pattern_tcpdup(void) {
    int fd = tcp_connect();
    if (fd < 0) return fail("tcpdup", "connect");
    int copy = dup(fd);
    int rc = tcp_query("tcpdup: dup", copy, 0x5151, 1);
    close(fd);
    rc |= tcp_query("tcpdup: dup after close", copy, 0x5252, 2);
    struct sockaddr_storage peer;
    socklen_t len = sizeof peer;
    char shown[80];
    if (getpeername(copy, (void *)&peer, &len) != 0) return fail("tcpdup", "getpeername");
    show(&peer, shown, sizeof shown);
    printf("tcpdup: peer %s\n", shown);
    close(copy);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s SERVER-IPV4 NAME PATTERN...\n", argv[0]);
        return 2;
    }
    server_ip = argv[1];
    name = argv[2];
    int failed = 0;
    for (int i = 3; i < argc; i++) {
        const char *p = argv[i];
        int rc = !strcmp(p, "connect")      ? pattern_connect()
                 : !strcmp(p, "sendto")     ? pattern_sendto()
                 : !strcmp(p, "mmsg")       ? pattern_mmsg()
                 : !strcmp(p, "many")       ? pattern_many()
                 : !strcmp(p, "unspec")     ? pattern_unspec()
                 : !strcmp(p, "readv")      ? pattern_readv()
                 : !strcmp(p, "spurious")   ? pattern_spurious()
                 : !strcmp(p, "reused")     ? pattern_reused()
                 : !strcmp(p, "signal")     ? pattern_signal()
                 : !strcmp(p, "signalnested") ? pattern_signalnested()
                 : !strcmp(p, "epoll")      ? pattern_epoll()
                 : !strcmp(p, "thirdparty") ? pattern_thirdparty()
                 : !strcmp(p, "v6")         ? pattern_v6()
                 : !strcmp(p, "tcp")        ? pattern_tcp(0)
                 : !strcmp(p, "tcp6")       ? pattern_tcp(1)
                 : !strcmp(p, "tcpfork")    ? pattern_tcpfork()
                 : !strcmp(p, "tcpdup")     ? pattern_tcpdup()
                                            : fail(p, "unknown pattern");
        failed |= rc;
        fflush(stdout);
    }
    return failed;
}
