/* holes.c: the test program of tests/tests/holes.rs (issue 11, items 10-12). It makes the calls
 * that used to get around libsocks.so -- TCP Fast Open through sendmmsg, UDP sendmmsg with
 * ancillary data, the resolver family (res_*, res_n*, res_send, getaddrinfo_a, the _r
 * gethostbyname variants) -- and prints one line per result for the test to check.
 *
 * Built by the test with `cc holes.c -lresolv -lanl`. Not a library test by itself: run it under
 * LD_PRELOAD=libsocks.so in the namespace lab. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <resolv.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct sockaddr_in addr_of(const char *ip, const char *port) {
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)atoi(port));
    inet_pton(AF_INET, ip, &sa.sin_addr);
    return sa;
}

/* TCP Fast Open through sendmmsg: one message to the destination, then the echo back. */
static int tfo_sendmmsg(const char *ip, const char *port) {
    struct sockaddr_in sa = addr_of(ip, port);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    char payload[] = "tfo-sendmmsg\n";
    struct iovec iov = {payload, strlen(payload)};
    struct mmsghdr m;
    memset(&m, 0, sizeof m);
    m.msg_hdr.msg_name = &sa;
    m.msg_hdr.msg_namelen = sizeof sa;
    m.msg_hdr.msg_iov = &iov;
    m.msg_hdr.msg_iovlen = 1;
    int n = sendmmsg(fd, &m, 1, MSG_FASTOPEN);
    if (n != 1) {
        printf("sendmmsg: error %s\n", strerror(errno));
        return 0;
    }
    char reply[100];
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ssize_t got = recv(fd, reply, sizeof reply - 1, 0);
    reply[got > 0 ? got : 0] = 0;
    printf("sendmmsg: sent %u, echo %s", m.msg_len, got > 0 ? reply : "none\n");
    return 0;
}

/* UDP sendmmsg, each message with an IP_TOS control message. */
static int udp_sendmmsg(const char *ip, const char *port) {
    struct sockaddr_in sa = addr_of(ip, port);
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    char p1[] = "mm-one", p2[] = "mm-two";
    struct iovec iov[2] = {{p1, strlen(p1)}, {p2, strlen(p2)}};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } control[2];
    struct mmsghdr m[2];
    memset(m, 0, sizeof m);
    memset(control, 0, sizeof control);
    for (int i = 0; i < 2; i++) {
        m[i].msg_hdr.msg_name = &sa;
        m[i].msg_hdr.msg_namelen = sizeof sa;
        m[i].msg_hdr.msg_iov = &iov[i];
        m[i].msg_hdr.msg_iovlen = 1;
        m[i].msg_hdr.msg_control = control[i].buf;
        m[i].msg_hdr.msg_controllen = sizeof control[i].buf;
        struct cmsghdr *c = CMSG_FIRSTHDR(&m[i].msg_hdr);
        c->cmsg_level = IPPROTO_IP;
        c->cmsg_type = IP_TOS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        int tos = 0x02; /* ECT(0) */
        memcpy(CMSG_DATA(c), &tos, sizeof tos);
    }
    int n = sendmmsg(fd, m, 2, 0);
    printf("udp sendmmsg: %d\n", n);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    for (int i = 0; i < n; i++) {
        char reply[100];
        ssize_t got = recv(fd, reply, sizeof reply - 1, 0);
        reply[got > 0 ? got : 0] = 0;
        printf("udp echo: %s\n", got > 0 ? reply : "none");
    }
    return 0;
}

/* The first A or AAAA record of a DNS answer, as text; or why there is none. */
static void describe_answer(const char *what, const unsigned char *ans, int len) {
    if (len < 0) {
        printf("%s: -1 h_errno=%d\n", what, h_errno);
        return;
    }
    ns_msg msg;
    if (ns_initparse(ans, len, &msg) < 0) {
        printf("%s: unparsable answer of %d bytes\n", what, len);
        return;
    }
    int rcode = ns_msg_getflag(msg, ns_f_rcode);
    int count = ns_msg_count(msg, ns_s_an);
    for (int i = 0; i < count; i++) {
        ns_rr rr;
        if (ns_parserr(&msg, ns_s_an, i, &rr) < 0) break;
        char text[NS_MAXDNAME] = "?";
        if (ns_rr_type(rr) == ns_t_ptr) {
            if (ns_name_uncompress(ns_msg_base(msg), ns_msg_end(msg), ns_rr_rdata(rr), text,
                                   sizeof text) < 0)
                continue;
        } else if (ns_rr_type(rr) == ns_t_a && ns_rr_rdlen(rr) == 4)
            inet_ntop(AF_INET, ns_rr_rdata(rr), text, sizeof text);
        else if (ns_rr_type(rr) == ns_t_aaaa && ns_rr_rdlen(rr) == 16)
            inet_ntop(AF_INET6, ns_rr_rdata(rr), text, sizeof text);
        else
            continue;
        printf("%s: %s %s id=%u\n", what, ns_rr_name(rr), text, ns_msg_id(msg));
        return;
    }
    printf("%s: rcode=%d answers=%d\n", what, rcode, count);
}

/* An HTTP GET to ADDR:80 on a fresh socket; prints the body's first line. */
static void http_get(const char *what, int family, const void *addr) {
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET) {
        struct sockaddr_in *sa = (struct sockaddr_in *)&ss;
        sa->sin_family = AF_INET;
        sa->sin_port = htons(80);
        memcpy(&sa->sin_addr, addr, 4);
        len = sizeof *sa;
    } else {
        struct sockaddr_in6 *sa = (struct sockaddr_in6 *)&ss;
        sa->sin6_family = AF_INET6;
        sa->sin6_port = htons(80);
        memcpy(&sa->sin6_addr, addr, 16);
        len = sizeof *sa;
    }
    int fd = socket(family, SOCK_STREAM, 0);
    if (connect(fd, (struct sockaddr *)&ss, len) != 0) {
        printf("%s: connect error %s\n", what, strerror(errno));
        close(fd);
        return;
    }
    char request[200];
    snprintf(request, sizeof request, "GET /%s HTTP/1.0\r\nHost: www.example.test\r\n\r\n", what);
    write(fd, request, strlen(request));
    char reply[4096];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof reply - 1 && (n = read(fd, reply + got, sizeof reply - 1 - got)) > 0)
        got += (size_t)n;
    reply[got] = 0;
    close(fd);
    char *body = strstr(reply, "\r\n\r\n");
    printf("%s: %s", what, body ? body + 4 : "no body\n");
}

/* The first address of an A answer, for a connect. */
static int a_record(const unsigned char *ans, int len, unsigned char out[4]) {
    ns_msg msg;
    ns_rr rr;
    if (len < 0 || ns_initparse(ans, len, &msg) < 0) return -1;
    for (int i = 0; i < ns_msg_count(msg, ns_s_an); i++)
        if (ns_parserr(&msg, ns_s_an, i, &rr) == 0 && ns_rr_type(rr) == ns_t_a) {
            memcpy(out, ns_rr_rdata(rr), 4);
            return 0;
        }
    return -1;
}

static void print_gai(const char *what, struct gaicb *cb) {
    int rc = gai_error(cb);
    if (rc != 0 || !cb->ar_result) {
        printf("%s: gai_error=%d\n", what, rc);
        return;
    }
    char text[INET6_ADDRSTRLEN] = "?";
    struct sockaddr *sa = cb->ar_result->ai_addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)sa)->sin_addr, text, sizeof text);
    else
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)sa)->sin6_addr, text, sizeof text);
    printf("%s: %s\n", what, text);
}

static int resolver(void) {
    unsigned char ans[4096];
    int n;
    n = res_query("www.example.test", ns_c_in, ns_t_a, ans, sizeof ans);
    describe_answer("res_query A", ans, n);
    unsigned char four[4];
    if (a_record(ans, n, four) == 0) {
        http_get("res-query-connect", AF_INET, four);
        char reverse[64];
        snprintf(reverse, sizeof reverse, "%u.%u.%u.%u.in-addr.arpa", four[3], four[2], four[1],
                 four[0]);
        n = res_query(reverse, ns_c_in, ns_t_ptr, ans, sizeof ans);
        describe_answer("res_query PTR", ans, n);
    }
    n = res_search("www.example.test", ns_c_in, ns_t_aaaa, ans, sizeof ans);
    describe_answer("res_search AAAA", ans, n);
    n = res_querydomain("www", "example.test", ns_c_in, ns_t_a, ans, sizeof ans);
    describe_answer("res_querydomain A", ans, n);
    n = res_query("www.example.test", ns_c_in, ns_t_mx, ans, sizeof ans);
    describe_answer("res_query MX", ans, n);

    struct __res_state state;
    memset(&state, 0, sizeof state);
    res_ninit(&state);
    n = res_nquery(&state, "www.example.test", ns_c_in, ns_t_a, ans, sizeof ans);
    describe_answer("res_nquery A", ans, n);
    n = res_nsearch(&state, "www.example.test", ns_c_in, ns_t_a, ans, sizeof ans);
    describe_answer("res_nsearch A", ans, n);
    n = res_nquerydomain(&state, "www", "example.test", ns_c_in, ns_t_a, ans, sizeof ans);
    describe_answer("res_nquerydomain A", ans, n);

    unsigned char query[512];
    int qlen = res_mkquery(ns_o_query, "www.example.test", ns_c_in, ns_t_a, NULL, 0, NULL, query,
                           sizeof query);
    unsigned id = (unsigned)query[0] << 8 | query[1];
    n = res_send(query, qlen, ans, sizeof ans);
    describe_answer("res_send A", ans, n);
    printf("res_send query: id=%u\n", id);
    qlen = res_nmkquery(&state, ns_o_query, "www.example.test", ns_c_in, ns_t_txt, NULL, 0, NULL,
                        query, sizeof query);
    n = res_nsend(&state, query, qlen, ans, sizeof ans);
    describe_answer("res_nsend TXT", ans, n);
    res_nclose(&state);

    struct hostent he, *result = NULL;
    char buf[1024];
    int herr = 0;
    int rc = gethostbyname_r("www.example.test", &he, buf, sizeof buf, &result, &herr);
    if (rc == 0 && result) {
        char text[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, result->h_addr_list[0], text, sizeof text);
        printf("gethostbyname_r: %s\n", text);
    } else {
        printf("gethostbyname_r: rc=%d h_errno=%d\n", rc, herr);
    }

    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    struct gaicb a = {.ar_name = "www.example.test", .ar_request = &hints};
    struct gaicb b = {.ar_name = "many.example.test", .ar_request = &hints};
    struct gaicb *wait_list[] = {&a, &b};
    rc = getaddrinfo_a(GAI_WAIT, wait_list, 2, NULL);
    printf("getaddrinfo_a wait: %d\n", rc);
    print_gai("gaicb www", &a);
    print_gai("gaicb many", &b);

    /* No wait, notified by a signal; one proxied name and one local one. */
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL);
    struct gaicb c = {.ar_name = "signal.example.test", .ar_request = &hints};
    struct gaicb d = {.ar_name = "localhost", .ar_request = &hints};
    struct gaicb *nowait_list[] = {&c, &d};
    struct sigevent sev;
    memset(&sev, 0, sizeof sev);
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = SIGUSR1;
    rc = getaddrinfo_a(GAI_NOWAIT, nowait_list, 2, &sev);
    struct timespec ten = {10, 0};
    int sig = sigtimedwait(&usr1, NULL, &ten);
    printf("getaddrinfo_a nowait: %d, signal %s\n", rc, sig == SIGUSR1 ? "received" : "missing");
    print_gai("gaicb signal", &c);
    print_gai("gaicb localhost", &d);

    /* No wait, one proxied name only, notified by a signal. */
    struct gaicb e = {.ar_name = "alone.example.test", .ar_request = &hints};
    struct gaicb *alone[] = {&e};
    rc = getaddrinfo_a(GAI_NOWAIT, alone, 1, &sev);
    sig = sigtimedwait(&usr1, NULL, &ten);
    printf("getaddrinfo_a alone: %d, signal %s\n", rc, sig == SIGUSR1 ? "received" : "missing");
    print_gai("gaicb alone", &e);
    return 0;
}

/* gethostbyname and gethostbyname_r for each name: an address, or the failure. */
static int by_name(int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        struct hostent *h = gethostbyname(argv[i]);
        if (h) {
            char text[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, h->h_addr_list[0], text, sizeof text);
            printf("gethostbyname %s: %s\n", argv[i], text);
        } else {
            printf("gethostbyname %s: h_errno=%d\n", argv[i], h_errno);
        }
        struct hostent he, *result = NULL;
        char buf[1024];
        int herr = 0;
        int rc = gethostbyname_r(argv[i], &he, buf, sizeof buf, &result, &herr);
        if (rc == 0 && result) {
            char text[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, result->h_addr_list[0], text, sizeof text);
            printf("gethostbyname_r %s: %s\n", argv[i], text);
        } else {
            printf("gethostbyname_r %s: failed\n", argv[i]);
        }
    }
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc == 4 && strcmp(argv[1], "tfo-sendmmsg") == 0) return tfo_sendmmsg(argv[2], argv[3]);
    if (argc == 4 && strcmp(argv[1], "udp-sendmmsg") == 0) return udp_sendmmsg(argv[2], argv[3]);
    if (argc == 2 && strcmp(argv[1], "resolver") == 0) return resolver();
    if (argc >= 3 && strcmp(argv[1], "by-name") == 0) return by_name(argc - 2, argv + 2);
    fprintf(stderr, "usage: holes tfo-sendmmsg|udp-sendmmsg IP PORT | resolver | by-name NAME...\n");
    return 2;
}
