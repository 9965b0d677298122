/* racer.c: the hostile program of tests/tests/supervised.rs (issue 12). Statically linked, so
 * libsocks.so never sees it; run under socks-supervise. A second thread rewrites the address
 * the main thread passes to connect(), flipping it as fast as it can between a destination
 * that must go through sockd (PROXIED) and one the configuration lets go direct (DIRECT). A
 * supervisor that decided on one reading and let the kernel read the address again
 * (SECCOMP_USER_NOTIF_FLAG_CONTINUE) would sometimes connect to PROXIED directly.
 *
 * usage: racer PROXIED-IP PROXIED-PORT DIRECT-IP DIRECT-PORT COUNT
 * Prints one line: `connects=N via-sockd=A direct=B refused=C other=D`, where the peer of each
 * successful connect tells the way (sockd's port, SOCKS_PORT_FOR_PEER, or DIRECT-PORT), and
 * every other errno is named on its own line `errno=E` (first occurrence); after 5 such
 * failures it stops early.
 *
 * Built by the test with `cc -static -pthread racer.c`. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* family, port and address are the first 8 bytes: flipped with one atomic 64-bit store, so
 * the address is always wholly one of the two. */
static union {
    struct sockaddr_in in;
    uint64_t head[2];
} target __attribute__((aligned(16)));
static uint64_t heads[2];
static volatile int stop;

static void *flipper(void *unused) {
    (void)unused;
    unsigned long n = 0;
    while (!stop) {
        __atomic_store_n(&target.head[0], heads[n++ & 1], __ATOMIC_RELAXED);
    }
    return NULL;
}

static uint64_t head_of(const char *ip, const char *port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(port));
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        fprintf(stderr, "racer: bad address %s\n", ip);
        exit(2);
    }
    uint64_t head;
    memcpy(&head, &a, sizeof head);
    return head;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: racer PROXIED-IP PROXIED-PORT DIRECT-IP DIRECT-PORT COUNT\n");
        return 2;
    }
    heads[0] = head_of(argv[1], argv[2]);
    heads[1] = head_of(argv[3], argv[4]);
    int direct_port = atoi(argv[4]);
    int count = atoi(argv[5]);
    memset(&target, 0, sizeof target);
    target.head[0] = heads[0];
    pthread_t thread;
    if (pthread_create(&thread, NULL, flipper, NULL) != 0) {
        perror("pthread_create");
        return 2;
    }
    int via_sockd = 0, direct = 0, refused = 0, other = 0;
    int seen[256] = {0};
    for (int i = 0; i < count; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0) {
            perror("socket");
            return 2;
        }
        /* A connect nobody answers (a direct SYN the firewall drops) ends after 3 s. */
        struct timeval limit = {3, 0};
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof limit);
        if (connect(s, (struct sockaddr *)&target.in, sizeof target.in) == 0) {
            struct sockaddr_in peer;
            socklen_t len = sizeof peer;
            getpeername(s, (struct sockaddr *)&peer, &len);
            if (ntohs(peer.sin_port) == direct_port)
                direct++;
            else
                via_sockd++;
        } else if (errno == ECONNREFUSED) {
            refused++;
        } else {
            other++;
            if (errno < 256 && !seen[errno]++)
                printf("errno=%d %s\n", errno, strerror(errno));
            if (other >= 5) { /* enough to tell; don't wait out every timeout */
                close(s);
                count = i + 1;
                break;
            }
        }
        close(s);
    }
    stop = 1;
    pthread_join(thread, NULL);
    printf("connects=%d via-sockd=%d direct=%d refused=%d other=%d\n", count, via_sockd, direct,
           refused, other);
    return 0;
}
