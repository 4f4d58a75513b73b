/*
 * delay-proxy: a TCP forwarder that adds a fixed one-way delay in each direction, so that a
 * benchmark on one machine sees the round-trip time of a network (RTT added = 2 x the delay).
 *
 *   delay-proxy <listen-port> <target-host> <target-port> <one-way-delay-us>
 *
 * Listens on 127.0.0.1 (port 0: any free port) and prints `listening on 127.0.0.1:<port>` once
 * ready. Each accepted connection gets its own connection to the target. Every chunk read from
 * one side is queued with its due time (the time it was read plus the delay) and written to the
 * other side when that time comes, in order. Chunks keep their own due times: two messages sent
 * back to back leave back to back, each one delay late, as on a wire with latency (a delay per
 * message, waiting for the previous one's, would add up and price pipelining wrongly).
 *
 * Single-threaded: one epoll loop; a timerfd armed at the earliest due time (microsecond
 * precision, where epoll_wait's own timeout counts whole milliseconds). Sockets are non-blocking,
 * partial writes keep their place, TCP_NODELAY is set on both sides. On EOF from one side the
 * bytes already queued are still delivered, then both sides close; on an error both close at once.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define READ_SIZE 65536
/* Stop reading from a side while this much waits to go the other way (backpressure). */
#define QUEUE_LIMIT (4 * 1024 * 1024)
#define MAX_EVENTS 64

struct chunk {
  struct chunk *next;
  uint64_t due_ns;
  size_t len;
  size_t sent;
  char data[];
};

/* Bytes travelling one way: read from `from`'s socket, written to the other side's. */
struct direction {
  struct chunk *head;
  struct chunk *tail;
  size_t queued;
  int stuck; /* the writing side's socket was full: wait for EPOLLOUT */
  int eof;   /* the reading side sent EOF: close the pair once the queue is empty */
};

struct conn;

struct side {
  struct conn *conn;
  int fd;
  uint32_t events; /* the epoll interest currently registered */
};

struct conn {
  struct side client;
  struct side upstream;
  struct direction to_upstream;
  struct direction to_client;
  int connecting;
  int closed;
  struct conn *next;
};

static int epfd;
static int timerfd;
static int listenfd;
static uint64_t delay_ns;
static struct addrinfo *target;
static struct conn *conns;
/* Closed during one batch of events and freed after it: later events may still point at them. */
static struct conn *graveyard;
static char buffer[READ_SIZE];

/* Tags for the two fds that are not connection sides. */
static int listen_tag;
static int timer_tag;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
  perror(what);
  exit(1);
}

static void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* The direction whose bytes `s` reads. */
static struct direction *outgoing(struct side *s) {
  return s == &s->conn->client ? &s->conn->to_upstream : &s->conn->to_client;
}

/* The direction whose bytes `s` writes. */
static struct direction *incoming(struct side *s) {
  return s == &s->conn->client ? &s->conn->to_client : &s->conn->to_upstream;
}

static void free_queue(struct direction *d) {
  while (d->head) {
    struct chunk *c = d->head;
    d->head = c->next;
    free(c);
  }
  d->tail = NULL;
  d->queued = 0;
}

static void close_conn(struct conn *c) {
  if (c->closed) return;
  c->closed = 1;
  close(c->client.fd);
  close(c->upstream.fd);
  free_queue(&c->to_upstream);
  free_queue(&c->to_client);
  for (struct conn **p = &conns; *p; p = &(*p)->next) {
    if (*p == c) {
      *p = c->next;
      break;
    }
  }
  c->next = graveyard;
  graveyard = c;
}

/* Registers what `s` waits for: readable while it may read, writable while a write is stuck. */
static void update_interest(struct side *s) {
  struct conn *c = s->conn;
  if (c->closed) return;
  uint32_t want = 0;
  struct direction *out = outgoing(s);
  int is_upstream = s == &c->upstream;
  if (is_upstream && c->connecting) {
    want = EPOLLOUT;
  } else {
    if (!out->eof && out->queued < QUEUE_LIMIT) want |= EPOLLIN;
    if (incoming(s)->stuck) want |= EPOLLOUT;
  }
  if (want == s->events) return;
  struct epoll_event ev = {.events = want, .data.ptr = s};
  if (epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev) < 0) die("epoll_ctl");
  s->events = want;
}

/*
 * Writes the due chunks of `d` to `to`. Returns -1 on a write error (the pair must close).
 * A chunk cut short by a full socket keeps its offset and waits for EPOLLOUT.
 */
static int flush(struct direction *d, struct side *to, uint64_t now) {
  while (d->head && d->head->due_ns <= now) {
    struct chunk *ch = d->head;
    ssize_t n = send(to->fd, ch->data + ch->sent, ch->len - ch->sent, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        d->stuck = 1;
        return 0;
      }
      if (errno == EINTR) continue;
      return -1;
    }
    ch->sent += (size_t)n;
    d->queued -= (size_t)n;
    if (ch->sent < ch->len) {
      d->stuck = 1;
      return 0;
    }
    d->head = ch->next;
    if (!d->head) d->tail = NULL;
    free(ch);
  }
  d->stuck = 0;
  return 0;
}

/* Flushes both directions of `c`, closes it if done or broken, and updates its interests. */
static void service(struct conn *c, uint64_t now) {
  if (c->closed) return;
  if (!c->connecting) {
    if (flush(&c->to_upstream, &c->upstream, now) < 0 || flush(&c->to_client, &c->client, now) < 0) {
      close_conn(c);
      return;
    }
  }
  /* EOF from a side: once everything it sent has gone out, close both. */
  if ((c->to_upstream.eof && !c->to_upstream.head) || (c->to_client.eof && !c->to_client.head)) {
    close_conn(c);
    return;
  }
  update_interest(&c->client);
  update_interest(&c->upstream);
}

static void arm_timer(void) {
  uint64_t earliest = 0;
  for (struct conn *c = conns; c; c = c->next) {
    if (c->connecting) continue;
    const struct direction *ds[2] = {&c->to_upstream, &c->to_client};
    for (int i = 0; i < 2; i++) {
      const struct direction *d = ds[i];
      /* A stuck queue waits for EPOLLOUT, not for the timer. */
      if (!d->head || d->stuck) continue;
      if (earliest == 0 || d->head->due_ns < earliest) earliest = d->head->due_ns;
    }
  }
  struct itimerspec spec = {0};
  if (earliest) {
    spec.it_value.tv_sec = (time_t)(earliest / 1000000000u);
    spec.it_value.tv_nsec = (long)(earliest % 1000000000u);
  }
  if (timerfd_settime(timerfd, TFD_TIMER_ABSTIME, &spec, NULL) < 0) die("timerfd_settime");
}

static void add_side(struct side *s, uint32_t events) {
  struct epoll_event ev = {.events = events, .data.ptr = s};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, s->fd, &ev) < 0) die("epoll_ctl");
  s->events = events;
}

static void accept_all(void) {
  for (;;) {
    int fd = accept4(listenfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EINTR || errno == ECONNABORTED) continue;
      perror("accept4");
      return;
    }
    int up = socket(target->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (up < 0) {
      perror("socket");
      close(fd);
      continue;
    }
    set_nodelay(fd);
    set_nodelay(up);
    int connecting = 0;
    if (connect(up, target->ai_addr, target->ai_addrlen) < 0) {
      if (errno != EINPROGRESS) {
        close(fd);
        close(up);
        continue;
      }
      connecting = 1;
    }
    struct conn *c = calloc(1, sizeof *c);
    if (!c) die("calloc");
    c->client = (struct side){.conn = c, .fd = fd};
    c->upstream = (struct side){.conn = c, .fd = up};
    c->connecting = connecting;
    c->next = conns;
    conns = c;
    add_side(&c->client, EPOLLIN);
    add_side(&c->upstream, connecting ? EPOLLOUT : EPOLLIN);
  }
}

/* Reads what `s` has into a new chunk bound the other way, due one delay from now. */
static void read_side(struct side *s, uint64_t now) {
  struct direction *d = outgoing(s);
  ssize_t n = recv(s->fd, buffer, sizeof buffer, 0);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return;
    close_conn(s->conn);
    return;
  }
  if (n == 0) {
    d->eof = 1;
    return;
  }
  struct chunk *ch = malloc(sizeof *ch + (size_t)n);
  if (!ch) die("malloc");
  ch->next = NULL;
  ch->due_ns = now + delay_ns;
  ch->len = (size_t)n;
  ch->sent = 0;
  memcpy(ch->data, buffer, (size_t)n);
  if (d->tail) d->tail->next = ch;
  else d->head = ch;
  d->tail = ch;
  d->queued += (size_t)n;
}

static void handle(struct side *s, uint32_t events, uint64_t now) {
  struct conn *c = s->conn;
  if (c->closed) return;
  if (s == &c->upstream && c->connecting) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      close_conn(c);
      return;
    }
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    c->connecting = 0;
    return;
  }
  if (events & EPOLLERR) {
    close_conn(c);
    return;
  }
  /* Both ways shut (EPOLLHUP is reported whatever the interest): nothing more can pass. */
  if ((events & EPOLLHUP) && outgoing(s)->eof) {
    close_conn(c);
    return;
  }
  if (events & (EPOLLIN | EPOLLHUP)) read_side(s, now);
}

static int parse_uint(const char *text, const char *name, unsigned long max) {
  char *end;
  errno = 0;
  unsigned long value = strtoul(text, &end, 10);
  if (errno || *text == '\0' || *end != '\0' || value > max) {
    fprintf(stderr, "delay-proxy: %s must be an integer from 0 to %lu, got '%s'\n", name, max, text);
    exit(2);
  }
  return (int)value;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: delay-proxy <listen-port> <target-host> <target-port> <one-way-delay-us>\n");
    return 2;
  }
  int listen_port = parse_uint(argv[1], "listen-port", 65535);
  parse_uint(argv[3], "target-port", 65535);
  delay_ns = (uint64_t)parse_uint(argv[4], "one-way-delay-us", 10000000) * 1000u;

  /* Exit with the process that started it, even if that one is killed outright. */
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  /* The default timer slack (50 us) would add up to 50 us to every release. */
  prctl(PR_SET_TIMERSLACK, 1UL);
  signal(SIGPIPE, SIG_IGN);

  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
  int rc = getaddrinfo(argv[2], argv[3], &hints, &target);
  if (rc != 0) {
    fprintf(stderr, "delay-proxy: cannot resolve %s:%s: %s\n", argv[2], argv[3], gai_strerror(rc));
    return 1;
  }

  listenfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listenfd < 0) die("socket");
  int one = 1;
  setsockopt(listenfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)listen_port)};
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(listenfd, (struct sockaddr *)&addr, sizeof addr) < 0) die("bind");
  if (listen(listenfd, 128) < 0) die("listen");
  socklen_t addrlen = sizeof addr;
  if (getsockname(listenfd, (struct sockaddr *)&addr, &addrlen) < 0) die("getsockname");

  epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) die("epoll_create1");
  timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timerfd < 0) die("timerfd_create");
  struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listen_tag};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, listenfd, &ev) < 0) die("epoll_ctl");
  ev = (struct epoll_event){.events = EPOLLIN, .data.ptr = &timer_tag};
  if (epoll_ctl(epfd, EPOLL_CTL_ADD, timerfd, &ev) < 0) die("epoll_ctl");

  printf("listening on 127.0.0.1:%d\n", ntohs(addr.sin_port));
  fflush(stdout);

  struct epoll_event events[MAX_EVENTS];
  for (;;) {
    int n = epoll_wait(epfd, events, MAX_EVENTS, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      die("epoll_wait");
    }
    uint64_t now = now_ns();
    for (int i = 0; i < n; i++) {
      void *tag = events[i].data.ptr;
      if (tag == &listen_tag) {
        accept_all();
      } else if (tag == &timer_tag) {
        uint64_t expirations;
        while (read(timerfd, &expirations, sizeof expirations) > 0) {
        }
      } else {
        handle(tag, events[i].events, now);
      }
    }
    /* Release whatever is due, on every connection, then sleep until the next due time. */
    now = now_ns();
    for (struct conn *c = conns, *next; c; c = next) {
      next = c->next;
      service(c, now);
    }
    while (graveyard) {
      struct conn *c = graveyard;
      graveyard = c->next;
      free(c);
    }
    arm_timer();
  }
}
