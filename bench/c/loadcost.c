/* loadcost.c: what preloading a library costs a program that does nothing (issue 17, "Library
 * load time" in docs/PERFORMANCE.md), measured by hand; not part of socks-bench (whose
 * `library` section times the same with fewer variants). Not here: what inside the load the
 * time goes to (callgrind, strace and perf, as that section says).
 *
 *   cc -O2 -o loadcost bench/c/loadcost.c
 *   ./loadcost 600 none ./libempty.so target/release/libsocks.so \
 *       /usr/lib/x86_64-linux-gnu/libtsocks.so.1 /usr/lib/x86_64-linux-gnu/libproxychains.so.4
 *
 * For each argument after the count (a library, or `none`): posix_spawn of /bin/true with only
 * LD_PRELOAD=LIBRARY in its environment (none: an empty one; proxychains' library also gets
 * PROXYCHAINS_QUIET_MODE=1, or it prints a line per process), then waitpid. The variants take
 * turns, 20 warm-up rounds, then COUNT timed rounds. Prints each variant's median in
 * microseconds and its ratio to the first variant's. */
#define _GNU_SOURCE
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 3 || atoi(argv[1]) <= 0) {
        fprintf(stderr, "usage: %s COUNT none|LIBRARY...\n", argv[0]);
        return 2;
    }
    int count = atoi(argv[1]), variants = argc - 2;
    double *times = calloc((size_t)count * variants, sizeof *times);
    if (!times) {
        perror("calloc");
        return 1;
    }
    char *args[] = {"/bin/true", NULL};
    for (int round = -20; round < count; round++) {
        for (int v = 0; v < variants; v++) {
            const char *library = argv[2 + v];
            char preload[4096];
            char quiet[] = "PROXYCHAINS_QUIET_MODE=1";
            char *env[3] = {NULL, NULL, NULL};
            if (strcmp(library, "none") != 0) {
                snprintf(preload, sizeof preload, "LD_PRELOAD=%s", library);
                env[0] = preload;
                if (strstr(library, "proxychains")) env[1] = quiet;
            }
            pid_t pid;
            double start = now_us();
            int err = posix_spawn(&pid, "/bin/true", NULL, NULL, args, env);
            if (err) {
                fprintf(stderr, "posix_spawn: %s\n", strerror(err));
                return 1;
            }
            int status;
            if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
                fprintf(stderr, "/bin/true under %s did not exit 0\n", library);
                return 1;
            }
            if (round >= 0) times[v * count + round] = now_us() - start;
        }
    }
    double first = 0;
    for (int v = 0; v < variants; v++) {
        qsort(times + v * count, count, sizeof *times, by_value);
        double median = times[v * count + count / 2];
        if (v == 0) first = median;
        printf("%-60s %7.0f us  %.2fx\n", argv[2 + v], median, median / first);
    }
    return 0;
}
