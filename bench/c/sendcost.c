/* sendcost.c: what a send costs a supervised program (issue 12), measured by hand and quoted
 * in docs/PERFORMANCE.md; not part of socks-bench. Statically linked, so socksify runs it
 * under socks-supervise:
 *
 *   cc -static -O2 -o sendcost bench/c/sendcost.c
 *   ./sendcost 20000; socksify ./sendcost 20000      # (-s SERVER not needed: loopback is direct)
 *
 * Each case sends N small datagrams one at a time and receives each at once (so no buffer
 * fills), and prints the mean time per send+receive in microseconds:
 *   unix-sendmsg   sendmsg on an AF_UNIX datagram socket pair (always trapped; CONTINUE)
 *   udp-sendto     sendto with a destination on a UDP socket to 127.0.0.1 (trapped; the
 *                  supervisor sends it)
 *   udp-sendmsg    the same with sendmsg
 *   udp-send       send on a connected UDP socket (not trapped) */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void fail(const char *what) {
    perror(what);
    exit(1);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    char buf[64];
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, pair) != 0)
        fail("socketpair");
    struct iovec iov = {"x", 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    double t = now();
    for (int i = 0; i < n; i++)
        if (sendmsg(pair[0], &msg, 0) != 1 || recv(pair[1], buf, sizeof buf, 0) != 1)
            fail("unix");
    printf("unix-sendmsg %.2f us\n", (now() - t) * 1e6 / n);

    int rx = socket(AF_INET, SOCK_DGRAM, 0), tx = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (bind(rx, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(rx, (struct sockaddr *)&a, &len) != 0)
        fail("bind");
    t = now();
    for (int i = 0; i < n; i++)
        if (sendto(tx, "x", 1, 0, (struct sockaddr *)&a, sizeof a) != 1 ||
            recv(rx, buf, sizeof buf, 0) != 1)
            fail("udp-sendto");
    printf("udp-sendto %.2f us\n", (now() - t) * 1e6 / n);
    msg.msg_name = &a;
    msg.msg_namelen = sizeof a;
    t = now();
    for (int i = 0; i < n; i++)
        if (sendmsg(tx, &msg, 0) != 1 || recv(rx, buf, sizeof buf, 0) != 1)
            fail("udp-sendmsg");
    printf("udp-sendmsg %.2f us\n", (now() - t) * 1e6 / n);
    if (connect(tx, (struct sockaddr *)&a, sizeof a) != 0)
        fail("connect");
    t = now();
    for (int i = 0; i < n; i++)
        if (send(tx, "x", 1, 0) != 1 || recv(rx, buf, sizeof buf, 0) != 1)
            fail("udp-send");
    printf("udp-send %.2f us\n", (now() - t) * 1e6 / n);
    return 0;
}
