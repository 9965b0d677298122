/* datagrams.c: sends with a destination address, for tests/tests/supervised.rs (issue 12).
 * Statically linked, so libsocks.so never sees it; run under socks-supervise. Each mode makes
 * one kind of call and prints what happened, one `key=value` line per step:
 *
 *   sendto IP PORT           UDP sendto, then waits 3 s for the echo: `sendto=N reply=TEXT` or
 *                            `sendto=-1 errno=E`
 *   sendmsg IP PORT          the same with sendmsg: two iovecs and an IP_TOS control message
 *   options IP PORT          sendmsg with an IP_RETOPTS control message (IP options):
 *                            `sendmsg=-1 errno=E` or `sendmsg=N`
 *   sendmmsg IP PORT IP PORT two datagrams in one sendmmsg: `sendmmsg=N errno=E lens=A,B`, then
 *                            a `reply=TEXT` per echo
 *   unix                     sendmsg and sendto on an AF_UNIX socket pair: `unix=ok`
 *   race PROXIED-IP PORT DIRECT-IP PORT COUNT
 *                            a second thread flips the sendto address between the two as
 *                            fast as it can while the main thread sends COUNT datagrams:
 *                            `sent=A refused=B other=C`
 *   fastopen IP PORT         TCP sendto with MSG_FASTOPEN, half-close, read the echo to the
 *                            end: `fastopen=N echo=TEXT` or `fastopen=-1 errno=E`
 *
 * Built by the test with `cc -static -pthread datagrams.c`. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

static struct sockaddr_in address(const char *ip, const char *port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(port));
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        fprintf(stderr, "datagrams: bad address %s\n", ip);
        exit(2);
    }
    return a;
}

static int udp_socket(void) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0) {
        perror("socket");
        exit(2);
    }
    struct timeval limit = {3, 0};
    setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
    return s;
}

static void print_reply(int s) {
    char buf[256];
    ssize_t n = recv(s, buf, sizeof buf - 1, 0);
    if (n < 0) {
        printf("reply=none errno=%d\n", errno);
        return;
    }
    buf[n] = 0;
    printf("reply=%s\n", buf);
}

static void report(const char *what, ssize_t n) {
    if (n < 0)
        printf("%s=-1 errno=%d\n", what, errno);
    else
        printf("%s=%zd\n", what, n);
}

/* family, port and address are the first 8 bytes: flipped with one atomic 64-bit store. */
static union {
    struct sockaddr_in in;
    uint64_t head[2];
} target __attribute__((aligned(16)));
static uint64_t heads[2];
static volatile int stop;

static void *flipper(void *unused) {
    (void)unused;
    unsigned long n = 0;
    while (!stop)
        __atomic_store_n(&target.head[0], heads[n++ & 1], __ATOMIC_RELAXED);
    return NULL;
}

static int race(char **argv) {
    struct sockaddr_in p = address(argv[2], argv[3]), d = address(argv[4], argv[5]);
    memcpy(&heads[0], &p, 8);
    memcpy(&heads[1], &d, 8);
    memset(&target, 0, sizeof target);
    target.head[0] = heads[0];
    int count = atoi(argv[6]);
    pthread_t thread;
    if (pthread_create(&thread, NULL, flipper, NULL) != 0) {
        perror("pthread_create");
        return 2;
    }
    int s = udp_socket();
    int sent = 0, refused = 0, other = 0;
    for (int i = 0; i < count; i++) {
        if (sendto(s, "race", 4, 0, (struct sockaddr *)&target.in, sizeof target.in) == 4)
            sent++;
        else if (errno == ECONNREFUSED)
            refused++;
        else if (other++ < 3)
            printf("errno=%d %s\n", errno, strerror(errno));
    }
    stop = 1;
    pthread_join(thread, NULL);
    printf("sent=%d refused=%d other=%d\n", sent, refused, other);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: datagrams MODE ARGS... (see the source)\n");
        return 2;
    }
    const char *mode = argv[1];
    if (!strcmp(mode, "sendto") && argc == 4) {
        struct sockaddr_in a = address(argv[2], argv[3]);
        int s = udp_socket();
        ssize_t n = sendto(s, "hello-sendto", 12, 0, (struct sockaddr *)&a, sizeof a);
        report("sendto", n);
        if (n >= 0)
            print_reply(s);
        return 0;
    }
    if ((!strcmp(mode, "sendmsg") || !strcmp(mode, "options")) && argc == 4) {
        struct sockaddr_in a = address(argv[2], argv[3]);
        int s = udp_socket();
        struct iovec iov[2] = {{"hello-", 6}, {"sendmsg", 7}};
        union {
            char buf[CMSG_SPACE(sizeof(int)) + CMSG_SPACE(8)];
            struct cmsghdr align;
        } control;
        memset(&control, 0, sizeof control);
        struct msghdr msg = {.msg_name = &a, .msg_namelen = sizeof a, .msg_iov = iov,
                             .msg_iovlen = 2, .msg_control = control.buf};
        struct cmsghdr *c = (struct cmsghdr *)control.buf;
        if (!strcmp(mode, "sendmsg")) {
            int tos = 0x10;
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_TOS;
            c->cmsg_len = CMSG_LEN(sizeof tos);
            memcpy(CMSG_DATA(c), &tos, sizeof tos);
            msg.msg_controllen = CMSG_SPACE(sizeof tos);
        } else {
            /* Four NOPs: valid IP options the kernel would put in the header. */
            unsigned char opts[4] = {IPOPT_NOP, IPOPT_NOP, IPOPT_NOP, IPOPT_NOP};
            c->cmsg_level = IPPROTO_IP;
            c->cmsg_type = IP_RETOPTS;
            c->cmsg_len = CMSG_LEN(sizeof opts);
            memcpy(CMSG_DATA(c), opts, sizeof opts);
            msg.msg_controllen = CMSG_SPACE(sizeof opts);
        }
        ssize_t n = sendmsg(s, &msg, 0);
        report("sendmsg", n);
        if (n >= 0)
            print_reply(s);
        return 0;
    }
    if (!strcmp(mode, "sendmmsg") && argc == 6) {
        struct sockaddr_in a = address(argv[2], argv[3]), b = address(argv[4], argv[5]);
        int s = udp_socket();
        struct iovec one = {"first", 5}, two = {"second", 6};
        struct mmsghdr msgs[2];
        memset(msgs, 0, sizeof msgs);
        msgs[0].msg_hdr = (struct msghdr){.msg_name = &a, .msg_namelen = sizeof a,
                                          .msg_iov = &one, .msg_iovlen = 1};
        msgs[1].msg_hdr = (struct msghdr){.msg_name = &b, .msg_namelen = sizeof b,
                                          .msg_iov = &two, .msg_iovlen = 1};
        msgs[0].msg_len = msgs[1].msg_len = 99;
        int n = sendmmsg(s, msgs, 2, 0);
        printf("sendmmsg=%d errno=%d lens=%u,%u\n", n, n < 0 ? errno : 0, msgs[0].msg_len,
               msgs[1].msg_len);
        for (int i = 0; i < n; i++)
            print_reply(s);
        return 0;
    }
    if (!strcmp(mode, "unix") && argc == 2) {
        int pair[2];
        if (socketpair(AF_UNIX, SOCK_DGRAM, 0, pair) != 0) {
            perror("socketpair");
            return 2;
        }
        struct iovec iov = {"over-unix", 9};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
        char buf[32] = {0};
        if (sendmsg(pair[0], &msg, 0) != 9 || recv(pair[1], buf, sizeof buf - 1, 0) != 9 ||
            strcmp(buf, "over-unix") != 0) {
            printf("unix=failed errno=%d\n", errno);
            return 1;
        }
        printf("unix=ok\n");
        return 0;
    }
    if (!strcmp(mode, "race") && argc == 7)
        return race(argv);
    if (!strcmp(mode, "fastopen") && argc == 4) {
        struct sockaddr_in a = address(argv[2], argv[3]);
        int s = socket(AF_INET, SOCK_STREAM, 0);
        struct timeval limit = {5, 0};
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
        ssize_t n = sendto(s, "hello-fastopen", 14, MSG_FASTOPEN, (struct sockaddr *)&a, sizeof a);
        report("fastopen", n);
        if (n < 0)
            return 0;
        shutdown(s, SHUT_WR);
        char buf[256];
        size_t got = 0;
        ssize_t r;
        while (got < sizeof buf - 1 && (r = read(s, buf + got, sizeof buf - 1 - got)) > 0)
            got += (size_t)r;
        buf[got] = 0;
        printf("echo=%s\n", buf);
        return 0;
    }
    fprintf(stderr, "datagrams: bad arguments for %s\n", mode);
    return 2;
}
