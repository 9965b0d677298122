/* udprecv.c: UDP receives that report a source, for tests/tests/supervised_udp.rs. Statically
 * linked, so libsocks.so never sees it; run under socks-supervise against a UDP echo server.
 * Prints one `key=value …` line per step; addresses as IP:PORT.
 *
 *   udprecv blocking IP PORT     an unconnected blocking socket:
 *     sendto + recvfrom:          `recvfrom=N from=A namelen=L data=TEXT`
 *     sendto + recvmsg into two 4-byte buffers of a 12-byte datagram:
 *                                 `recvmsg=N from=A namelen=L trunc=0|1 data=TEXT`
 *     sendto + recvfrom(MSG_TRUNC) into 2 bytes: `trunc=N`
 *     recvfrom(MSG_DONTWAIT), nothing queued:     `dontwait=-1 errno=E`
 *     recvfrom with SO_RCVTIMEO 1 s, nothing queued: `timeout=-1 errno=E waited=about-1s`
 *                                 (between 0.9 and 2 s; else the seconds waited)
 *     recvfrom interrupted by alarm(1) (handler without SA_RESTART): `alarm=-1 errno=E`
 *   udprecv nonblocking IP PORT  an O_NONBLOCK socket: sendto, poll, then recvfrom:
 *                                 `recvfrom=N from=A data=TEXT`, then again `again=-1 errno=E`,
 *                                 then sendto, poll, recvmmsg of 2: `recvmmsg=N from=A len=L`
 *   udprecv connected IP PORT    connect, getpeername `peer=A`, getsockname
 *                                 `local=IP port=set|0`, send + recv `recv=TEXT`,
 *                                 send + recvfrom `recvfrom=N from=A data=TEXT`
 *   udprecv close IP PORT        sendto + recvfrom as above, then closes the socket, sleeps 6 s
 *                                 and prints `closed`
 *   udprecv bound IP PORT LOCAL  binds the socket to LOCAL port 0 first, then sendto +
 *                                 recvfrom as above
 *   udprecv restart IP PORT      a blocking recvfrom (nothing queued) interrupted by alarm(1),
 *                                 whose handler sends `late` to the echo server (the answer
 *                                 comes after the interruption), three times:
 *     handler with SA_RESTART, no SO_RCVTIMEO (the kernel restarts the receive, which then
 *     gets the answer):           `restart=N errno=E handled=H data=TEXT`
 *     handler with SA_RESTART, SO_RCVTIMEO 5 s (never restarted, signal(7)):
 *                                 `timeo=N errno=E handled=H`, then `drained=TEXT`
 *     handler without SA_RESTART: `plain=N errno=E handled=H`, then `drained=TEXT`
 *   udprecv thread IP PORT       a second thread blocks in recvfrom; the main thread waits in
 *                                 pause() and takes alarm(1) (handler without SA_RESTART, sends
 *                                 `late`): the receiving thread is not interrupted and gets the
 *                                 answer: `thread=N errno=E handled=H data=TEXT`
 *
 * Built by the test with `cc -static -pthread udprecv.c`. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in address(const char *ip, const char *port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(port));
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        fprintf(stderr, "udprecv: bad address %s\n", ip);
        exit(2);
    }
    return a;
}

static const char *show(const struct sockaddr_storage *ss) {
    static char out[80];
    char ip[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        port = ntohs(in->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof ip);
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, sizeof out, "%s:%d", ip, port);
    return out;
}

static void send_to(int s, const struct sockaddr_in *dst, const char *text) {
    if (sendto(s, text, strlen(text), 0, (const struct sockaddr *)dst, sizeof *dst) < 0) {
        printf("sendto=-1 errno=%d\n", errno);
        exit(1);
    }
}

static void set_timeout(int s, int seconds) {
    struct timeval limit = {seconds, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
}

static void wait_readable(int s) {
    struct pollfd p = {.fd = s, .events = POLLIN};
    if (poll(&p, 1, 5000) != 1) {
        printf("poll=timeout\n");
        exit(1);
    }
}

static void on_alarm(int sig) { (void)sig; }

static void print_recvfrom(int s, int flags) {
    char buf[256];
    struct sockaddr_storage from;
    memset(&from, 0, sizeof from);
    socklen_t len = sizeof from;
    ssize_t n = recvfrom(s, buf, sizeof buf - 1, flags, (struct sockaddr *)&from, &len);
    if (n < 0) {
        printf("recvfrom=-1 errno=%d\n", errno);
        return;
    }
    buf[n] = 0;
    printf("recvfrom=%zd from=%s namelen=%u data=%s\n", n, show(&from), (unsigned)len, buf);
}

static void blocking(const struct sockaddr_in *dst) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    set_timeout(s, 5);
    send_to(s, dst, "one");
    print_recvfrom(s, 0);

    send_to(s, dst, "two-and-more");
    char a[5] = {0}, b[5] = {0};
    struct iovec iov[2] = {{a, 4}, {b, 4}};
    struct sockaddr_storage from;
    memset(&from, 0, sizeof from);
    struct msghdr msg = {.msg_name = &from, .msg_namelen = sizeof from, .msg_iov = iov,
                         .msg_iovlen = 2};
    ssize_t n = recvmsg(s, &msg, 0);
    if (n < 0)
        printf("recvmsg=-1 errno=%d\n", errno);
    else
        printf("recvmsg=%zd from=%s namelen=%u trunc=%d data=%s%s\n", n, show(&from),
               (unsigned)msg.msg_namelen, (msg.msg_flags & MSG_TRUNC) ? 1 : 0, a, b);

    send_to(s, dst, "three-xx");
    char tiny[2];
    n = recv(s, tiny, sizeof tiny, MSG_TRUNC);
    /* recv has no address: the kernel's own answer (a check that it is not disturbed). */
    printf("trunc=%zd\n", n);

    n = recvfrom(s, tiny, sizeof tiny, MSG_DONTWAIT, (struct sockaddr *)&from,
                 &(socklen_t){sizeof from});
    printf("dontwait=%zd errno=%d\n", n, n < 0 ? errno : 0);

    set_timeout(s, 1);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    n = recvfrom(s, tiny, sizeof tiny, 0, (struct sockaddr *)&from, &(socklen_t){sizeof from});
    int e = errno;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double waited = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (waited >= 0.9 && waited < 2.0)
        printf("timeout=%zd errno=%d waited=about-1s\n", n, n < 0 ? e : 0);
    else
        printf("timeout=%zd errno=%d waited=%.2fs\n", n, n < 0 ? e : 0, waited);

    set_timeout(s, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);
    alarm(1);
    n = recvfrom(s, tiny, sizeof tiny, 0, (struct sockaddr *)&from, &(socklen_t){sizeof from});
    printf("alarm=%zd errno=%d\n", n, n < 0 ? errno : 0);
}

static void nonblocking(const struct sockaddr_in *dst) {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    send_to(s, dst, "four");
    wait_readable(s);
    print_recvfrom(s, 0);
    char buf[64];
    ssize_t n = recvfrom(s, buf, sizeof buf, 0, (struct sockaddr *)&(struct sockaddr_storage){0},
                         &(socklen_t){sizeof(struct sockaddr_storage)});
    printf("again=%zd errno=%d\n", n, n < 0 ? errno : 0);

    send_to(s, dst, "five");
    wait_readable(s);
    char d0[64] = {0}, d1[64] = {0};
    struct sockaddr_storage f0, f1;
    memset(&f0, 0, sizeof f0);
    struct iovec v0 = {d0, sizeof d0 - 1}, v1 = {d1, sizeof d1 - 1};
    struct mmsghdr m[2];
    memset(m, 0, sizeof m);
    m[0].msg_hdr = (struct msghdr){.msg_name = &f0, .msg_namelen = sizeof f0, .msg_iov = &v0,
                                   .msg_iovlen = 1};
    m[1].msg_hdr = (struct msghdr){.msg_name = &f1, .msg_namelen = sizeof f1, .msg_iov = &v1,
                                   .msg_iovlen = 1};
    int got = recvmmsg(s, m, 2, 0, NULL);
    if (got < 0)
        printf("recvmmsg=-1 errno=%d\n", errno);
    else
        printf("recvmmsg=%d from=%s len=%u data=%s\n", got, show(&f0), m[0].msg_len, d0);
}

static void connected(const struct sockaddr_in *dst) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    set_timeout(s, 5);
    if (connect(s, (const struct sockaddr *)dst, sizeof *dst) < 0) {
        printf("connect=-1 errno=%d\n", errno);
        return;
    }
    struct sockaddr_storage peer;
    memset(&peer, 0, sizeof peer);
    socklen_t len = sizeof peer;
    getpeername(s, (struct sockaddr *)&peer, &len);
    printf("peer=%s\n", show(&peer));
    struct sockaddr_storage self;
    memset(&self, 0, sizeof self);
    len = sizeof self;
    getsockname(s, (struct sockaddr *)&self, &len);
    char ip[INET6_ADDRSTRLEN] = "?";
    inet_ntop(AF_INET, &((struct sockaddr_in *)&self)->sin_addr, ip, sizeof ip);
    printf("local=%s port=%s\n", ip, ((struct sockaddr_in *)&self)->sin_port ? "set" : "0");
    char buf[64];
    send(s, "six", 3, 0);
    ssize_t n = recv(s, buf, sizeof buf - 1, 0);
    buf[n < 0 ? 0 : n] = 0;
    printf("recv=%s\n", buf);
    send(s, "seven", 5, 0);
    print_recvfrom(s, 0);
}

static void close_then_wait(const struct sockaddr_in *dst) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    set_timeout(s, 5);
    send_to(s, dst, "eight");
    print_recvfrom(s, 0);
    close(s);
    sleep(6);
    printf("closed\n");
}

static void bound(const struct sockaddr_in *dst, const char *local) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    set_timeout(s, 5);
    struct sockaddr_in me = address(local, "0");
    if (bind(s, (struct sockaddr *)&me, sizeof me) != 0) {
        printf("bind=-1 errno=%d\n", errno);
        return;
    }
    send_to(s, dst, "nine");
    print_recvfrom(s, 0);
}

/* The socket and destination the alarm handler sends `late` on (restart mode). */
static int late_socket = -1;
static struct sockaddr_in late_dst;
static volatile sig_atomic_t handled;

static void send_late(int sig) {
    (void)sig;
    int saved = errno;
    sendto(late_socket, "late", 4, 0, (const struct sockaddr *)&late_dst, sizeof late_dst);
    handled++;
    errno = saved;
}

/* One blocking recvfrom interrupted by alarm(1), the handler installed with `flags`. */
static void interrupted(const char *label, int flags, int timeout) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = send_late;
    sa.sa_flags = flags;
    sigaction(SIGALRM, &sa, NULL);
    set_timeout(late_socket, timeout);
    handled = 0;
    char buf[64];
    struct sockaddr_storage from;
    socklen_t len = sizeof from;
    alarm(1);
    ssize_t n = recvfrom(late_socket, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &len);
    int e = n < 0 ? errno : 0;
    buf[n < 0 ? 0 : n] = 0;
    if (n < 0) {
        printf("%s=%zd errno=%d handled=%d\n", label, n, e, (int)handled);
        set_timeout(late_socket, 5);
        len = sizeof from;
        n = recvfrom(late_socket, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &len);
        buf[n < 0 ? 0 : n] = 0;
        printf("drained=%s\n", buf);
    } else {
        printf("%s=%zd errno=%d handled=%d data=%s\n", label, n, e, (int)handled, buf);
    }
}

/* The late socket, with a first exchange with dst: the socket is relayed from here on. */
static void open_late_socket(const struct sockaddr_in *dst) {
    late_socket = socket(AF_INET, SOCK_DGRAM, 0);
    late_dst = *dst;
    set_timeout(late_socket, 5);
    send_to(late_socket, dst, "early");
    print_recvfrom(late_socket, 0);
}

static void restart(const struct sockaddr_in *dst) {
    open_late_socket(dst);
    interrupted("restart", SA_RESTART, 0);
    interrupted("timeo", SA_RESTART, 5);
    interrupted("plain", 0, 0);
}

/* thread mode: a second thread blocks in recvfrom; the main thread takes the alarm. */
static ssize_t thread_got;
static int thread_errno;
static char thread_data[64];

static void *receiver(void *unused) {
    (void)unused;
    struct sockaddr_storage from;
    socklen_t len = sizeof from;
    thread_got = recvfrom(late_socket, thread_data, sizeof thread_data - 1, 0,
                          (struct sockaddr *)&from, &len);
    thread_errno = thread_got < 0 ? errno : 0;
    if (thread_got >= 0)
        thread_data[thread_got] = 0;
    return NULL;
}

static void other_thread(const struct sockaddr_in *dst) {
    open_late_socket(dst);
    set_timeout(late_socket, 0);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = send_late;
    sigaction(SIGALRM, &sa, NULL);
    pthread_t t;
    pthread_create(&t, NULL, receiver, NULL);
    alarm(1);
    pause();
    pthread_join(t, NULL);
    printf("thread=%zd errno=%d handled=%d data=%s\n", thread_got, thread_errno, (int)handled,
           thread_got < 0 ? "" : thread_data);
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "bound") == 0) {
        struct sockaddr_in dst = address(argv[2], argv[3]);
        setvbuf(stdout, NULL, _IOLBF, 0);
        bound(&dst, argv[4]);
        return 0;
    }
    if (argc != 4) {
        fprintf(stderr, "usage: udprecv blocking|nonblocking|connected|close|restart|thread IP PORT\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    struct sockaddr_in dst = address(argv[2], argv[3]);
    if (strcmp(argv[1], "blocking") == 0)
        blocking(&dst);
    else if (strcmp(argv[1], "nonblocking") == 0)
        nonblocking(&dst);
    else if (strcmp(argv[1], "connected") == 0)
        connected(&dst);
    else if (strcmp(argv[1], "close") == 0)
        close_then_wait(&dst);
    else if (strcmp(argv[1], "restart") == 0)
        restart(&dst);
    else if (strcmp(argv[1], "thread") == 0)
        other_thread(&dst);
    else
        return 2;
    return 0;
}
