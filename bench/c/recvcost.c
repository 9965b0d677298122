/* recvcost.c: what the receive traps cost a supervised program, measured by hand and quoted in
 * docs/PERFORMANCE.md; not part of socks-bench. Statically linked, so socksify runs it under
 * socks-supervise:
 *
 *   cc -static -O2 -o recvcost bench/c/recvcost.c
 *   ./recvcost 20000; SOCKS_SERVER=127.0.0.1:9 socks-supervise -- ./recvcost 20000 dns
 *
 * (loopback is direct, so no server is needed; a SOCKS_SERVER turns the name service on.)
 * Each case receives N one-byte datagrams, each sent just before on a connected socket (`send`,
 * not trapped), and prints the mean time per send+receive in microseconds:
 *   udp-recv             recv on a UDP socket (not trapped)
 *   udp-recvfrom         recvfrom with an address (trapped; CONTINUE at once while no socket
 *                        of the tree has its reply sources rewritten)
 *   unix-recvmsg         recvmsg on an AF_UNIX datagram pair (trapped, likewise)
 * then, with `dns`, one query to port 53 from an unconnected socket gives the tree a socket
 * with rewritten sources (the name service's), and:
 *   udp-recvfrom-other   recvfrom with an address on another socket (trapped; the supervisor
 *                        copies the socket and looks its cookie up: CONTINUE)
 *   udp-recvfrom-peeked  recvfrom with an address on the DNS socket itself, from a source that
 *                        is not rewritten (peeked at, then CONTINUE)
 *   dns-query            a query for a proxied name and its answer: sendto (redirected) +
 *                        recvfrom (received by the supervisor, the source rewritten) */
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

/* rx bound to 127.0.0.1:0 (or given), tx connected to it. */
static void udp_pair(int rx, int *tx) {
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t len = sizeof a;
    if (getsockname(rx, (struct sockaddr *)&a, &len) != 0)
        fail("getsockname");
    if (a.sin_port == 0) {
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (bind(rx, (struct sockaddr *)&a, sizeof a) != 0)
            fail("bind");
        len = sizeof a;
        getsockname(rx, (struct sockaddr *)&a, &len);
    }
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *tx = socket(AF_INET, SOCK_DGRAM, 0);
    if (connect(*tx, (struct sockaddr *)&a, sizeof a) != 0)
        fail("connect");
}

static void udp_case(const char *name, int rx, int tx, int n, int with_address) {
    char buf[64];
    struct sockaddr_storage from;
    double t = now();
    for (int i = 0; i < n; i++) {
        socklen_t len = sizeof from;
        if (send(tx, "x", 1, 0) != 1)
            fail("send");
        ssize_t got = with_address
                          ? recvfrom(rx, buf, sizeof buf, 0, (struct sockaddr *)&from, &len)
                          : recv(rx, buf, sizeof buf, 0);
        if (got != 1)
            fail(name);
    }
    printf("%s %.2f us\n", name, (now() - t) * 1e6 / n);
}

static size_t query(unsigned char *q, unsigned short id) {
    static const unsigned char name[] = "\3far\7example\3org";
    memset(q, 0, 12);
    q[0] = id >> 8, q[1] = id & 0xff, q[2] = 1, q[5] = 1;
    memcpy(q + 12, name, sizeof name);
    size_t at = 12 + sizeof name;
    q[at++] = 0, q[at++] = 1, q[at++] = 0, q[at++] = 1;
    return at;
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 20000;
    int dns = argc > 2 && strcmp(argv[2], "dns") == 0;
    int rx = socket(AF_INET, SOCK_DGRAM, 0), tx;
    udp_pair(rx, &tx);
    for (int i = 0; i < n / 10; i++) /* warm-up, not timed */
        if (send(tx, "x", 1, 0) != 1 || recv(rx, (char[8]){0}, 8, 0) != 1)
            fail("warm-up");
    udp_case("udp-recv", rx, tx, n, 0);
    udp_case("udp-recvfrom", rx, tx, n, 1);

    int pair[2];
    if (socketpair(AF_UNIX, SOCK_DGRAM, 0, pair) != 0)
        fail("socketpair");
    char buf[512];
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
    double t = now();
    for (int i = 0; i < n; i++)
        if (send(pair[0], "x", 1, 0) != 1 || recvmsg(pair[1], &msg, 0) != 1)
            fail("unix");
    printf("unix-recvmsg %.2f us\n", (now() - t) * 1e6 / n);
    if (!dns)
        return 0;

    int d = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons(53)};
    inet_pton(AF_INET, "192.0.2.53", &server.sin_addr);
    unsigned char q[512];
    size_t qlen = query(q, 1);
    if (sendto(d, q, qlen, 0, (struct sockaddr *)&server, sizeof server) < 0)
        fail("sendto 53");
    if (recv(d, buf, sizeof buf, 0) < 12)
        fail("first answer");
    udp_case("udp-recvfrom-other", rx, tx, n, 1);
    int dtx;
    udp_pair(d, &dtx);
    udp_case("udp-recvfrom-peeked", d, dtx, n, 1);
    int m = n / 10 > 0 ? n / 10 : 1;
    t = now();
    for (int i = 0; i < m; i++) {
        struct sockaddr_storage from;
        socklen_t len = sizeof from;
        qlen = query(q, (unsigned short)i);
        if (sendto(d, q, qlen, 0, (struct sockaddr *)&server, sizeof server) < 0)
            fail("sendto 53");
        if (recvfrom(d, buf, sizeof buf, 0, (struct sockaddr *)&from, &len) < 12)
            fail("answer");
    }
    printf("dns-query %.2f us (%d queries)\n", (now() - t) * 1e6 / m, m);
    return 0;
}
