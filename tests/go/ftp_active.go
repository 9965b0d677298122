// An active-mode FTP client (built CGO_ENABLED=0 by the supervisor tests): dials HOST:PORT
// (an address or a name), logs in anonymously, listens on the control connection's own address
// with port 0, sends PORT with the address the listener reports, then accepts — started before
// RETR, so that the non-blocking accept4 gets EAGAIN and the netpoller (epoll) waits for the
// listening socket to become readable (the second BIND reply) — and copies the file to stdout.
// Prints the server's replies ("< ") and "port=… peer=…" on stderr.
package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

func fail(what string, err error) {
	fmt.Fprintln(os.Stderr, what+":", err)
	os.Exit(1)
}

func main() {
	c, err := net.DialTimeout("tcp", os.Args[1], 10*time.Second)
	if err != nil {
		fail("dial", err)
	}
	r := bufio.NewReader(c)
	reply := func() string {
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				fail("reply", err)
			}
			fmt.Fprint(os.Stderr, "< ", line)
			if len(line) >= 4 && line[3] == ' ' {
				return line
			}
		}
	}
	cmd := func(text, want string) string {
		fmt.Fprintf(c, "%s\r\n", text)
		got := reply()
		if !strings.HasPrefix(got, want) {
			fail(text, fmt.Errorf("reply %q", got))
		}
		return got
	}
	reply()
	if strings.HasPrefix(cmd("USER anonymous", ""), "331") {
		cmd("PASS e2e@inside.test", "2")
	}
	cmd("TYPE I", "200")
	local := c.LocalAddr().(*net.TCPAddr)
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: local.IP})
	if err != nil {
		fail("listen", err)
	}
	a := ln.Addr().(*net.TCPAddr)
	ip := a.IP.To4()
	cmd(fmt.Sprintf("PORT %d,%d,%d,%d,%d,%d", ip[0], ip[1], ip[2], ip[3], a.Port>>8, a.Port&255), "200")
	// Accept first, so that it finds nothing yet (EAGAIN) and waits in the netpoller until
	// the listening socket becomes readable.
	ln.SetDeadline(time.Now().Add(20 * time.Second))
	type accepted struct {
		conn net.Conn
		err  error
	}
	ch := make(chan accepted, 1)
	go func() {
		d, err := ln.Accept()
		ch <- accepted{d, err}
	}()
	time.Sleep(300 * time.Millisecond)
	cmd("RETR "+os.Args[2], "1")
	got := <-ch
	d, err := got.conn, got.err
	if err != nil {
		fail("accept", err)
	}
	ln.Close()
	n, err := io.Copy(os.Stdout, d)
	if err != nil {
		fail("data", err)
	}
	d.Close()
	if got := reply(); !strings.HasPrefix(got, "226") {
		fail("transfer", fmt.Errorf("reply %q", got))
	}
	cmd("QUIT", "221")
	fmt.Fprintf(os.Stderr, "port=%s peer=%s bytes=%d\n", a, d.RemoteAddr(), n)
}
