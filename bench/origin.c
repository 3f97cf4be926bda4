/*
 * The benchmark's HTTP/1.1 origin: one thread, epoll, non-blocking sockets.
 *
 * It exists so that the origin is never the bottleneck of a proxy benchmark: it
 * parses only what it must (request line, Content-Length, Transfer-Encoding,
 * Connection), serves bodies from one static pattern buffer (no allocation, no
 * copy per request), and discards request bodies as fast as the kernel hands them
 * over.  bench/bench.py measures it directly with h2load --h1 before every run.
 *
 *   GET  /bytes/N     N bytes (Content-Length)
 *   GET  /html/N      N bytes of text/html: deterministic, compressible markup (a
 *                     blog index: repeated elements, text varying as real pages do),
 *                     for the compression workload
 *   any method with a request body (Content-Length or chunked):
 *                     reads and discards it, answers {"bytes": N}
 *   anything else     a 100-byte body (the small-response workload)
 *
 * Keep-alive for HTTP/1.1 (unless "Connection: close") and for HTTP/1.0 with
 * "Connection: keep-alive"; pipelined requests are answered in order.  A request
 * head larger than HEAD_MAX is refused with 431 and the connection closed.
 *
 * Build: cc -O2 -o origin origin.c        Run: origin PORT  (0: the kernel picks)
 * It prints "origin listening on 127.0.0.1:PORT" once bound.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define HEAD_MAX 16384            /* largest request head accepted */
#define PATTERN_SIZE (1 << 20)    /* body bytes come from this buffer, cycled */
#define HTML_SIZE (1 << 20)       /* /html/N bytes come from this buffer, cycled */
#define SCRATCH_SIZE (1 << 18)    /* one read of a request body */
#define SMALL_BODY 100            /* the default response body size */
#define MAX_EVENTS 256            /* epoll events handled per wake-up */
#define LISTEN_BACKLOG 4096

enum state { S_HEAD, S_BODY, S_WRITE };
enum chunk_state { C_SIZE, C_EXT, C_DATA, C_DATA_END, C_TRAILER };

struct conn {
    int fd;
    enum state st;
    int keep_alive;
    int head_only;            /* HEAD request: no body in the answer */
    int chunked;
    enum chunk_state cst;
    long long chunk_left;
    int trailer_line_len;
    long long body_left;      /* Content-Length bytes still to read */
    long long body_read;      /* request body bytes read so far */
    long long resp_len;       /* response body length */
    const char *resp_src;     /* the buffer the body is cut from, cycled */
    size_t resp_src_size;
    long long resp_sent;
    size_t in_len;
    size_t out_len, out_off;
    int had_body;             /* the request had a body (answer with its size) */
    char path[1024];
    char out[256];
    char in[HEAD_MAX];
};

static char pattern[PATTERN_SIZE];
static char html[HTML_SIZE];
static char scratch[SCRATCH_SIZE];
static int epfd;

static void conn_close(struct conn *c) {
    close(c->fd);
    free(c);
}

static void set_events(struct conn *c, unsigned events) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* A header line "name: value"; returns a pointer to the trimmed value or NULL. */
static const char *header_value(const char *line, size_t len, const char *name) {
    size_t n = strlen(name);
    if (len <= n || strncasecmp(line, name, n) != 0 || line[n] != ':')
        return NULL;
    const char *v = line + n + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    return v;
}

/* Parse the request head in c->in[0..head_len); sets up body reading and the answer. */
static int parse_head(struct conn *c, size_t head_len, char *path, size_t path_cap) {
    char *line_end = memmem(c->in, head_len, "\r\n", 2);
    char method[16], version[16];
    char fmt[64];
    *line_end = '\0';
    snprintf(fmt, sizeof fmt, "%%15s %%%zus %%15s", path_cap - 1);
    if (sscanf(c->in, fmt, method, path, version) != 3)
        return -1;
    *line_end = '\r';
    int http11 = strcmp(version, "HTTP/1.1") == 0;
    int conn_close_hdr = 0, conn_keep_hdr = 0;
    c->head_only = strcmp(method, "HEAD") == 0;
    c->chunked = 0;
    c->body_left = 0;
    c->body_read = 0;
    char *p = line_end + 2;
    char *end = c->in + head_len - 2;
    while (p < end) {
        char *eol = memmem(p, end - p + 2, "\r\n", 2);
        size_t len = eol - p;
        const char *v;
        if ((v = header_value(p, len, "content-length")))
            c->body_left = atoll(v);
        else if ((v = header_value(p, len, "transfer-encoding")))
            c->chunked = strncasecmp(v, "chunked", 7) == 0;
        else if ((v = header_value(p, len, "connection"))) {
            conn_close_hdr = strncasecmp(v, "close", 5) == 0;
            conn_keep_hdr = strncasecmp(v, "keep-alive", 10) == 0;
        }
        p = eol + 2;
    }
    c->keep_alive = http11 ? !conn_close_hdr : conn_keep_hdr;
    if (c->chunked) {
        c->body_left = 0;
        c->cst = C_SIZE;
        c->chunk_left = 0;
    }
    return 0;
}

/* Feed request body bytes; returns how many were part of the body.  Sets *done. */
static size_t consume_body(struct conn *c, const char *buf, size_t len, int *done) {
    if (!c->chunked) {
        size_t take = (long long)len < c->body_left ? len : (size_t)c->body_left;
        c->body_left -= take;
        c->body_read += take;
        *done = c->body_left == 0;
        return take;
    }
    size_t i = 0;
    *done = 0;
    while (i < len) {
        char ch = buf[i];
        switch (c->cst) {
        case C_SIZE:
        case C_EXT:
            i++;
            if (ch == '\n') {
                if (c->chunk_left == 0) {
                    c->cst = C_TRAILER;
                    c->trailer_line_len = 0;
                } else {
                    c->cst = C_DATA;
                }
            } else if (c->cst == C_SIZE && ch != '\r') {
                int d = (ch >= '0' && ch <= '9') ? ch - '0'
                      : (ch >= 'a' && ch <= 'f') ? ch - 'a' + 10
                      : (ch >= 'A' && ch <= 'F') ? ch - 'A' + 10 : -1;
                if (d < 0)
                    c->cst = C_EXT;
                else
                    c->chunk_left = c->chunk_left * 16 + d;
            }
            break;
        case C_DATA: {
            size_t take = len - i < (size_t)c->chunk_left ? len - i : (size_t)c->chunk_left;
            c->chunk_left -= take;
            c->body_read += take;
            i += take;
            if (c->chunk_left == 0)
                c->cst = C_DATA_END;
            break;
        }
        case C_DATA_END:
            i++;
            if (ch == '\n')
                c->cst = C_SIZE;
            break;
        case C_TRAILER:
            i++;
            if (ch == '\n') {
                if (c->trailer_line_len == 0) {
                    *done = 1;
                    return i;
                }
                c->trailer_line_len = 0;
            } else if (ch != '\r') {
                c->trailer_line_len++;
            }
            break;
        }
    }
    return i;
}

static void prepare_response(struct conn *c) {
    const char *path = c->path;
    int had_body = c->had_body;
    const char *conn_hdr = c->keep_alive ? "" : "Connection: close\r\n";
    char body[64];
    size_t inline_len = 0;
    const char *type = "application/octet-stream";
    c->resp_src = pattern;
    c->resp_src_size = PATTERN_SIZE;
    if (strncmp(path, "/bytes/", 7) == 0) {
        c->resp_len = atoll(path + 7);
    } else if (strncmp(path, "/html/", 6) == 0) {
        c->resp_len = atoll(path + 6);
        c->resp_src = html;
        c->resp_src_size = HTML_SIZE;
        type = "text/html; charset=utf-8";
    } else if (had_body) {
        inline_len = snprintf(body, sizeof body, "{\"bytes\": %lld}\n", c->body_read);
        c->resp_len = inline_len;
    } else {
        c->resp_len = SMALL_BODY;
    }
    c->out_len = snprintf(c->out, sizeof c->out,
                          "HTTP/1.1 200 OK\r\nContent-Type: %s\r\n"
                          "Content-Length: %lld\r\n%s\r\n",
                          type, c->resp_len, conn_hdr);
    c->out_off = 0;
    c->resp_sent = 0;
    if (inline_len) {
        memcpy(c->out + c->out_len, body, inline_len);
        c->out_len += inline_len;
        c->resp_sent = c->resp_len;
    }
    if (c->head_only)
        c->resp_sent = c->resp_len;
    c->st = S_WRITE;
}

/* Write as much of the answer as the socket takes: 1 finished, 0 blocked, -1 error. */
static int write_response(struct conn *c) {
    for (;;) {
        struct iovec iov[2];
        int n = 0;
        if (c->out_off < c->out_len) {
            iov[n].iov_base = c->out + c->out_off;
            iov[n++].iov_len = c->out_len - c->out_off;
        }
        long long left = c->resp_len - c->resp_sent;
        if (left > 0) {
            size_t off = c->resp_sent % c->resp_src_size;
            size_t take = c->resp_src_size - off;
            if ((long long)take > left)
                take = left;
            iov[n].iov_base = (char *)c->resp_src + off;
            iov[n++].iov_len = take;
        }
        if (n == 0)
            return 1;
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0)
            return (errno == EAGAIN || errno == EINTR) ? 0 : -1;
        size_t head_left = c->out_len - c->out_off;
        if ((size_t)w <= head_left) {
            c->out_off += w;
        } else {
            c->out_off = c->out_len;
            c->resp_sent += w - head_left;
        }
    }
}

/* Advance the connection as far as buffered input and the socket allow. */
static void process(struct conn *c) {
    for (;;) {
        if (c->st == S_HEAD) {
            char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
            if (!end) {
                if (c->in_len == HEAD_MAX) {
                    static const char tl[] = "HTTP/1.1 431 Too Large\r\nContent-Length: 0\r\n"
                                             "Connection: close\r\n\r\n";
                    (void)!write(c->fd, tl, sizeof tl - 1);
                    conn_close(c);
                    return;
                }
                set_events(c, EPOLLIN);
                return;
            }
            size_t head_len = end + 4 - c->in;
            if (parse_head(c, head_len, c->path, sizeof c->path) < 0) {
                conn_close(c);
                return;
            }
            c->had_body = c->chunked || c->body_left > 0;
            size_t rest = c->in_len - head_len;
            memmove(c->in, c->in + head_len, rest);
            c->in_len = rest;
            c->st = S_BODY;
        }
        if (c->st == S_BODY) {
            int done = !(c->chunked || c->body_left > 0);
            if (!done && c->in_len) {
                size_t used = consume_body(c, c->in, c->in_len, &done);
                memmove(c->in, c->in + used, c->in_len - used);
                c->in_len -= used;
            }
            while (!done) {
                ssize_t r = read(c->fd, scratch, SCRATCH_SIZE);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
                    conn_close(c);
                    return;
                }
                if (r < 0) {
                    set_events(c, EPOLLIN);
                    return;
                }
                size_t used = consume_body(c, scratch, r, &done);
                if (used < (size_t)r) {   /* a pipelined next request */
                    size_t extra = r - used;
                    if (extra > HEAD_MAX - c->in_len)
                        extra = HEAD_MAX - c->in_len;
                    memcpy(c->in + c->in_len, scratch + used, extra);
                    c->in_len += extra;
                }
            }
            prepare_response(c);
        }
        int w = write_response(c);
        if (w < 0) {
            conn_close(c);
            return;
        }
        if (w == 0) {
            set_events(c, EPOLLOUT);
            return;
        }
        if (!c->keep_alive) {
            shutdown(c->fd, SHUT_WR);
            conn_close(c);
            return;
        }
        c->st = S_HEAD;
        if (c->in_len == 0) {
            set_events(c, EPOLLIN);
            return;
        }
    }
}

/* Read what the socket has into the head buffer, then process. */
static void on_readable(struct conn *c) {
    if (c->st == S_HEAD) {
        ssize_t r = read(c->fd, c->in + c->in_len, HEAD_MAX - c->in_len);
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR)) {
            conn_close(c);
            return;
        }
        if (r > 0)
            c->in_len += r;
    }
    process(c);
}

/* The next number of a fixed linear congruential sequence (Knuth's MMIX constants). */
static unsigned next_random(unsigned long long *seed) {
    *seed = *seed * 6364136223846793005ULL + 1442695040888963407ULL;
    return (unsigned)(*seed >> 33);
}

/* Append to html[] at *at, never past its end. */
static void put_html(size_t *at, const char *fmt, ...) {
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(html + *at, HTML_SIZE - *at, fmt, args);
    va_end(args);
    if (n > 0)
        *at += (size_t)n < HTML_SIZE - *at ? (size_t)n : HTML_SIZE - *at - 1;
}

/* Fill html[] with a page as a blog index looks: the same markup around every post,
 * titles, authors, dates and text drawn from a word list by a fixed sequence, so it is
 * deterministic and compresses as real pages do (not as one repeated byte would). */
static void fill_html(void) {
    static const char *words[] = {
        "proxy", "stream", "window", "frame", "origin", "header", "cache", "latency",
        "the", "of", "and", "a", "to", "in", "is", "for", "with", "on", "that", "by",
        "connection", "request", "response", "server", "client", "table", "measure",
        "release", "notes", "kernel", "buffer", "memory", "thread", "socket", "queue",
        "priority", "compression", "certificate", "handshake", "timeout", "retry"};
    static const char *authors[] = {"alice", "bob", "carol", "dave", "erin", "frank"};
    const unsigned nwords = sizeof words / sizeof *words;
    unsigned long long seed = 20261206;
    size_t at = 0;
    put_html(&at, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                  "<title>Engineering notes</title>\n<link rel=\"stylesheet\" href=\"/static/site.css\">\n"
                  "</head>\n<body>\n<main class=\"index\">\n");
    for (int post = 1; at < HTML_SIZE - 4096; post++) {
        const char *author = authors[next_random(&seed) % 6];
        unsigned month = 1 + next_random(&seed) % 12, day = 1 + next_random(&seed) % 28;
        const char *t1 = words[next_random(&seed) % nwords];
        const char *t2 = words[next_random(&seed) % nwords];
        const char *t3 = words[next_random(&seed) % nwords];
        put_html(&at, "<article class=\"post\" id=\"post-%d\">\n  <h2 class=\"post-title\">"
                      "<a href=\"/posts/%d\">%s %s %s</a></h2>\n"
                      "  <p class=\"post-meta\">by <a href=\"/authors/%s\">%s</a> on "
                      "<time datetime=\"2026-%02u-%02u\">2026-%02u-%02u</time></p>\n  <p>",
                 post, post, t1, t2, t3, author, author, month, day, month, day);
        unsigned count = 20 + next_random(&seed) % 40;
        for (unsigned i = 0; i < count; i++)
            put_html(&at, "%s%s", i ? " " : "", words[next_random(&seed) % nwords]);
        const char *tag1 = words[next_random(&seed) % nwords];
        const char *tag2 = words[next_random(&seed) % nwords];
        put_html(&at, ".</p>\n  <ul class=\"tags\"><li class=\"tag\">%s</li><li class=\"tag\">%s</li></ul>\n"
                      "</article>\n", tag1, tag2);
    }
    for (; at < HTML_SIZE; at++)   /* the tail: blank lines of spaces */
        html[at] = at % 64 ? ' ' : '\n';
}

static void accept_all(int lfd) {
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->st = S_HEAD;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    }
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 0;
    for (size_t i = 0; i < PATTERN_SIZE; i++)
        pattern[i] = "abcdefghijklmnopqrstuvwxyz0123456789\n"[i % 37];
    fill_html();
    signal(SIGPIPE, SIG_IGN);
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, LISTEN_BACKLOG) < 0) {
        perror("origin: bind/listen");
        return 1;
    }
    socklen_t alen = sizeof addr;
    getsockname(lfd, (struct sockaddr *)&addr, &alen);
    printf("origin listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
    fflush(stdout);
    epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &lev);
    struct epoll_event events[MAX_EVENTS];
    for (;;) {
        int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (!c)
                accept_all(lfd);
            else if (events[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR) && c->st != S_WRITE)
                on_readable(c);
            else
                process(c);
        }
    }
}
