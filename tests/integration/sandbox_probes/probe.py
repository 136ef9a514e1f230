# Escape probes run INSIDE a sandbox by tests/integration/sandbox_escape_test.cc (python3 stdlib
# only; the test passes this file's text with `python3 -c`, so it must not rely on __file__).
#
# Usage: python3 -c "$(cat probe.py)" ACTION [ACTION ...]
# Each ACTION is comma-separated: name,arg1,arg2,... Each prints exactly one line
#   RESULT <name> <json>
# so the test can parse results out of the captured stdout. A probe never raises: every failure
# is reported in the JSON ("error": "..."), and the test decides what is a pass.
import json
import os
import socket
import struct
import subprocess
import sys
import time
import urllib.request

TIMEOUT = 3.0


def report(probe_name, **fields):
    sys.stdout.write("RESULT %s %s\n" % (probe_name, json.dumps(fields, sort_keys=True)))
    sys.stdout.flush()


def err(e):
    return "%s: %s" % (type(e).__name__, e)


def text(data):
    return data[:300].decode("latin-1")


def probe_tcp(host, port, family="4"):
    """Connects, sends an HTTP request, reads what comes back."""
    fam = socket.AF_INET6 if family == "6" else socket.AF_INET
    out = {"host": host, "port": int(port)}
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(TIMEOUT)
    try:
        if fam == socket.AF_INET6:
            info = socket.getaddrinfo(host, int(port), socket.AF_INET6, socket.SOCK_STREAM)
            s.connect(info[0][4])
        else:
            s.connect((host, int(port)))
        out["connected"] = True
        s.sendall(b"GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % host.encode())
        data = b""
        deadline = time.time() + TIMEOUT
        while time.time() < deadline and len(data) < 4096:
            try:
                chunk = s.recv(4096)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
        out["received"] = text(data)
    except Exception as e:  # noqa: BLE001 - every failure is a result
        out["connected"] = out.get("connected", False)
        out["error"] = err(e)
    finally:
        s.close()
    report("tcp", **out)


def probe_opaque(host, port):
    """Connects and sends non-HTTP, non-TLS bytes (a database-like protocol)."""
    out = {"host": host, "port": int(port)}
    try:
        s = socket.create_connection((host, int(port)), timeout=TIMEOUT)
        out["connected"] = True
        s.sendall(b"\x00\x01\x02\x03OPAQUE-PROBE\n")
        try:
            out["received"] = text(s.recv(4096))
        except socket.timeout:
            out["received"] = ""
        s.close()
    except Exception as e:  # noqa: BLE001
        out["connected"] = out.get("connected", False)
        out["error"] = err(e)
    report("opaque", **out)


def probe_http(url):
    out = {"url": url}
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            out["status"] = response.status
            out["body"] = text(response.read())
    except urllib.error.HTTPError as e:
        out["status"] = e.code
        out["body"] = text(e.read())
    except Exception as e:  # noqa: BLE001
        out["error"] = err(e)
    report("http", **out)


def probe_resolve(name):
    out = {"name": name}
    try:
        infos = socket.getaddrinfo(name, 80, proto=socket.IPPROTO_TCP)
        out["addresses"] = sorted({info[4][0] for info in infos})
    except Exception as e:  # noqa: BLE001
        out["error"] = err(e)
    report("resolve", **out)


def probe_udp(host, port, token, family="4"):
    """Sends datagrams; a reply would mean something answered."""
    fam = socket.AF_INET6 if family == "6" else socket.AF_INET
    out = {"host": host, "port": int(port)}
    try:
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(0.5)
        sent = 0
        for _ in range(3):
            try:
                s.sendto(("UDP-PROBE-" + token).encode(), (host, int(port)))
                sent += 1
            except OSError as e:
                out["send_error"] = err(e)
        out["sent"] = sent
        try:
            data, peer = s.recvfrom(4096)
            out["reply"] = text(data)
        except (socket.timeout, OSError) as e:
            out["recv_error"] = err(e)
        s.close()
    except Exception as e:  # noqa: BLE001
        out["error"] = err(e)
    report("udp", **out)


def dns_query(name, qid, qtype=1):
    header = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0)
    body = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".") if p) + b"\x00"
    return header + body + struct.pack("!HH", qtype, 1)


def skip_name(data, offset):
    while True:
        length = data[offset]
        if length == 0:
            return offset + 1
        if length & 0xC0 == 0xC0:
            return offset + 2
        offset += 1 + length


def dns_answers(data):
    qid, flags, qd, an, _, _ = struct.unpack("!HHHHHH", data[:12])
    offset = 12
    for _ in range(qd):
        offset = skip_name(data, offset) + 4
    answers = []
    for _ in range(an):
        offset = skip_name(data, offset)
        rtype, _, _, rdlength = struct.unpack("!HHIH", data[offset:offset + 10])
        offset += 10
        rdata = data[offset:offset + rdlength]
        offset += rdlength
        if rtype == 1 and rdlength == 4:
            answers.append(socket.inet_ntoa(rdata))
        elif rtype == 28 and rdlength == 16:
            answers.append(socket.inet_ntop(socket.AF_INET6, rdata))
    return flags & 0xF, answers


def probe_dns(server, port, name):
    """A raw DNS query to an explicit resolver address."""
    out = {"server": server, "port": int(port), "name": name}
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(1.0)
        s.sendto(dns_query(name, 0x4242), (server, int(port)))
        data, peer = s.recvfrom(4096)
        out["from"] = peer[0]
        out["rcode"], out["answers"] = dns_answers(data)
        s.close()
    except Exception as e:  # noqa: BLE001
        out["error"] = err(e)
    report("dns", **out)


def checksum(data):
    if len(data) % 2:
        data += b"\x00"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def probe_ping(host):
    """ICMP echo through an unprivileged ping socket and through a raw socket."""
    out = {"host": host}
    for label, kind in (("dgram", socket.SOCK_DGRAM), ("raw", socket.SOCK_RAW)):
        try:
            s = socket.socket(socket.AF_INET, kind, socket.IPPROTO_ICMP)
        except Exception as e:  # noqa: BLE001
            out[label] = "socket: " + err(e)
            continue
        try:
            s.settimeout(0.7)
            payload = b"CLRK-PING-PROBE"
            header = struct.pack("!BBHHH", 8, 0, 0, 0x77, 1)
            packet = header[:2] + struct.pack("!H", checksum(header + payload)) + header[4:] + payload
            s.sendto(packet, (host, 0))
            try:
                data, peer = s.recvfrom(4096)
                out[label] = "reply from %s" % peer[0]
            except socket.timeout:
                out[label] = "sent, no reply"
        except Exception as e:  # noqa: BLE001
            out[label] = "send: " + err(e)
        finally:
            s.close()
    try:
        result = subprocess.run(["/bin/busybox", "ping", "-c", "1", "-W", "1", host],
                                capture_output=True, timeout=5)
        out["busybox_exit"] = result.returncode
        out["busybox_output"] = text(result.stdout + result.stderr)
    except Exception as e:  # noqa: BLE001
        out["busybox_exit"] = -1
        out["busybox_output"] = err(e)
    report("ping", **out)


def ip_udp_packet(src, dst, port, payload):
    udp_len = 8 + len(payload)
    udp = struct.pack("!HHHH", 40000, int(port), udp_len, 0) + payload
    total = 20 + udp_len
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 0x1234, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return ip + udp


def probe_raw(host, port, token):
    """AF_PACKET and raw IP sockets: creation should fail; if it does not, a hand-made UDP
    datagram to host:port is sent (the test's host listener must not see it)."""
    out = {"host": host, "port": int(port)}
    payload = ("RAW-PROBE-" + token).encode()
    src = "0.0.0.0"
    try:
        probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        probe.connect((host, int(port)))
        src = probe.getsockname()[0]
        probe.close()
    except Exception:  # noqa: BLE001
        pass
    packet = ip_udp_packet(src, host, port, payload)
    try:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        out["packet_socket"] = "created"
        try:
            sent = 0
            for name in os.listdir("/sys/class/net"):
                if name == "lo":
                    continue
                try:
                    s.bind((name, 0))
                    frame = b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + b"\x08\x00" + packet
                    s.send(frame)
                    sent += 1
                except Exception as e:  # noqa: BLE001
                    out["packet_send_error"] = err(e)
            out["packet_frames_sent"] = sent
        finally:
            s.close()
    except Exception as e:  # noqa: BLE001
        out["packet_socket"] = "socket: " + err(e)
    for label, proto in (("raw_ip", socket.IPPROTO_RAW), ("raw_udp", socket.IPPROTO_UDP),
                         ("raw_tcp", socket.IPPROTO_TCP)):
        try:
            s = socket.socket(socket.AF_INET, socket.SOCK_RAW, proto)
            out[label] = "created"
            try:
                if proto == socket.IPPROTO_RAW:
                    s.sendto(packet, (host, 0))
                else:
                    s.sendto(packet[20:], (host, 0))
                out[label] = "sent"
            except Exception as e:  # noqa: BLE001
                out[label] = "send: " + err(e)
            finally:
                s.close()
        except Exception as e:  # noqa: BLE001
            out[label] = "socket: " + err(e)
    report("raw", **out)


SEARCH_ROOTS = ["/tmp", "/var/tmp", "/run", "/dev/shm", "/mnt", "/srv", "/opt", "/home", "/root",
                "/work", "/var/lib/clrk", "/etc/clrk"]


def walk_for(roots, marker, secret, deadline, found, errors):
    seen = 0
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root, onerror=None, followlinks=False):
            if time.time() > deadline or seen > 50000:
                errors.append("search limit reached under " + root)
                return
            # Never descend into /proc-like trees from here.
            dirnames[:] = [d for d in dirnames if not os.path.join(dirpath, d).startswith("/proc")]
            for name in filenames + dirnames:
                path = os.path.join(dirpath, name)
                seen += 1
                if marker in name:
                    found.append(path)
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    if os.path.islink(path) or os.path.getsize(path) > 1 << 20:
                        continue
                    with open(path, "rb") as f:
                        if secret.encode() in f.read():
                            found.append(path + " (content)")
                except Exception:  # noqa: BLE001
                    pass


def probe_find(marker, secret, extra_roots=""):
    """Looks for another sandbox's file (name contains `marker`, content contains `secret`) and
    processes (cmdline contains `marker`) everywhere this sandbox can look."""
    found, errors = [], []
    deadline = time.time() + 20
    roots = SEARCH_ROOTS + [r for r in extra_roots.split(":") if r]
    pids = [p for p in os.listdir("/proc") if p.isdigit()]
    proc_roots = []
    for pid in pids:
        if int(pid) == os.getpid():
            continue
        for sub in ("root/tmp", "root/run"):
            path = "/proc/%s/%s" % (pid, sub)
            try:
                os.listdir(path)
                proc_roots.append(path)
            except Exception:  # noqa: BLE001
                pass
    walk_for(roots + proc_roots, marker, secret, deadline, found, errors)
    processes = []
    for pid in pids:
        if int(pid) == os.getpid():
            continue
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if marker.encode() in f.read():
                    processes.append(int(pid))
        except Exception:  # noqa: BLE001
            pass
    report("find", found=found, processes=processes, pids=len(pids), errors=errors[:5])


def probe_read(path):
    out = {"path": path}
    try:
        if os.path.isdir(path):
            out["listing"] = sorted(os.listdir(path))[:50]
            out["readable"] = True
        else:
            with open(path, "rb") as f:
                out["content"] = text(f.read())
            out["readable"] = True
    except Exception as e:  # noqa: BLE001
        out["readable"] = False
        out["error"] = err(e)
    out["exists"] = os.path.lexists(path)
    report("read", **out)


def probe_cmd(*argv):
    out = {"argv": list(argv)}
    try:
        result = subprocess.run(list(argv), capture_output=True, timeout=10)
        out["exit"] = result.returncode
        out["output"] = text(result.stdout + result.stderr)
    except Exception as e:  # noqa: BLE001
        out["exit"] = -1
        out["output"] = err(e)
    report("cmd", **out)


def probe_caps():
    out = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("CapEff", "CapPrm", "CapBnd", "NoNewPrivs", "Seccomp")):
                    key, value = line.split(":", 1)
                    out[key] = value.strip()
    except Exception as e:  # noqa: BLE001
        out["error"] = err(e)
    out["uid"] = os.getuid()
    report("caps", **out)


def probe_interfaces():
    try:
        names = sorted(os.listdir("/sys/class/net"))
    except Exception as e:  # noqa: BLE001
        names = ["error " + err(e)]
    report("interfaces", names=names)


def probe_daemon(marker, hold):
    """Double-forks a daemon in a new session whose argv carries `marker`, then checks it runs.
    With hold=1 this process then sleeps (the test destroys the sandbox while it runs)."""
    script = ("/usr/bin/python3 -c 'import time; time.sleep(300)' %s & sleep 300 & exit 0" % marker)
    subprocess.run(["setsid", "/bin/sh", "-c", script], timeout=10)
    running = []
    for _ in range(30):
        running = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open("/proc/%s/cmdline" % pid, "rb") as f:
                    if marker.encode() in f.read() and int(pid) != os.getpid():
                        running.append(int(pid))
            except Exception:  # noqa: BLE001
                pass
        if running:
            break
        time.sleep(0.1)
    report("daemon", running=running)
    if hold == "1":
        time.sleep(300)


ACTIONS = {
    "tcp": probe_tcp,
    "opaque": probe_opaque,
    "http": probe_http,
    "resolve": probe_resolve,
    "udp": probe_udp,
    "dns": probe_dns,
    "ping": probe_ping,
    "raw": probe_raw,
    "find": probe_find,
    "read": probe_read,
    "cmd": probe_cmd,
    "caps": probe_caps,
    "interfaces": probe_interfaces,
    "daemon": probe_daemon,
}


def main(argv):
    for action in argv:
        name, *args = action.split(",")
        try:
            ACTIONS[name](*args)
        except Exception as e:  # noqa: BLE001
            report(name, error="probe crashed: " + err(e))
    report("done")


main(sys.argv[1:])
