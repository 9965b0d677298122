/* many.c: many threads connecting at once, for tests/tests/supervised.rs (issue 12: "a thousand
 * connections from many threads"). Statically linked; run under socks-supervise. Each of
 * THREADS threads makes EACH connections to IP:PORT (an echo server), one after the other:
 * connect, send a line naming the thread and round, half-close, read the echo to the end and
 * compare. Prints `ok=N failed=M`, and the first few failures with their errno.
 *
 * usage: many IP PORT THREADS EACH
 * Built by the test with `cc -static -pthread many.c`. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static struct sockaddr_in target;
static int each;
static int ok, failed;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(int thread, int round, const char *what) {
    pthread_mutex_lock(&lock);
    if (failed++ < 5)
        printf("thread %d round %d: %s: %s\n", thread, round, what, strerror(errno));
    pthread_mutex_unlock(&lock);
}

static void *worker(void *arg) {
    int thread = (int)(long)arg;
    for (int round = 0; round < each; round++) {
        char line[64], back[64];
        int len = snprintf(line, sizeof line, "thread %d round %d\n", thread, round);
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s < 0 || connect(s, (struct sockaddr *)&target, sizeof target) != 0) {
            fail(thread, round, "connect");
            if (s >= 0)
                close(s);
            continue;
        }
        int got = 0;
        if (write(s, line, len) != len || shutdown(s, SHUT_WR) != 0) {
            fail(thread, round, "write");
        } else {
            ssize_t n;
            while (got < (int)sizeof back && (n = read(s, back + got, sizeof back - got)) > 0)
                got += n;
            if (got != len || memcmp(line, back, len) != 0) {
                errno = EPROTO;
                fail(thread, round, "echo");
            } else {
                pthread_mutex_lock(&lock);
                ok++;
                pthread_mutex_unlock(&lock);
            }
        }
        close(s);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: many IP PORT THREADS EACH\n");
        return 2;
    }
    target.sin_family = AF_INET;
    target.sin_port = htons((unsigned short)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &target.sin_addr) != 1)
        return 2;
    int threads = atoi(argv[3]);
    each = atoi(argv[4]);
    pthread_t *ids = calloc(threads, sizeof *ids);
    for (int i = 0; i < threads; i++)
        if (pthread_create(&ids[i], NULL, worker, (void *)(long)i) != 0)
            return 2;
    for (int i = 0; i < threads; i++)
        pthread_join(ids[i], NULL);
    printf("ok=%d failed=%d\n", ok, failed);
    return failed != 0;
}
