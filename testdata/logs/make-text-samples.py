#!/usr/bin/env python3
"""Convert testdata/dmesg fixtures into the other text forms hangwatch reads, faithfully (the
same messages and printk stamps; wall clock = boot time + printk stamp, Europe/Warsaw):

  dmesg/v710-boot1.dmesg, v710-boot2.dmesg   the two boots of journal/ as plain `dmesg`
  rsyslog/kern.log.2.gz                      rx7900xtx fixture as rsyslog's traditional
                                             kern.log (`May  8 19:00:45 host kernel: [ts] msg`),
                                             gzip-compressed as logrotate leaves it
  rsyslog/kern.log.rfc3339.xz / .zst         the same, RFC 3339 stamps without [ts] (Ubuntu 24.04)
  dmesg/rx7900xtx.dmesg-T                    `dmesg -T` (local time, English)
  kmsg/rx7900xtx-ring-reset.kmsg             /dev/kmsg records with their dictionary lines, as
                                             `run` reads them (one record per read())

Run from the repository root: python3 testdata/logs/make-text-samples.py
"""
import datetime, gzip, lzma, os, subprocess, zoneinfo

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "dmesg")
WARSAW = zoneinfo.ZoneInfo("Europe/Warsaw")
BOOT = datetime.datetime(2026, 5, 8, 17, 0, 0, tzinfo=datetime.timezone.utc)


def read(name):
    out = []
    for l in open(os.path.join(FIXTURES, name), encoding="utf-8"):
        stamp, msg = l.rstrip("\n").split("] ", 1)
        out.append((stamp + "]", float(stamp.strip("[ ")), msg))
    return out


def write(path, data):
    path = os.path.join(HERE, path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    open(path, "wb").write(data)


def journal_boots():
    text = open(os.path.join(HERE, "journal", "v710-two-boots.short-monotonic"), encoding="utf-8").read()
    boots = text.split("-- Boot ")
    out = []
    for b in boots:
        lines = [l for l in b.splitlines() if l.startswith("[")]
        out.append("".join(l.replace(" v710-vm kernel: ", " ", 1) + "\n" for l in lines))
    return out


def main():
    b1, b2 = journal_boots()
    write("dmesg/v710-boot1.dmesg", b1.encode())
    write("dmesg/v710-boot2.dmesg", b2.encode())

    rx = read("rx7900xtx-mes-mode1-reset.log")
    # rsyslog receives the line a few ms after printk; traditional format has whole seconds.
    trad, iso, ctime = "", "", ""
    for stamp, secs, msg in rx:
        wall = (BOOT + datetime.timedelta(seconds=secs + 0.004)).astimezone(WARSAW)
        trad += f"{wall.strftime('%b')} {wall.day:2d} {wall.strftime('%H:%M:%S')} rx7900 kernel: {stamp} {msg}\n"
        iso += f"{wall.isoformat(timespec='microseconds')} rx7900 kernel: {msg}\n"
        exact = (BOOT + datetime.timedelta(seconds=secs)).astimezone(WARSAW)
        ctime += f"[{exact.strftime('%a %b')} {exact.day:2d} {exact.strftime('%H:%M:%S %Y')}] {msg}\n"
    write("rsyslog/kern.log.2.gz", gzip.compress(trad.encode(), mtime=0))
    write("rsyslog/kern.log.rfc3339.xz", lzma.compress(iso.encode()))
    zst = subprocess.run(["zstd", "-q", "-c"], input=iso.encode(), capture_output=True)
    if zst.returncode == 0:
        write("rsyslog/kern.log.rfc3339.zst", zst.stdout)
    write("dmesg/rx7900xtx.dmesg-T", ctime.encode())

    # /dev/kmsg: prio,seq,usec,flags;msg then the dev_printk dictionary. Ring-reset lines are
    # from a real gfx1152 report (ROCm issue 5844), put on the same device.
    recs = [(secs, msg) for _, secs, msg in rx]
    recs += [
        (45800.763915, "amdgpu 0000:2f:00.0: amdgpu: ring comp_1.2.1 timeout, signaled seq=729743, emitted seq=729744"),
        (45800.763916, "amdgpu 0000:2f:00.0: amdgpu:  Process kwin_wayland pid 1118 thread kwin_wayla:cs0 pid 1147"),
        (45800.763917, "amdgpu 0000:2f:00.0: amdgpu: Starting comp_1.2.1 ring reset"),
        (45800.763942, "amdgpu 0000:2f:00.0: amdgpu: reset compute queue (1:2:1)"),
        (45800.764096, "amdgpu 0000:2f:00.0: amdgpu: Ring comp_1.2.1 reset succeeded"),
    ]
    out = b""
    for seq, (secs, msg) in enumerate(recs, start=1000):
        prio = 3 if ("ERROR" in msg or "fault" in msg or "timeout" in msg) else 6
        out += f"{prio},{seq},{round(secs * 1e6)},-;{msg}\n".encode()
        if msg.startswith("amdgpu 0000:2f:00.0:"):
            out += b" SUBSYSTEM=pci\n DEVICE=+pci:0000:2f:00.0\n"
    write("kmsg/rx7900xtx-ring-reset.kmsg", out)


main()
