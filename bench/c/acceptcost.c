/* acceptcost.c: what the BIND traps cost a server run under the supervisor (issue 12),
 * measured by hand and quoted in docs/PERFORMANCE.md; not part of socks-bench. Statically
 * linked, so socksify runs it under socks-supervise:
 *
 *   cc -static -O2 -o acceptcost bench/c/acceptcost.c
 *   ./acceptcost 2000; socksify ./acceptcost 2000   # (-s SERVER not needed: loopback is direct)
 *
 * A TCP listener on 127.0.0.1 port 0. Prints the mean time per call in microseconds:
 *   getsockname   N getsockname calls on the listener (trapped; CONTINUE)
 *   accept        N accepts of connections already queued (trapped; CONTINUE while the
 *                 process has no BIND socket), in batches of 500 connected first (their
 *                 connects are not timed)
 *   bind-listen   N sockets bound to 127.0.0.1 port 0 and listening (two trapped calls, with
 *                 socket and close, which are not trapped) */
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
    int n = argc > 1 ? atoi(argv[1]) : 2000;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    if (ls < 0 || bind(ls, (struct sockaddr *)&a, sizeof a) || listen(ls, 1024)) fail("listener");
    socklen_t len = sizeof a;
    if (getsockname(ls, (struct sockaddr *)&a, &len)) fail("getsockname");

    double t0 = now();
    for (int i = 0; i < n; i++) {
        struct sockaddr_in b;
        socklen_t l = sizeof b;
        if (getsockname(ls, (struct sockaddr *)&b, &l)) fail("getsockname");
    }
    printf("getsockname %.2f\n", (now() - t0) / n * 1e6);

    enum { BATCH = 500 };
    int clients[BATCH];
    double accepting = 0;
    for (int done = 0; done < n;) {
        int k = n - done < BATCH ? n - done : BATCH;
        for (int i = 0; i < k; i++) {
            clients[i] = socket(AF_INET, SOCK_STREAM, 0);
            if (clients[i] < 0 || connect(clients[i], (struct sockaddr *)&a, sizeof a))
                fail("connect");
        }
        double t = now();
        for (int i = 0; i < k; i++) {
            int s = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
            if (s < 0) fail("accept");
            close(s);
        }
        accepting += now() - t;
        for (int i = 0; i < k; i++) close(clients[i]);
        done += k;
    }
    printf("accept %.2f\n", accepting / n * 1e6);

    t0 = now();
    for (int i = 0; i < n; i++) {
        struct sockaddr_in b = a;
        b.sin_port = 0;
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0 || bind(s, (struct sockaddr *)&b, sizeof b) || listen(s, 1)) fail("bind");
        close(s);
    }
    printf("bind-listen %.2f\n", (now() - t0) / n * 1e6);
    return 0;
}
