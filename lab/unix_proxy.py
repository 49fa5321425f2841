# Copyright: (c) 2026, virtops maintainers
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A unix-socket proxy the lab can cut: the controller's path to a libvirt daemon.

    unix_proxy.py --listen SOCKET --upstream SOCKET --control FILE

It listens on SOCKET and forwards each connection, byte for byte, to the
upstream socket (libvirtd's /var/run/libvirt/libvirt-sock). FILE holds the
mode; on SIGHUP the proxy reads it again, applies it, and writes what it
applied to FILE.applied (`<mode> <pid>`), which is also how the lab knows the
proxy is listening. Modes:

* `forward`: connect upstream and forward, both ways. Connections accepted
  while `silent` are connected upstream now, and what was held moves on.
* `silent`: a network partition. New connections are accepted and never
  connected upstream; existing ones freeze where they are: not a byte is
  read or written, in either direction (what the kernel buffers stays there,
  so each sender's writes block, as on a cut link). A side that hangs up
  meanwhile is closed on its side only; the other side learns of it when the
  link heals (`forward`).
* `refuse`: a dead peer. Every connection is closed and the socket refuses new
  ones (ECONNREFUSED: the path is bound but not listening).

SIGTERM or SIGINT: close everything, remove SOCKET, exit 0. Stdlib only, one
thread, poll(2).
"""

import argparse
import errno
import os
import select
import signal
import socket
import sys

MODES = ("forward", "silent", "refuse")
CHUNK = 65536
HELD = 1 << 20  # at most this much is buffered per direction before the proxy stops reading that side
RDHUP = getattr(select, "POLLRDHUP", 0x2000)
HANGUP = select.POLLHUP | select.POLLERR | select.POLLNVAL | RDHUP


class Conn:
    """One client connection and its upstream twin (None until connected)."""

    def __init__(self, client):
        self.sock = {"client": client, "upstream": None}
        self.buf = {"client": bytearray(), "upstream": bytearray()}  # bytes waiting to be written TO that side
        self.gone = {"client": False, "upstream": False}  # that side hung up (its socket is closed)

    @staticmethod
    def other(side):
        return "upstream" if side == "client" else "client"


class Proxy:
    def __init__(self, listen, upstream, control):
        self.listen_path, self.upstream_path, self.control = listen, upstream, control
        self.mode = None
        self.listener = None
        self.conns = []
        self.stop = False
        self.wake_r, self.wake_w = socket.socketpair()
        self.wake_r.setblocking(False)
        self.wake_w.setblocking(False)
        self.hup = False

    # --- modes ---------------------------------------------------------------------
    def _bind(self, listening):
        if self.listener is not None:
            self.listener[0].close()
            self.listener = None
        try:
            os.unlink(self.listen_path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.bind(self.listen_path)
        os.chmod(self.listen_path, 0o777)  # as libvirt-sock: libvirtd itself decides who may do what
        if listening:
            sock.listen(64)
            sock.setblocking(False)
        self.listener = (sock, listening)

    def apply(self, mode):
        if mode not in MODES:
            print("unix_proxy: unknown mode %r in %s, kept %s" % (mode, self.control, self.mode), file=sys.stderr)
            mode = self.mode or "forward"
        if mode == "refuse":
            for conn in self.conns:
                self._close(conn)
            self.conns = []
            if self.listener is None or self.listener[1]:
                self._bind(listening=False)
        else:
            if self.listener is None or not self.listener[1]:
                self._bind(listening=True)
            if mode == "forward":
                for conn in list(self.conns):
                    self._heal(conn)
        self.mode = mode
        with open(self.control + ".applied.new", "w", encoding="ascii") as handle:
            handle.write("%s %d\n" % (mode, os.getpid()))
        os.replace(self.control + ".applied.new", self.control + ".applied")
        print("unix_proxy: %s" % mode, file=sys.stderr, flush=True)

    def read_control(self):
        try:
            with open(self.control, encoding="ascii", errors="replace") as handle:
                return handle.read().strip() or "forward"
        except FileNotFoundError:
            return "forward"

    # --- connections ---------------------------------------------------------------------
    def _connect_upstream(self, conn):
        up = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            up.settimeout(5)
            up.connect(self.upstream_path)
        except OSError as exc:
            up.close()
            print("unix_proxy: upstream %s: %s" % (self.upstream_path, exc), file=sys.stderr, flush=True)
            return False
        up.setblocking(False)
        conn.sock["upstream"] = up
        return True

    def _heal(self, conn):
        """The link is back: connect what was accepted meanwhile; pass on a hang-up that happened meanwhile."""
        if conn.gone["client"]:
            self._close(conn)
            return
        if conn.sock["upstream"] is None and not conn.gone["upstream"]:
            if not self._connect_upstream(conn):
                self._close(conn)
                return
        if conn.gone["upstream"] and not conn.buf["client"]:
            self._close(conn)

    def _close(self, conn):
        for side in ("client", "upstream"):
            if conn.sock[side] is not None:
                try:
                    conn.sock[side].close()
                except OSError:
                    pass
                conn.sock[side] = None
            conn.gone[side] = True
        if conn in self.conns:
            self.conns.remove(conn)

    def _hangup(self, conn, side):
        conn.sock[side].close()
        conn.sock[side] = None
        conn.gone[side] = True
        conn.buf[side].clear()
        if self.mode == "forward":
            other = conn.other(side)
            if not conn.buf[other] or conn.sock[other] is None:
                self._close(conn)

    def _accept(self):
        sock, _listening = self.listener
        while True:
            try:
                client, _addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                print("unix_proxy: accept: %s" % exc, file=sys.stderr, flush=True)
                return
            client.setblocking(False)
            conn = Conn(client)
            self.conns.append(conn)
            if self.mode == "forward" and not self._connect_upstream(conn):
                self._close(conn)

    def _readable(self, conn, side):
        other = conn.other(side)
        try:
            data = conn.sock[side].recv(CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._hangup(conn, side)
            return
        conn.buf[other] += data

    def _writable(self, conn, side):
        try:
            sent = conn.sock[side].send(conn.buf[side])
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._hangup(conn, side)
            return
        del conn.buf[side][:sent]
        other = conn.other(side)
        if not conn.buf[side] and conn.gone[other]:
            self._close(conn)

    # --- the loop ---------------------------------------------------------------------
    def _on_signal(self, signum, _frame):
        if signum == signal.SIGHUP:
            self.hup = True
        else:
            self.stop = True

    def run(self):
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        signal.set_wakeup_fd(self.wake_w.fileno(), warn_on_full_buffer=False)
        self.apply(self.read_control())
        while not self.stop:
            if self.hup:
                self.hup = False
                self.apply(self.read_control())
                continue
            poller = select.poll()
            where = {self.wake_r.fileno(): ("wake", None, None)}
            poller.register(self.wake_r, select.POLLIN)
            sock, listening = self.listener
            if listening:
                poller.register(sock, select.POLLIN)
                where[sock.fileno()] = ("listen", None, None)
            for conn in self.conns:
                for side in ("client", "upstream"):
                    s = conn.sock[side]
                    if s is None:
                        continue
                    if self.mode == "silent":
                        mask = RDHUP  # frozen: only notice a hang-up, read nothing
                    else:
                        other = conn.other(side)
                        mask = RDHUP
                        if len(conn.buf[other]) < HELD and not conn.gone[other] and conn.sock[other] is not None:
                            mask |= select.POLLIN
                        if conn.buf[side]:
                            mask |= select.POLLOUT
                    poller.register(s, mask)
                    where[s.fileno()] = ("conn", conn, side)
            try:
                events = poller.poll()
            except InterruptedError:
                continue
            for fd, event in events:
                kind, conn, side = where[fd]
                if kind == "wake":
                    try:
                        while self.wake_r.recv(512):
                            pass
                    except (BlockingIOError, InterruptedError):
                        pass
                    continue
                if kind == "listen":
                    if self.listener[0].fileno() == fd and self.mode != "refuse":
                        self._accept()
                    continue
                if conn not in self.conns or conn.sock[side] is None:
                    continue
                if self.mode == "silent":
                    if event & HANGUP:
                        self._hangup(conn, side)
                    continue
                if event & select.POLLOUT and conn.sock[side] is not None:
                    self._writable(conn, side)
                if conn in self.conns and conn.sock[side] is not None and event & (select.POLLIN | HANGUP):
                    self._readable(conn, side)
        for conn in list(self.conns):
            self._close(conn)
        if self.listener is not None:
            self.listener[0].close()
        try:
            os.unlink(self.listen_path)
        except FileNotFoundError:
            pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--control", required=True)
    args = parser.parse_args(argv)
    try:
        Proxy(args.listen, args.upstream, args.control).run()
    except OSError as exc:
        print("unix_proxy: %s" % exc, file=sys.stderr)
        return 1 if exc.errno != errno.ENAMETOOLONG else 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
