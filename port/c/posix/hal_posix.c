/* hal_posix.c: see hal_posix.h. */
#include "hal_posix.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#define WRITE_TIMEOUT_MS 2000 /* port.WRITE_TIMEOUT_S: a UART that cannot take the bytes is gone */

/* The termios speed of a line rate; false for a rate termios has no constant for. */
static bool speed_of(uint32_t baud, speed_t *speed)
{
    static const struct {
        uint32_t baud;
        speed_t speed;
    } rates[] = {{9600u, B9600}, {19200u, B19200}, {38400u, B38400}, {57600u, B57600},
                 {115200u, B115200}, {230400u, B230400}, {460800u, B460800},
                 {921600u, B921600}};
    size_t i;

    for (i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        if (rates[i].baud == baud) {
            *speed = rates[i].speed;
            return true;
        }
    }
    return false;
}

bool hal_posix_baud_supported(uint32_t baud)
{
    speed_t speed;
    return speed_of(baud, &speed);
}

int hal_posix_open(hal_posix_t *port, const char *path, uint32_t baud, char *error,
                   size_t error_size)
{
    struct termios tio;
    speed_t speed;
    int fd;

    if (!speed_of(baud, &speed)) {
        snprintf(error, error_size, "unsupported baud rate %lu", (unsigned long)baud);
        return -1;
    }
    fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(error, error_size, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    if (tcgetattr(fd, &tio) != 0) {
        snprintf(error, error_size, "%s is not a serial port: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    /* Raw: no line editing, no echo, no CR/LF translation, no flow control, 8 bits. Reads
     * return what is there at once (VMIN 0, VTIME 0; the descriptor is non-blocking too). */
    tio.c_iflag &= ~(tcflag_t)(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON |
                               IXOFF);
    tio.c_oflag &= ~(tcflag_t)OPOST;
    tio.c_lflag &= ~(tcflag_t)(ECHO | ECHONL | ICANON | ISIG | IEXTEN);
    tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | CSTOPB);
    tio.c_cflag |= (tcflag_t)(CS8 | CREAD | CLOCAL);
    tio.c_cc[VMIN] = 0;
    tio.c_cc[VTIME] = 0;
    cfsetispeed(&tio, speed);
    cfsetospeed(&tio, speed);
    if (tcsetattr(fd, TCSANOW, &tio) != 0) {
        snprintf(error, error_size, "cannot configure %s: %s", path, strerror(errno));
        close(fd);
        return -1;
    }
    port->fd = fd;
    port->lost = false;
    return 0;
}

/* Twin: SerialPort.read. With VMIN 0 a tty read returns 0 both when nothing is there and when
 * the other end hung up: poll() tells the two apart (POLLHUP). */
static int32_t posix_read(void *ctx, uint8_t *buf, size_t n)
{
    hal_posix_t *port = ctx;
    struct pollfd pfd;
    ssize_t got = read(port->fd, buf, n);

    if (got > 0) {
        return (int32_t)got;
    }
    if (got < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        port->lost = true; /* EIO: the pty master closed, the USB adapter went away */
        return HAL_PORT_LOST;
    }
    pfd.fd = port->fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    if (poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLHUP | POLLERR | POLLNVAL)) != 0) {
        port->lost = true;
        return HAL_PORT_LOST;
    }
    return 0;
}

/* Twin: SerialPort.write: every byte, or lost after WRITE_TIMEOUT_MS without progress. */
static int32_t posix_write(void *ctx, const uint8_t *buf, size_t n)
{
    hal_posix_t *port = ctx;
    size_t done = 0;

    while (done < n) {
        ssize_t put = write(port->fd, buf + done, n - done);
        if (put > 0) {
            done += (size_t)put;
        } else if (put < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
            struct pollfd pfd;
            pfd.fd = port->fd;
            pfd.events = POLLOUT;
            pfd.revents = 0;
            if (poll(&pfd, 1, WRITE_TIMEOUT_MS) <= 0 || (pfd.revents & POLLOUT) == 0) {
                port->lost = true;
                return HAL_PORT_LOST;
            }
        } else {
            port->lost = true;
            return HAL_PORT_LOST;
        }
    }
    return (int32_t)n;
}

/* Twin: host/clock.monotonic_ms: the monotonic clock as a wrapping 32-bit millisecond count. */
static uint32_t posix_millis(void *ctx)
{
    struct timespec now;

    (void)ctx;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint32_t)((uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u);
}

static void posix_log(void *ctx, hal_log_level_t level, const char *line)
{
    static const char *const names[] = {"debug", "info", "warning", "error"};
    const hal_posix_t *port = ctx;

    if (level >= port->log_level) {
        fprintf(stderr, "%s: %s: %s\n", port->program, names[level], line);
    }
}

hal_t hal_posix(hal_posix_t *port)
{
    hal_t hal;

    hal.ctx = port;
    hal.uart_read = posix_read;
    hal.uart_write = posix_write;
    hal.millis = posix_millis;
    hal.reset_pin = NULL; /* a host has no RESET line to the module */
    hal.log = posix_log;
    hal.wall_clock_ms = NULL;
    return hal;
}

void hal_posix_wait(const hal_posix_t *port, uint32_t timeout_ms)
{
    struct pollfd pfd;

    pfd.fd = port->fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    (void)poll(&pfd, 1, timeout_ms > 60000u ? 60000 : (int)timeout_ms);
}

void hal_posix_close(hal_posix_t *port)
{
    if (port->fd >= 0) {
        close(port->fd);
        port->fd = -1;
    }
}
