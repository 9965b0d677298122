/* dnsquery.c: one DNS query the way musl's resolver sends it, for tests/tests/supervised_names.rs
 * (issue 12). Statically linked, so libsocks.so never sees it; run under socks-supervise.
 *
 *   dnsquery MODE SERVER NAME
 *
 * sends an A query for NAME to SERVER port 53 from an unconnected UDP socket, with sendto
 * (MODE `sendto`) or sendmsg (MODE `sendmsg`), waits 3 s for a reply with recvfrom and prints
 * `rcode=N`, one `A=ADDR` line per A record and `from=IP:PORT` (the reply's source as recvfrom
 * reported it), or `timeout`, or `send=-1 errno=E`.
 *
 * Built by the test with `cc -static dnsquery.c`. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: dnsquery sendto|sendmsg SERVER NAME\n");
        return 2;
    }
    unsigned char query[512] = {0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
    size_t at = 12;
    const char *name = argv[3];
    while (*name) {
        const char *dot = strchr(name, '.');
        size_t len = dot ? (size_t)(dot - name) : strlen(name);
        if (len == 0 || len > 63 || at + len + 6 > sizeof query) return 2;
        query[at++] = (unsigned char)len;
        memcpy(query + at, name, len);
        at += len;
        name += len + (dot ? 1 : 0);
    }
    query[at++] = 0;
    query[at++] = 0, query[at++] = 1; /* A */
    query[at++] = 0, query[at++] = 1; /* IN */

    struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons(53)};
    if (inet_pton(AF_INET, argv[2], &server.sin_addr) != 1) return 2;
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    ssize_t sent;
    if (strcmp(argv[1], "sendmsg") == 0) {
        struct iovec iov = {.iov_base = query, .iov_len = at};
        struct msghdr msg = {.msg_name = &server, .msg_namelen = sizeof server,
                             .msg_iov = &iov, .msg_iovlen = 1};
        sent = sendmsg(fd, &msg, 0);
    } else {
        sent = sendto(fd, query, at, 0, (struct sockaddr *)&server, sizeof server);
    }
    if (sent < 0) {
        printf("send=-1 errno=%d\n", errno);
        return 1;
    }
    struct pollfd p = {.fd = fd, .events = POLLIN};
    if (poll(&p, 1, 3000) != 1) {
        printf("timeout\n");
        return 1;
    }
    unsigned char reply[4096];
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof from;
    ssize_t n = recvfrom(fd, reply, sizeof reply, 0, (struct sockaddr *)&from, &fromlen);
    if (n < 12 || reply[0] != 0x42 || reply[1] != 0x42) {
        printf("bad reply\n");
        return 1;
    }
    printf("rcode=%d\n", reply[3] & 0x0f);
    int answers = reply[6] << 8 | reply[7];
    size_t i = 12;
    while (i < (size_t)n && reply[i]) i += reply[i] + 1; /* the question's name */
    i += 5;
    for (int a = 0; a < answers && i + 12 <= (size_t)n; a++) {
        if ((reply[i] & 0xc0) == 0xc0) {
            i += 2;
        } else {
            while (i < (size_t)n && reply[i]) i += reply[i] + 1;
            i++;
        }
        int type = reply[i] << 8 | reply[i + 1];
        int len = reply[i + 8] << 8 | reply[i + 9];
        i += 10;
        if (type == 1 && len == 4 && i + 4 <= (size_t)n)
            printf("A=%d.%d.%d.%d\n", reply[i], reply[i + 1], reply[i + 2], reply[i + 3]);
        i += len;
    }
    if (from.ss_family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&from;
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof ip);
        printf("from=%s:%d\n", ip, ntohs(in->sin_port));
    }
    return 0;
}
