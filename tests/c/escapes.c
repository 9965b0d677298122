/* escapes.c: ways around a seccomp filter that watches x86_64 connect(), for
 * tests/tests/supervised.rs (issue 12). Statically linked; run under socks-supervise.
 *
 *   escapes int80     i386 socketcall(SYS_CONNECT) through `int 0x80` (must be killed)
 *   escapes x32       connect with __X32_SYSCALL_BIT set (must be killed)
 *   escapes io_uring  io_uring_setup (must fail with ENOSYS)
 *
 * Prints `before` first (flushed), then what happened if it is still alive.
 * Built by the test with `cc -static escapes.c`. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: escapes int80|x32|io_uring\n");
        return 2;
    }
    printf("before\n");
    fflush(stdout);
    if (strcmp(argv[1], "int80") == 0) {
        /* socketcall(SYS_CONNECT = 3, args): the kernel never gets to read args. */
        static uint32_t args[3] = {3, 0, 16};
        long ret;
        __asm__ volatile("int $0x80" : "=a"(ret) : "a"(102), "b"(3), "c"(args) : "memory");
        printf("int80 returned %ld\n", ret);
    } else if (strcmp(argv[1], "x32") == 0) {
        long ret = syscall(0x40000000L | 42, 3, 0, 16);
        printf("x32 connect returned %ld errno=%d\n", ret, errno);
    } else if (strcmp(argv[1], "io_uring") == 0) {
        char params[120];
        memset(params, 0, sizeof params);
        long ret = syscall(425, 8, params);
        printf("io_uring_setup returned %ld errno=%d\n", ret, ret < 0 ? errno : 0);
    } else {
        return 2;
    }
    return 0;
}
