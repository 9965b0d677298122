/* tricks.c: what a hostile or merely unusual static program does with its sockets, for
 * tests/tests/supervised_programs.rs (issue 12). Statically linked; run under socks-supervise.
 * Each mode prints `key=value` lines on stdout that the test compares exactly.
 *
 *   alarm IP PORT restart|norestart  SIGALRM every 100 ms (with or without SA_RESTART) while a
 *                                    blocking connect is held by a slow or hanging SOCKS
 *                                    server; prints
 *                                    connect's result, then (after waiting for a connect that
 *                                    went on in the background) the peer and a ping echoed
 *   dup IP PORT                      connect, dup2 onto 100, dup3 onto 101 (O_CLOEXEC): the
 *                                    peer of all three, a ping through 100, the flags of 101
 *   forkconnect IP PORT              socket in the parent, connect + ping in a forked child,
 *                                    then the parent's peer on its copy and a second ping
 *   passfd IP PORT                   the parent connects, passes the socket to a forked child
 *                                    over an AF_UNIX socket (SCM_RIGHTS, sendmsg), closes its
 *                                    own; the child names its peer and pings through it
 *   reconnect IP PORT IP2 PORT2      connect + ping, connect again to IP2:PORT2 (the kernel's
 *                                    answer: EISCONN), then the peer and another ping on the
 *                                    same connection
 *   reuse IP PORT IP2 PORT2          connect to IP:PORT, close, and connect a new socket (the same
 *                                    number) to IP2:PORT2, then the other way round: each
 *                                    getpeername names its own socket's peer, never the old one
 *   v6 IP6 PORT                      an AF_INET6 connect to IP6 (a literal, v4-mapped or not)
 *   spawn PROGRAM ARGS...            posix_spawn (glibc: clone3/clone with CLONE_VFORK)
 *   vfork PROGRAM ARGS...            vfork + execv; both print the child's exit status
 *   nested IP PORT                   tries to install a seccomp filter of its own with a listener
 *                                    (to answer its own connects with CONTINUE, past the
 *                                    supervisor), prints the result, then connects + pings
 *   nodump IP PORT                   makes itself non-dumpable (PR_SET_DUMPABLE 0, as ssh-agent and
 *                                    gpg-agent do), then connects + pings
 *   ids IP PORT                      real and effective uid and effective capabilities, then
 *                                    connect + ping (the test makes setuid-root and
 *                                    file-capability copies of this program)
 *
 * usage: tricks MODE ARGS... (see above)
 * Built by the test with `cc -static -pthread tricks.c`. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static volatile sig_atomic_t signals;

static void on_alarm(int sig) {
    (void)sig;
    signals++;
}

static struct sockaddr_in v4(const char *ip, const char *port) {
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(atoi(port))};
    if (inet_pton(AF_INET, ip, &sa.sin_addr) != 1) {
        fprintf(stderr, "bad address %s\n", ip);
        exit(2);
    }
    return sa;
}

/* The peer of fd as ADDR:PORT ([ADDR]:PORT for IPv6), or `error:ERRNO`. */
static const char *peer(int fd) {
    static char text[INET6_ADDRSTRLEN + 16];
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char ip[INET6_ADDRSTRLEN];
    if (getpeername(fd, (struct sockaddr *)&ss, &len) != 0) {
        snprintf(text, sizeof text, "error:%d", errno);
    } else if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sa = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &sa->sin_addr, ip, sizeof ip);
        snprintf(text, sizeof text, "%s:%d", ip, ntohs(sa->sin_port));
    } else {
        struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &sa->sin6_addr, ip, sizeof ip);
        snprintf(text, sizeof text, "[%s]:%d", ip, ntohs(sa->sin6_port));
    }
    return text;
}

/* Sends `word`, reads the echo of exactly as many bytes: `ok` or what went wrong. */
static const char *ping(int fd, const char *word) {
    static char text[64];
    char back[64];
    size_t len = strlen(word), got = 0;
    if (write(fd, word, len) != (ssize_t)len) {
        snprintf(text, sizeof text, "write-error:%d", errno);
        return text;
    }
    while (got < len) {
        ssize_t n = read(fd, back + got, len - got);
        if (n <= 0) {
            snprintf(text, sizeof text, "read-error:%zd:%d", n, errno);
            return text;
        }
        got += n;
    }
    return memcmp(back, word, len) == 0 ? "ok" : "garbled";
}

static int mode_alarm(char **argv) {
    struct sockaddr_in sa = v4(argv[0], argv[1]);
    struct sigaction act = {.sa_handler = on_alarm};
    act.sa_flags = strcmp(argv[2], "restart") == 0 ? SA_RESTART : 0;
    sigemptyset(&act.sa_mask);
    sigaction(SIGALRM, &act, NULL);
    struct itimerval every = {{0, 100000}, {0, 100000}}, off = {{0, 0}, {0, 0}};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    setitimer(ITIMER_REAL, &every, NULL);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    int err = rc == 0 ? 0 : errno;
    setitimer(ITIMER_REAL, &off, NULL);
    printf("connect=%d errno=%d signals=%s\n", rc, err, signals > 0 ? "yes" : "no");
    if (rc != 0 && (err == EINTR || err == EINPROGRESS || err == EALREADY)) {
        /* A connect interrupted goes on in the background: wait for it. */
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int ready = poll(&p, 1, 15000);
        int so = 0;
        socklen_t len = sizeof so;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &so, &len);
        printf("background: ready=%d so_error=%d\n", ready, so);
        if (ready != 1 || so != 0)
            return 0;
    } else if (rc != 0) {
        return 0;
    }
    printf("peer=%s\n", peer(fd));
    printf("ping=%s\n", ping(fd, "alarm"));
    return 0;
}

static int mode_dup(char **argv) {
    struct sockaddr_in sa = v4(argv[0], argv[1]);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        printf("connect=-1 errno=%d\n", errno);
        return 1;
    }
    int two = dup2(fd, 100), three = dup3(fd, 101, O_CLOEXEC);
    printf("dup2=%d dup3=%d\n", two, three);
    printf("peer=%s\n", peer(fd));
    printf("peer100=%s\n", peer(100));
    printf("peer101=%s\n", peer(101));
    close(fd);
    printf("ping100=%s\n", ping(100, "through-a-dup"));
    printf("cloexec101=%d\n", (fcntl(101, F_GETFD) & FD_CLOEXEC) ? 1 : 0);
    printf("peer101-after-close=%s\n", peer(101));
    return 0;
}

static int mode_forkconnect(char **argv) {
    struct sockaddr_in sa = v4(argv[0], argv[1]);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            printf("child: connect=-1 errno=%d\n", errno);
            _exit(1);
        }
        printf("child: peer=%s ping=%s\n", peer(fd), ping(fd, "from-the-child"));
        fflush(stdout);
        _exit(0);
    }
    int status;
    waitpid(child, &status, 0);
    printf("child-exit=%d\n", WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    printf("parent: peer=%s ping=%s\n", peer(fd), ping(fd, "from-the-parent"));
    return 0;
}

static int mode_reconnect(char **argv) {
    struct sockaddr_in sa = v4(argv[0], argv[1]), again = v4(argv[2], argv[3]);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    int rc = connect(fd, (struct sockaddr *)&sa, sizeof sa);
    printf("first=%d ping=%s\n", rc, rc == 0 ? ping(fd, "before") : "-");
    rc = connect(fd, (struct sockaddr *)&again, sizeof again);
    printf("second=%d errno=%d\n", rc, rc == 0 ? 0 : errno);
    printf("peer=%s ping=%s\n", peer(fd), ping(fd, "after"));
    return 0;
}

static int mode_passfd(char **argv) {
    struct sockaddr_in sa = v4(argv[0], argv[1]);
    int pair[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) {
        printf("socketpair=-1 errno=%d\n", errno);
        return 1;
    }
    fflush(stdout);
    pid_t child = fork();
    if (child == 0) {
        close(pair[0]);
        char byte;
        char control[CMSG_SPACE(sizeof(int))];
        struct iovec iov = {.iov_base = &byte, .iov_len = 1};
        struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                             .msg_controllen = sizeof control};
        if (recvmsg(pair[1], &msg, 0) != 1) {
            printf("child: recvmsg failed errno=%d\n", errno);
            _exit(1);
        }
        struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
        if (!c || c->cmsg_type != SCM_RIGHTS) {
            printf("child: no descriptor received\n");
            _exit(1);
        }
        int fd;
        memcpy(&fd, CMSG_DATA(c), sizeof fd);
        printf("child: peer=%s ping=%s\n", peer(fd), ping(fd, "passed-over"));
        fflush(stdout);
        _exit(0);
    }
    close(pair[1]);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        printf("connect=-1 errno=%d\n", errno);
        kill(child, SIGKILL);
        return 1;
    }
    char byte = 'x';
    char control[CMSG_SPACE(sizeof(int))];
    memset(control, 0, sizeof control);
    struct iovec iov = {.iov_base = &byte, .iov_len = 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
                         .msg_controllen = sizeof control};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
    long sent = sendmsg(pair[0], &msg, 0);
    close(fd);
    int status;
    waitpid(child, &status, 0);
    /* Printed after the child's line, so the order is fixed. */
    printf("sendmsg=%ld\nchild-exit=%d\n", sent, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}

/* Connects a new socket to `sa` and prints `label: fd=N peer=… ping=…`; returns the fd. */
static int connect_and_show(const char *label, struct sockaddr_in *sa) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)sa, sizeof *sa) != 0) {
        printf("%s: fd=%d connect=-1 errno=%d\n", label, fd, errno);
        return fd;
    }
    printf("%s: fd=%d peer=%s ping=%s\n", label, fd, peer(fd), ping(fd, label));
    return fd;
}

static int mode_reuse(char **argv) {
    struct sockaddr_in first = v4(argv[0], argv[1]), second = v4(argv[2], argv[3]);
    int a = connect_and_show("first", &first);
    close(a);
    int b = connect_and_show("second", &second);
    printf("same-number=%d\n", a == b);
    close(b);
    int c = connect_and_show("first-again", &first);
    close(c);
    return 0;
}

static int mode_v6(char **argv) {
    struct sockaddr_in6 sa = {.sin6_family = AF_INET6, .sin6_port = htons(atoi(argv[1]))};
    if (inet_pton(AF_INET6, argv[0], &sa.sin6_addr) != 1) {
        fprintf(stderr, "bad address %s\n", argv[0]);
        return 2;
    }
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        printf("connect=-1 errno=%d\n", errno);
        return 0;
    }
    printf("connect=0\npeer=%s\nping=%s\n", peer(fd), ping(fd, "over-ipv6"));
    return 0;
}

static int report(const char *how, pid_t child) {
    int status;
    if (child < 0) {
        printf("%s=-1 errno=%d\n", how, errno);
        return 1;
    }
    waitpid(child, &status, 0);
    printf("%s-exit=%d\n", how, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    return 0;
}

static int mode_spawn(char **argv) {
    pid_t child;
    fflush(stdout);
    int rc = posix_spawn(&child, argv[0], NULL, NULL, argv, environ);
    if (rc != 0) {
        errno = rc;
        return report("spawn", -1);
    }
    return report("spawn", child);
}

static int mode_vfork(char **argv) {
    fflush(stdout);
    pid_t child = vfork();
    if (child == 0) {
        execv(argv[0], argv);
        _exit(127);
    }
    return report("vfork", child);
}

static int mode_nested(char **argv) {
    /* connect -> SECCOMP_RET_USER_NOTIF to a listener of our own; everything else allowed. */
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_connect, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    long listener =
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog);
    printf("own-listener=%ld errno=%d\n", listener, listener < 0 ? errno : 0);
    if (listener >= 0)
        return 0; /* a connect now would wait for a listener nobody reads */
    struct sockaddr_in sa = v4(argv[0], argv[1]);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        printf("connect=-1 errno=%d\n", errno);
        return 0;
    }
    printf("peer=%s ping=%s\n", peer(fd), ping(fd, "nested"));
    return 0;
}

static int mode_nodump(char **argv) {
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    printf("dumpable=%d\n", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
    struct sockaddr_in sa = v4(argv[0], argv[1]);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        printf("connect=-1 errno=%d\n", errno);
        return 0;
    }
    printf("peer=%s ping=%s\n", peer(fd), ping(fd, "undumpable"));
    return 0;
}

/* The CapEff field of /proc/self/status (the effective capabilities, in hex). */
static const char *capeff(void) {
    static char value[32] = "unknown";
    char line[256];
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "CapEff: %31s", value) == 1)
            break;
    if (f)
        fclose(f);
    return value;
}

static int mode_ids(char **argv) {
    printf("uid=%d euid=%d capeff=%s\n", (int)getuid(), (int)geteuid(), capeff());
    struct sockaddr_in sa = v4(argv[0], argv[1]);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
        printf("connect=-1 errno=%d\n", errno);
        return 0;
    }
    printf("peer=%s ping=%s\n", peer(fd), ping(fd, "privileged"));
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    static const struct {
        const char *name;
        int args;
        int (*run)(char **);
    } modes[] = {
        {"alarm", 3, mode_alarm},
        {"dup", 2, mode_dup},
        {"forkconnect", 2, mode_forkconnect},
        {"passfd", 2, mode_passfd},
        {"reconnect", 4, mode_reconnect},
        {"reuse", 4, mode_reuse},
        {"v6", 2, mode_v6},
        {"spawn", 1, mode_spawn},
        {"vfork", 1, mode_vfork},
        {"nested", 2, mode_nested},
        {"nodump", 2, mode_nodump},
        {"ids", 2, mode_ids},
    };
    for (size_t i = 0; argc >= 2 && i < sizeof modes / sizeof modes[0]; i++)
        if (strcmp(argv[1], modes[i].name) == 0 && argc - 2 >= modes[i].args)
            return modes[i].run(argv + 2);
    fprintf(stderr, "usage: tricks alarm|dup|forkconnect|passfd|reconnect|reuse|v6|spawn|vfork|nested|nodump|ids ARGS...\n");
    return 2;
}
